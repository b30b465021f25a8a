"""What the widget says in words above the transcript: the local server crashing and coming
back, and the chat's own warnings and errors (``rtwidget.message`` events: a tool that raised,
a lost connection), which a kernel would otherwise print into whichever cell started the
chat."""

from __future__ import annotations

from typing import Any

from ..protocol.items import Update


class Notices:
    """The notice and error lines of one widget, from the session's events (its loop thread)."""

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.crash = ""  # why the local server went, until the session is back
        self.said = ""  # the warning shown in the notice line, until the session is back
        self.before = ""  # the notice it replaced

    def message(self, update: Update, event: dict[str, Any]) -> None:
        """A warning shows in the notice line, an error in the error line."""
        text = str(event.get("message", ""))
        if event.get("level") in ("error", "critical"):
            self.widget.error = text
            return
        if not self.said:
            self.before = self.widget.notice
        self.widget.notice = self.said = text

    def server_news(self, update: Update, event: dict[str, Any]) -> None:
        """Reconnected, or the local server died and is being restarted: say so in words; once
        reconnected, a warning about the lost connection gives way to the notice before it."""
        widget = self.widget
        crashed = update.type == "rtwidget.server_crashed"
        widget.status = "reconnecting" if crashed else "connected"
        cause = str(event.get("cause", "")) if crashed else self.crash
        if cause:
            then = "restarting it…" if crashed else "it was restarted, the conversation restored."
            widget.notice = f"{cause[:1].upper()}{cause[1:]}; {then}"
        elif self.said and widget.notice == self.said:
            widget.notice = self.before
        if not crashed:
            self.said = ""
        self.crash = cause if crashed else ""
