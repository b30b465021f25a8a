"""The local server's List Voices answer, in Inworld's documented shape."""

from __future__ import annotations

import re
from typing import Any


def inworld_shape(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Voices (``name``, ``language``, ``description``, ``tags``) in Inworld's List Voices
    response shape, for the local server."""
    return {"voices": [{"voiceId": r["name"], "displayName": r["name"],
                        "langCode": str(r.get("language", "")).upper().replace("-", "_"),
                        "description": r.get("description", ""), "tags": r.get("tags", []),
                        "source": "SYSTEM"} for r in rows]}


_LANG_FILTER = re.compile(r'^\s*lang_code\s*=\s*"([^"]*)"\s*$')


def inworld_page(rows: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any] | None:
    """One page of List Voices for the local server, from ``rows`` and the documented query
    (``filter=lang_code = "en"``, ``pageSize``, ``pageToken``); ``None`` for a query it cannot
    read. Without ``pageSize`` the whole list comes in one page, as Inworld's legacy path does."""
    wanted = ""
    if query.get("filter"):
        match = _LANG_FILTER.match(query["filter"])
        if match is None:
            return None
        wanted = match.group(1).lower().replace("_", "-")
    if wanted:
        rows = [r for r in rows if str(r.get("language", "")).lower().startswith(wanted)]
    try:
        start = int(query.get("pageToken") or 0)
        size = int(query.get("pageSize") or len(rows) or 1)
    except ValueError:
        return None
    if start < 0 or size < 1:
        return None
    page = inworld_shape(rows[start:start + size])
    page["totalSize"] = len(rows)
    if start + size < len(rows):
        page["nextPageToken"] = str(start + size)
    return page
