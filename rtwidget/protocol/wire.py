"""Server messages decoded into events, safely: JSON objects only, with lone UTF-16 surrogates
(which JSON escapes can carry and no encoder downstream accepts) replaced by U+FFFD, and every
known credential (:mod:`rtwidget.protocol.redact`) masked in every string, keys included, so a
server or proxy that quotes the key back cannot put it in an error, the event log or a file."""

from __future__ import annotations

import json
import re
from typing import Any

from .redact import MASK, known_secrets

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


def masked(value: Any, secrets: list[str]) -> Any:
    """``value`` (a string, or lists and dicts of them) with each of ``secrets`` replaced by
    ``***``; the very same object where nothing had to change."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        pairs = [(masked(k, secrets), masked(v, secrets)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    if isinstance(value, list):
        items = [masked(v, secrets) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def decode_event(raw: str | bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The event in a server message and ``None``, or ``None`` and what is wrong with it."""
    try:
        event = json.loads(raw)
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            event = without_surrogates(event)
        secrets = known_secrets()
        if secrets:
            event = masked(event, secrets)
    except RecursionError:
        return None, "server sent a message nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"server sent a message that is not JSON: {exc}"
    if not isinstance(event, dict):
        return None, "server sent JSON that is not an object"
    return event, None
