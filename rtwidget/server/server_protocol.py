"""One client connection of the local server: the Realtime protocol from the server's side.

:class:`ServerProtocol` reads each client event, checks it, and hands it to the part of the
session it concerns: the session settings, the input audio buffer (:mod:`.buffer`), the
conversation items (:mod:`.item_store`) or the responses (:mod:`.responses`). Like websockets'
``ServerProtocol`` it does no I/O: it talks to the transport through two callables (``send`` a
text frame, ``abort`` the connection), so it can be driven without sockets.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from .buffer import InputBuffer
from .item_store import ItemStore
from .responses import Responses
from .server_session import ServerOptions, ServerSession
from .validation import Problem, check_envelope

log = logging.getLogger("rtwidget.server")

_EVENT_ID = re.compile(r'"event_id"\s*:\s*"([^"\\]{1,128})"')

_Handler = Callable[[dict[str, Any]], Awaitable[Problem | None]]


@dataclass(frozen=True)
class _Unreadable:
    """A message that is not JSON text within the size limit."""

    problem: Problem
    event_id: str | None = None


class ServerProtocol:
    """The server side of one Realtime session (see the module docstring)."""

    def __init__(
        self,
        options: ServerOptions,
        send: Callable[[str], Awaitable[None]],
        abort: Callable[[], None],
        model: str | None = None,
    ) -> None:
        self.options = options
        self._session = ServerSession(options, send, abort, model)
        self.items = ItemStore(self._session)
        self.responses = Responses(self._session, self.items, self._response_started,
                                   self._response_ended)
        self.input_audio = InputBuffer(self._session, self.items, self.responses)
        self._handlers: dict[str, _Handler] = {
            "session.update": self._update_session,
            "input_audio_buffer.append": self.input_audio.append,
            "input_audio_buffer.commit": self.input_audio.commit,
            "input_audio_buffer.clear": self.input_audio.clear,
            "conversation.item.create": self.items.create,
            "conversation.item.retrieve": self.items.retrieve,
            "conversation.item.delete": self.items.delete,
            "conversation.item.truncate": self.items.truncate,
            "response.create": self.responses.create,
            "response.cancel": self.responses.cancel,
            "output_audio_buffer.clear": self._clear_output_audio,
        }

    @property
    def session(self) -> dict[str, Any]:
        """The session's settings, as ``session.updated`` last described them."""
        return self._session.settings

    async def start(self) -> None:
        """Greet the client with ``session.created``."""
        await self._session.emit({"type": "session.created", "session": self.session})

    async def close(self) -> None:
        """Stop the responses and the live transcription in progress, if any (the client is
        gone)."""
        await self.input_audio.drop_live()
        await self.responses.close()

    async def receive(self, raw: str | bytes) -> None:
        """Handle one message from the client; every problem becomes an ``error`` event."""
        event = self._parse(raw)
        if isinstance(event, _Unreadable):
            await self._session.error(event.problem, event.event_id)
            return
        event_id = event.get("event_id") if isinstance(event, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        problem = check_envelope(event)
        if problem is not None:
            await self._session.error(problem, event_id)
            return
        try:
            problem = await self._handlers[event["type"]](event)
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.exception("local server failed on %s", event["type"])
            problem = Problem("server_error", f"The server failed on this event: {exc}",
                              type="server_error")
        if problem is not None:
            await self._session.error(problem, event_id)

    def _parse(self, raw: str | bytes) -> Any:
        """The message's JSON value, or why it has none."""
        if isinstance(raw, bytes):
            return _Unreadable(Problem("invalid_json", "Binary frames are not supported; send "
                                       "events as JSON text frames."))
        limit = self.options.max_message_bytes
        if len(raw) > limit:  # refused before parsing it
            head = _EVENT_ID.search(raw, 0, 1024)
            return _Unreadable(Problem("message_too_large", f"The message is {len(raw)} bytes; "
                                       f"the limit is {limit} bytes."),
                               head.group(1) if head else None)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return _Unreadable(Problem("invalid_json",
                                       f"The message is not valid JSON: {reason}."))

    async def _update_session(self, event: dict[str, Any]) -> Problem | None:
        problem = self._session.update(event["session"])
        if problem is not None:
            return problem
        await self.input_audio.settings_changed()
        await self._session.emit({"type": "session.updated", "session": self.session})
        await self.responses.relay.sync(self.session.get("tools"))
        self.responses.prepare_next()
        return None

    async def _clear_output_audio(self, event: dict[str, Any]) -> Problem | None:
        return Problem("invalid_value", "output_audio_buffer.clear is for WebRTC connections; "
                       "over WebSocket, stop playback in the client and send "
                       "conversation.item.truncate.", "type")

    def _response_started(self) -> None:
        self.input_audio.response_started()

    def _response_ended(self, played_ms: int) -> None:
        self.input_audio.response_ended(played_ms)
