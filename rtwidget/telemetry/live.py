"""Traces and metrics as a session goes on: a turn's spans are emitted once the next turn
begins (its reply may still be playing until then) and the rest when watching stops; a
reconnect's span as soon as the connection is back."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..protocol.items import Update
from ..protocol.turns import starts_turn
from .emit import Emitter
from .timeline import reconnects, span_of_session, turns

log = logging.getLogger("rtwidget.telemetry")


def _session_of(target: Any) -> Any:
    """The session behind ``target`` (a session, or the chat widget that holds one)."""
    if hasattr(target, "on_update") and hasattr(target, "conversation"):
        return target
    inner = getattr(target, "session", None)
    if inner is not None and hasattr(inner, "on_update"):
        return inner
    raise TypeError(f"telemetry watches a session or a chat widget, not {type(target).__name__}")


class Watch:
    """One session watched: :meth:`stop` (or leaving a ``with`` block) emits what is left and
    ends the session span."""

    def __init__(self, target: Any, emitter: Emitter) -> None:
        self.session = _session_of(target)
        self.conversation = self.session.conversation
        self.emitter = emitter
        endpoint = getattr(self.session, "endpoint", None)
        emitter.provider = emitter.provider or getattr(endpoint, "provider", None)
        self._lock = threading.Lock()
        self._emitted = 0
        self._reconnects = 0
        self.stopped = False
        start, _ = span_of_session(self.conversation)
        emitter.open_session(self.conversation, start)
        self._off = self.session.on_update(self._update)

    def _update(self, event: dict[str, Any], update: Update) -> None:
        try:
            if update.type == "conversation.item.added" and update.item is not None \
                    and starts_turn(update.item):
                self._emit(final=False)
            elif update.type == "rtwidget.reconnected":
                self._emit_reconnects()
        except Exception:  # never let telemetry disturb the session
            log.exception("telemetry could not emit a span")

    def _emit(self, final: bool) -> None:
        with self._lock:
            done = turns(self.conversation)
            ready = done if final else done[:-1]
            for turn in ready[self._emitted:]:
                self.emitter.turn(turn)
            self._emitted = max(self._emitted, len(ready))

    def _emit_reconnects(self) -> None:
        with self._lock:
            gaps = [g for g in reconnects(self.conversation) if g.back_at is not None]
            for gap in gaps[self._reconnects:]:
                self.emitter.reconnect(gap)
            self._reconnects = max(self._reconnects, len(gaps))

    def stop(self) -> None:
        """Stop watching: emit the turns and reconnects not yet emitted, end the session span."""
        if self.stopped:
            return
        self.stopped = True
        self._off()
        self._emit(final=True)
        self._emit_reconnects()
        with self._lock:
            _, end = span_of_session(self.conversation)
            ends = [end, *(t.end for t in turns(self.conversation))]
            self.emitter.close_session(self.conversation, max(ends))

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
