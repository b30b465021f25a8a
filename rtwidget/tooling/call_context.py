"""A running tool call as the tool sees it: a tool that declares a parameter annotated
:class:`CallContext` (left out of the schema the model sees) gets its call's id, a
``progress()`` to report how far it is, and the cancel flag to poll."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from ..protocol.errors import RealtimeError

ProgressSink = Callable[[str, "float | None"], None]


class ToolCancelled(RealtimeError):
    """Raised by :meth:`CallContext.raise_if_cancelled` in a call that was cancelled (a
    barge-in, ``chat.cancel_tool``): its output is never sent."""


class CallContext:
    """One running call, as the tool sees it: declare a parameter ``ctx: rt.CallContext`` to
    get it. ``progress(message, fraction)`` shows how far the call is (on its row in the widget
    and in ``df``; from any thread); ``cancelled`` turns true when the call is cancelled, for a
    plain function to poll (an async tool is cancelled by ``CancelledError``)."""

    def __init__(self, call_id: str, name: str, sink: ProgressSink | None = None) -> None:
        self.call_id = call_id
        self.name = name
        self._sink = sink
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether the call was cancelled (its output will not be sent)."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`ToolCancelled` if the call was cancelled."""
        if self._cancel.is_set():
            raise ToolCancelled(f"{self.name} was cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once on a cancel; whether it was cancelled."""
        return self._cancel.wait(seconds)

    def progress(self, message: Any = "", fraction: float | None = None) -> None:
        """Report progress: a message and/or a fraction done (0..1); never raises."""
        if fraction is not None:
            try:
                fraction = min(max(float(fraction), 0.0), 1.0)
            except (TypeError, ValueError):
                fraction = None
        if self._sink is not None and not self._cancel.is_set():
            with contextlib.suppress(Exception):  # a closed session: nobody to tell
                self._sink(_short(message), fraction)

    def cancel(self) -> None:
        """Set the cancel flag (the runner does, and cancels the call's task)."""
        self._cancel.set()

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "running"
        return f"<CallContext {self.name} {self.call_id} {state}>"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else describe_value(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe_value(value: Any) -> str:
    """``str(value)``, or a stand-in when that raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"
