"""What a failed dial or a closed connection means: final, or worth another try, and why in
words. No I/O: it reads the exception or the close frames the connection already has."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from websockets.exceptions import InvalidStatus

from ..protocol.errors import AuthenticationError, ServerRejected
from ..protocol.redact import mask_secrets

FATAL_CLOSE = frozenset({1002, 1003, 1007, 1008, 1010, 4001, 4003, 4401, 4403})
AUTH_CLOSE = frozenset({1008, 4001, 4003, 4401, 4403})
TOO_BIG = 1009
MAX_RETRY_AFTER = 60.0


def classify_handshake(exc: BaseException) -> Exception | None:
    """A final exception for connection failures that retrying cannot fix, else ``None``
    (timeouts, resets, HTTP 408/425/429/5xx are worth another try)."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return AuthenticationError(
                f"the server refused the credentials (HTTP {status}); check the API key"
            )
        if 400 <= status < 500 and status not in (408, 425, 429):
            return ServerRejected(f"the server refused the connection (HTTP {status})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ServerRejected(f"the server's TLS certificate did not verify: "
                              f"{exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return ServerRejected(f"the TLS handshake failed ({exc.reason or exc}); is this a "
                              "wss:// URL for a server that speaks plain ws://, or a proxy "
                              "in the way?")
    return None


def retry_after(exc: BaseException) -> float:
    """Seconds an HTTP 429/503 asked us to wait (``Retry-After``), else 0."""
    if isinstance(exc, InvalidStatus):
        value = exc.response.headers.get("Retry-After", "")
        with contextlib.suppress(ValueError):
            return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    return 0.0


def close_error(code: int) -> Exception:
    """The final exception for a close code that retrying would repeat."""
    if code in AUTH_CLOSE:
        return AuthenticationError(f"the server closed the session for auth (code {code})")
    return ServerRejected(f"the server closed the session (code {code}); retrying would "
                          "repeat the failure")


def too_big(protocol: Any) -> str | None:
    """Who found a message too big when a connection closed with 1009: ``"ours"`` (the client
    refused a server event: its close frame went first), ``"theirs"`` (the server refused one of
    ours), else ``None``."""
    sent = getattr(protocol, "close_sent", None)
    received = getattr(protocol, "close_rcvd", None)
    if getattr(sent, "code", None) == TOO_BIG and not getattr(protocol, "close_rcvd_then_sent",
                                                               False):
        return "ours"
    if getattr(received, "code", None) == TOO_BIG:
        return "theirs"
    return None


def close_words(code: int | None, reason: str) -> str:
    """A close, in words (a credential quoted in the reason is masked)."""
    text = mask_secrets(reason or "")
    return f"the server closed the connection (code {code}{': ' + text if text else ''})"
