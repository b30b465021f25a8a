"""Server messages decoded into events, safely: JSON objects only, with lone UTF-16 surrogates
(which JSON escapes can carry and no encoder downstream accepts) replaced by U+FFFD."""

from __future__ import annotations

import json
import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def without_surrogates(value: Any) -> Any:
    """``value`` (a string, or lists and dicts of them) with lone surrogates replaced."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_surrogates(v) for v in value]
    return value


def decode_event(raw: str | bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The event in a server message and ``None``, or ``None`` and what is wrong with it."""
    try:
        event = json.loads(raw)
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            event = without_surrogates(event)
    except RecursionError:
        return None, "server sent a message nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"server sent a message that is not JSON: {exc}"
    if not isinstance(event, dict):
        return None, "server sent JSON that is not an object"
    return event, None
