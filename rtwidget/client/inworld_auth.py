"""Inworld credentials: the portal's Basic key, a JWT, or a JWT minted from a key id and secret.

Inworld documents two ways to authenticate a Realtime connection: ``Authorization: Basic <key>``
with the portal's Base64 key (server side), and ``Authorization: Bearer <jwt>`` with a short-lived
JWT minted from the key id and secret by ``POST /auth/v1/tokens/token:generate``, signed with
Inworld's ``IW1-HMAC-SHA256`` scheme (client side).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from ..errors import AuthenticationError, RealtimeError

AUTH_URL = "https://api.inworld.ai/auth/v1/tokens/token:generate"
ENGINE_HOST = "api-engine.inworld.ai"
TOKEN_METHOD = "ai.inworld.engine.WorldEngine/GenerateToken"
DEFAULT_WORKSPACE = "workspaces/default-workspace"
_REFRESH_MARGIN_S = 60.0


def looks_like_jwt(value: str) -> bool:
    """Whether ``value`` has a JWT's shape: three dot-separated parts, the first a JSON header."""
    parts = value.split(".")
    return len(parts) == 3 and all(parts) and value.startswith("eyJ")


def clean_credential(value: str) -> str:
    """A pasted credential without surrounding blanks and without a leading ``Basic ``/
    ``Bearer `` (the portal shows the key with ``Basic`` in front)."""
    value = value.strip()
    for prefix in ("basic ", "bearer "):
        if value.lower().startswith(prefix):
            return value[len(prefix):].strip()
    return value


def signature(secret: str, datetime: str, nonce: str, host: str = ENGINE_HOST,
              method: str = TOKEN_METHOD) -> str:
    """Inworld's ``IW1-HMAC-SHA256`` request signature: an HMAC-SHA256 chain keyed by
    ``"IW1" + secret`` over the date-time, host, method and nonce, then over ``iw1_request``."""
    key = f"IW1{secret}".encode()
    for part in (datetime, host.removesuffix(":443"), method, nonce):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, b"iw1_request", hashlib.sha256).hexdigest()


def signed_header(key_id: str, secret: str, now: dt.datetime | None = None,
                  nonce: str | None = None) -> str:
    """The ``Authorization`` header value for the token endpoint."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d%H%M%S")
    nonce = nonce or secrets.token_hex(6)[:11]
    sig = signature(secret, stamp, nonce)
    return f"IW1-HMAC-SHA256 ApiKey={key_id},DateTime={stamp},Nonce={nonce},Signature={sig}"


def _expiry(payload: dict[str, Any]) -> float:
    text = payload.get("expirationTime")
    if isinstance(text, str):
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time() + 10 * 60


class JwtMinter:
    """Mints Inworld JWTs from a key id and secret, and reuses one until a minute before it
    expires. Calling it returns a token; it never shows the secret."""

    def __init__(self, key_id: str, secret: str, *, workspace: str = DEFAULT_WORKSPACE,
                 url: str = AUTH_URL, timeout: float = 10.0) -> None:
        self._key_id, self._secret = key_id, secret
        self.workspace, self.url, self.timeout = workspace, url, timeout
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JwtMinter(workspace={self.workspace!r})"

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires - _REFRESH_MARGIN_S:
                payload = self._mint()
                self._token, self._expires = str(payload["token"]), _expiry(payload)
            return self._token

    def _mint(self) -> dict[str, Any]:
        body = json.dumps({"key": self._key_id, "resources": [self.workspace]}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Authorization": signed_header(self._key_id, self._secret),
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthenticationError(f"Inworld refused to mint a JWT with this key id and "
                                          f"secret (HTTP {exc.code})") from None
            raise RealtimeError(f"minting an Inworld JWT failed (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RealtimeError(f"could not mint an Inworld JWT: {reason}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
            raise RealtimeError("Inworld's token endpoint answered without a token")
        return payload
