"""Voices a provider offers, as a DataFrame: Inworld's List Voices REST API, OpenAI's documented
voices, or the local server's Flite and eSpeak NG voices (served over HTTP in Inworld's shape, so
the same code and the widget's picker work offline)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

from ..protocol.errors import AuthenticationError, RealtimeError
from .providers import Endpoint, resolve

VOICE_COLUMNS = ["name", "display_name", "language", "description", "tags"]
VOICES_PATH = "/voices/v1/voices"
PAGE_SIZE = 100
MAX_PAGES = 100
INWORLD_API = "https://api.inworld.ai"
OPENAI_VOICES = ["alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer",
                 "verse"]


def http_base(endpoint: Endpoint) -> str:
    """The REST base of a provider whose Realtime URL is ``endpoint.url`` (``wss://host/...``
    → ``https://host``)."""
    parts = urllib.parse.urlsplit(endpoint.url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, "", "", ""))


def _get(url: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read() or b"{}")
            return data
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise AuthenticationError(f"the voices API refused the key (HTTP {exc.code})") \
                from None
        raise RealtimeError(f"the voices API answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RealtimeError(f"could not reach the voices API at {url.split('?')[0]}: "
                            f"{reason}") from None


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=VOICE_COLUMNS).astype(
        {"name": "string", "display_name": "string", "language": "string",
         "description": "string"})


def _page_query(language: str | None, token: str) -> dict[str, str]:
    """The query of one page of Inworld's List Voices API: ``filter=lang_code = "<code>"``
    (the documented filter syntax; BCP-47, underscore form or a prefix), ``pageSize`` and the
    previous page's ``nextPageToken``."""
    query = {"pageSize": str(PAGE_SIZE)}
    if language:
        code = language.replace('"', "").replace("\\", "")
        query["filter"] = f'lang_code = "{code}"'
    if token:
        query["pageToken"] = token
    return query


def list_voices(endpoint: Endpoint, language: str | None = None,
                timeout: float = 10.0) -> pd.DataFrame:
    """Voices for an endpoint (see :func:`voices`)."""
    if endpoint.provider == "openai":
        return _frame([{"name": v, "display_name": v.title(), "language": "multilingual",
                        "description": "OpenAI Realtime voice", "tags": []}
                       for v in OPENAI_VOICES])
    if endpoint.provider == "inworld":
        if not endpoint.secret:
            raise AuthenticationError("listing Inworld voices needs a key: set INWORLD_API_KEY "
                                      "or pass api_key=")
        base = INWORLD_API if endpoint.url.startswith("wss://api.inworld.ai") \
            else http_base(endpoint)
    else:
        if not endpoint.url:
            from .local_process import local_server

            endpoint = local_server().endpoint()
        base = http_base(endpoint)
    headers = {k: v for k, v in endpoint.headers().items() if k.lower() != "openai-beta"}
    rows: list[dict[str, Any]] = []
    token = ""
    for _ in range(MAX_PAGES):
        url = base + VOICES_PATH + "?" + urllib.parse.urlencode(_page_query(language, token))
        page = _get(url, headers, timeout)
        for voice in page.get("voices") or []:
            rows.append({"name": voice.get("voiceId") or voice.get("name"),
                         "display_name": voice.get("displayName") or voice.get("voiceId"),
                         "language": voice.get("langCode") or "",
                         "description": voice.get("description") or "",
                         "tags": list(voice.get("tags") or [])})
        token = page.get("nextPageToken") or ""
        if not token:
            break
    return _frame(rows)


def voices(provider: str | None = None, *, api_key: str | None = None, url: str | None = None,
           language: str | None = None, timeout: float = 10.0) -> pd.DataFrame:
    """The voices you can use as ``voice=``: name, display name, language, description, tags.

    Inworld: its List Voices API (needs a key). OpenAI: the documented voices. Local: the
    embedded server's Flite and eSpeak NG voices. Errors say what is missing (key, network).
    """
    return list_voices(resolve(provider, url=url, api_key=api_key), language, timeout)
