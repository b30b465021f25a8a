"""Push-to-talk: while the button (or Space) is held the agent stops and the user's turn runs
with the server's turn detection off; on release the turn is committed and answered. Turn
detection comes back as it was when the mic goes hands-free again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..client.sync import RealtimeSession
from ..protocol import client_events

MIN_PTT_BYTES = 4_800  # 100 ms of PCM16 24 kHz: a shorter press is a tap, not a turn


class PushToTalk:
    """The push-to-talk state of one widget. ``update_soon`` sends a ``session.update``
    without waiting for its answer; ``phase`` shows the widget's phase."""

    def __init__(self, update_soon: Callable[..., None], phase: Callable[[str], None]) -> None:
        self._update_soon = update_soon
        self._phase = phase
        self.heard: int | None = None  # mic bytes since push-to-talk was pressed
        self._vad_before: dict[str, Any] | None = None  # the turn detection it turned off

    def press(self, session: RealtimeSession) -> None:
        """The user's turn starts: turn detection off, the agent stopped, the buffer empty."""
        audio_in = session.conversation.session.get("audio", {}).get("input", {})
        vad = audio_in.get("turn_detection")
        if vad or (vad is None and "turn_detection" not in audio_in):
            self._vad_before = dict(vad) if isinstance(vad, dict) else {"type": "server_vad"}
            self._update_soon(turn_detection=None)
        # the reply in progress is cancelled once, whoever else is cancelling it (a typed turn)
        session.call_soon(lambda: session.aio.turns.interrupt(announce=False))
        session.send(client_events.input_audio_clear())
        self.heard = 0
        self._phase("hearing you")

    def frame(self, nbytes: int) -> None:
        """Mic audio sent to the session."""
        if self.heard is not None:
            self.heard += nbytes

    def release(self, session: RealtimeSession) -> None:
        """The turn ends: committed and answered, unless it was a mere tap."""
        heard, self.heard = self.heard, None
        if heard is None:
            return
        if heard < MIN_PTT_BYTES:  # a tap: nothing to answer
            session.send(client_events.input_audio_clear())
            self._phase("idle")
            return
        session.send(client_events.input_audio_commit())
        # after the commit, once the reply the press cancelled has ended (providers refuse a
        # second response while one is in progress)
        session.call_soon(session.aio.send_nowait, client_events.response_create())
        self._phase("thinking")

    def hands_free(self) -> None:
        """The mic is hands-free again: the server's turn detection comes back as it was."""
        vad, self._vad_before = self._vad_before, None
        if vad is not None:
            self._update_soon(turn_detection=vad)
