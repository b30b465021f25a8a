"""The widget's voice picker: the voices a session's provider offers, the one in use first."""

from __future__ import annotations

import logging
from typing import Any

from ..client.sync import RealtimeSession
from . import messages

log = logging.getLogger("rtwidget.widget")


def voice_picker(session: RealtimeSession) -> dict[str, Any] | None:
    """The picker's message for the page (the session caches the list), or ``None`` when the
    provider lists no voices (a failure only logs)."""
    try:
        names = [str(n) for n in session.voices()["name"]]
    except Exception as exc:
        log.info("no voice list for the picker: %s", exc)
        return None
    current = str(session.config.get("audio", {}).get("output", {}).get("voice")
                  or session.conversation.session.get("audio", {}).get("output", {})
                  .get("voice") or "")
    if current and current not in names:  # the picker shows the voice in use, always
        names.insert(0, current)
    return {"type": messages.VOICES, "names": names, "current": current}
