"""The widget's part when a reply is interrupted: by ■ Stop or a barge-in (the page has already
stopped playing; the reply is cancelled), or by a typed turn (the session cancelled the reply,
or the server had finished it and the page still plays it; the page is told to stop and report
how much it played, so the reply is cut there).

The typed turn's ``response.create`` waits for that report, so the model answers knowing what
was heard; a page that does not answer within :attr:`Interrupts.report_wait` seconds (closed,
or its messages stuck behind a busy kernel) holds nothing back for longer. A turn typed when
no reply was cancelled and the page has had time to play all the audio it was sent does not
wait at all.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol.audio import BYTES_PER_SECOND
from ..protocol.items import Update
from . import messages

if TYPE_CHECKING:
    from ..client.sync import RealtimeSession

_keys = itertools.count(1)


class Interrupts:
    """Interrupted replies, for one widget: ``session_of()`` is its session now, ``send`` sends
    a message to the page, ``ready`` is set while a page is there to answer."""

    report_wait = 2.0  # seconds a typed turn waits for the page's report
    slack = 1.0  # seconds the page may play beyond the audio's length (its buffer, the device)

    def __init__(self, session_of: Callable[[], RealtimeSession],
                 send: Callable[[dict[str, Any]], None], ready: threading.Event) -> None:
        self._session_of = session_of
        self._send = send
        self._ready = ready
        self._waiting: deque[str] = deque()  # holds on the floor, one per flush not reported
        self._playing_until = 0.0  # when the page will have played all it was sent (monotonic)

    def audio_out(self, nbytes: int) -> None:
        """Reply audio went to the page (on the session's loop)."""
        now = time.monotonic()
        self._playing_until = max(self._playing_until, now) + nbytes / BYTES_PER_SECOND

    def cancel_reply(self) -> None:
        """■ Stop: the page stopped playing; cancel the reply, once (one a typed turn already
        cancelled is not cancelled again, which the server would refuse)."""
        session = self._session_of()
        session.call_soon(lambda: session.aio.turns.interrupt(announce=False))

    @staticmethod
    def cancels(reason: Any) -> bool:
        """Whether the page's stop (``reason`` as the page gave it) cancels the reply: a stop
        the typed turn asked for does not (the turn has cancelled it already)."""
        return reason != "turn"

    def interrupted(self, update: Update, event: dict[str, Any]) -> None:
        """A typed turn interrupts (on the session's loop): the page stops playing whatever it
        plays and reports where; the turn's reply waits for that report."""
        if not self._ready.is_set():
            return
        if not event.get("response_ids") and time.monotonic() > self._playing_until + self.slack:
            return  # nothing was cancelled and the page has played all it got
        session = self._session_of()
        key = f"page-{next(_keys)}"
        session.aio.turns.hold(key)
        self._waiting.append(key)
        self._send({"type": messages.FLUSH, "reason": "turn"})
        session.call_later(self.report_wait, self._release, session, key)

    def shown(self, event: dict[str, Any]) -> bool:
        """Whether the widget shows this ``error``: not a race the floor handled (a cancel
        the reply's end overtook; a turn's ``response.create`` refused for a response the
        server started itself, sent again once it ended)."""
        return not self._session_of().aio.turns.floor.absorbed(event)

    def turn_flushed(self, content: dict[str, Any], _: list[memoryview]) -> None:
        """The page stopped as asked and reported what it played (its ``playback_stopped`` came
        first, so the cut is queued before the turn goes out): let the turn go."""
        session = self._session_of()
        session.call_soon(self._release_oldest, session)

    def _release_oldest(self, session: RealtimeSession) -> None:
        if self._waiting:
            self._release(session, self._waiting[0])

    def _release(self, session: RealtimeSession, key: str) -> None:
        if key in self._waiting:
            self._waiting.remove(key)
        session.aio.turns.release(key)
