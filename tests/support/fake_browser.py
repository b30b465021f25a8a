"""A front end played in the kernel: the widget's messages to the page recorded, the page's fed
to the widget's own handler, without a browser (the comm is the kernel-less DummyComm)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import eventually

import rtwidget as rt
from rtwidget.notebook.messages import KERNEL_TO_PAGE


class FakeBrowser:
    """Plays the front end: sends custom messages in, records what the widget sends out (and
    the types it sends that ``rtwidget.notebook.messages`` does not declare)."""

    def __init__(self, widget: rt.VoiceChat) -> None:
        self.widget = widget
        self.sent: list[tuple[dict[str, Any], list[bytes]]] = []
        self.undeclared: list[Any] = []
        # a typed turn's flush is answered at once, as by a page that played nothing
        self.answers_stops = True
        original = widget.comm.send

        def capture(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
            if isinstance(data, dict) and data.get("method") == "custom":
                self.sent.append((data["content"], [bytes(b) for b in buffers or []]))
                if data["content"].get("type") not in KERNEL_TO_PAGE:
                    self.undeclared.append(data["content"].get("type"))
                if self.answers_stops and data["content"] == {"type": "flush", "reason": "turn"}:
                    self.message({"type": "turn_flushed"})
            return original(data=data, metadata=metadata, buffers=buffers)

        widget.comm.send = capture

    def message(self, content: dict[str, Any], buffers: list[bytes] = ()) -> None:  # type: ignore[assignment]
        self.widget._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                                 "buffers": [memoryview(b) for b in buffers]})

    def of_type(self, kind: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        assert kind in KERNEL_TO_PAGE, f"the kernel sends no {kind!r} message"
        return [m for m in list(self.sent) if m[0].get("type") == kind]

    def wait(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        return eventually(predicate, timeout, "the widget getting there")


def vad(chat: rt.VoiceChat) -> Any:
    """The turn detection the session is configured with (``"unset"`` when it never was)."""
    return chat.session.conversation.session.get("audio", {}).get("input", {}).get(
        "turn_detection", "unset")
