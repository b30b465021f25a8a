"""The exceptions rtwidget raises. Catch :class:`RealtimeError` to catch them all.

Errors about a value given to rtwidget are also the stdlib exception such code raised before
(:class:`InvalidInput` is a ``ValueError``, :class:`WaitTimeout` a ``TimeoutError``...), so an
``except ValueError`` written for them keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RealtimeError(Exception):
    """Base class of every error rtwidget raises."""


class ConnectionClosed(RealtimeError):
    """The connection is gone and will not come back (closed by the user, or retries ran out)."""


class AuthenticationError(RealtimeError):
    """The server refused the credentials. Retrying would not help, so the session stops."""


class ServerRejected(RealtimeError):
    """The server refused the connection for a reason other than auth (bad URL, bad request)."""


class ToolError(RealtimeError):
    """A tool could not be defined, or could not be run with the arguments the model gave."""


class InvalidInput(RealtimeError, ValueError):
    """A value given to rtwidget that it cannot use; the message says what was expected and
    what was found. Nothing was sent or changed."""


class ConfigError(InvalidInput):
    """A configuration rtwidget cannot use: a session setting, a provider and its
    credentials, or a local server option."""


class WaitTimeout(RealtimeError, TimeoutError):
    """A call that waits for an answer (from the server, the session's loop or the browser)
    gave up after its timeout. The session goes on."""


class UsageError(RealtimeError, RuntimeError):
    """A call made when it cannot work: on the wrong thread, twice, or before what it needs
    exists (a widget not on screen, a server not started)."""


class EngineError(RealtimeError, RuntimeError):
    """An engine of the local server failed (its package is missing, a service it calls
    refused)."""


class EngineUnavailable(EngineError):
    """An engine's package is not installed; the message says what to install. ``needs`` names
    what is missing and ``install`` the command that installs it, when known."""

    def __init__(self, message: str, needs: str | None = None,
                 install: str | None = None) -> None:
        super().__init__(message)
        self.needs = needs
        self.install = install


class NotFound(RealtimeError, KeyError, IndexError):
    """No such name, id or position. Both a ``KeyError`` and an ``IndexError``, so code that
    caught either keeps working."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


@dataclass(frozen=True)
class ErrorInfo:
    """One ``error`` event from the server, tied back to the client event that caused it.

    ``caused_by`` is the type of the client event whose ``event_id`` the server echoed, when the
    session still remembers it. ``matched_by_order`` is true when the error named no
    ``event_id`` (Inworld sends ``null``) and was tied to the one waiting request it could
    belong to, by type and order.
    """

    type: str
    code: str | None
    message: str
    param: str | None
    event_id: str | None
    caused_by: str | None = None
    at: float = 0.0
    matched_by_order: bool = False

    def __str__(self) -> str:
        parts = [f"{self.type}"]
        if self.code:
            parts.append(f"code={self.code}")
        if self.param:
            parts.append(f"param={self.param}")
        if self.caused_by and self.matched_by_order:
            parts.append(f"taken as the answer to {self.caused_by}: the error named no "
                         "event_id, and that was the request waiting for one")
        elif self.caused_by:
            parts.append(f"caused by {self.caused_by}")
        if self.event_id:
            parts.append(f"event_id={self.event_id}")
        return f"{self.message} ({', '.join(parts)})"


class ServerError(RealtimeError):
    """Raised by calls that wait for an answer when the server answers with an ``error`` event."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(str(info))
        self.info = info

    @property
    def code(self) -> str | None:
        """The server's machine-readable error code."""
        return self.info.code


def error_info_from_event(event: dict[str, Any], caused_by: str | None, at: float) -> ErrorInfo:
    """Build an :class:`ErrorInfo` from a server ``error`` event, tolerating missing fields."""
    raw = event.get("error")
    err: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def text(key: str) -> str | None:
        value = err.get(key)
        return None if value is None else str(value)

    return ErrorInfo(
        type=text("type") or "error",
        code=text("code"),
        message=text("message") or "the server reported an error without a message",
        param=text("param"),
        event_id=text("event_id"),
        caused_by=caused_by,
        at=at,
    )
