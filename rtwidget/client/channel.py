"""A session's events both ways, on top of its :class:`~rtwidget.client.connection.Connection`:
listeners and waits for the events that come in, the conversation's floor for the events that
go out (:class:`~rtwidget.client.turn_taking.TurnTaking`), and requests paired with the answer
the server gives them. The public API is :class:`~rtwidget.AsyncRealtimeSession`, built on
this."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ..protocol.conversation import Conversation
from ..protocol.errors import ConnectionClosed, ServerError
from ..protocol.floor import claims_floor
from ..protocol.requests import PendingRequests
from .connection import Connection
from .event_hub import AudioListener, Listener, Predicate, UpdateListener, Waiter, predicate
from .options import SessionOptions
from .providers import Endpoint
from .turn_taking import TurnTaking


class Channel(Connection):
    """Events in and out of one session (see the module docstring)."""

    def __init__(self, endpoint: Endpoint | None, options: SessionOptions,
                 conversation: Conversation | None) -> None:
        super().__init__(endpoint, options, conversation)
        self.requests = PendingRequests(self.conversation)
        self.turns = TurnTaking(self)

    # --- events in ---------------------------------------------------------------------------

    def on(self, event_type: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on the session's loop for each server event of this type
        (GA or beta name; ``"*"`` for all). Returns a function that unsubscribes."""
        return self.hub.on(event_type, callback)

    def on_update(self, callback: UpdateListener) -> Callable[[], None]:
        """Call ``callback(event, update)`` on the session's loop for every event, with the
        conversation's :class:`~rtwidget.protocol.Update` (the item, response and audio it
        touched). Returns a function that unsubscribes."""
        return self.hub.on_update(callback)

    def on_audio(self, callback: AudioListener) -> Callable[[], None]:
        """Call ``callback(item_id, pcm16_bytes)`` for every received assistant audio delta."""
        return self.hub.on_audio(callback)

    async def wait_for(
        self, match: str | Predicate, timeout: float | None = 30.0
    ) -> dict[str, Any]:
        """Wait for the next server event of a type (or matching a predicate) and return it.

        Only events arriving after the call count; see :meth:`expect` to subscribe before
        sending whatever causes the event."""
        return await self.expect(match, timeout)

    def expect(
        self, match: str | Predicate, timeout: float | None = 30.0
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        """Subscribe now, await later: returns a coroutine that yields the first matching
        event received from this moment on (so a fast answer cannot slip past)."""
        return self.hub.wait(self._subscribe(predicate(match)), timeout)

    def _subscribe(self, test: Predicate) -> Waiter:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise ConnectionClosed("the session is closed")
        return self.hub.subscribe(test)

    # --- events out --------------------------------------------------------------------------

    def send_nowait(self, event: dict[str, Any]) -> None:
        """Queue a client event. While disconnected, audio appends are dropped (and counted)
        and every other event waits for the next connection. A ``response.create`` of the
        conversation waits while another response is in progress (every provider refuses a
        second one), then goes out. An event that cannot be encoded as JSON raises
        :class:`InvalidInput` (a ``ValueError``) here and is not sent."""
        if claims_floor(event):
            self.turns.submit([event])
            return
        self._enqueue(event, None)
        if event.get("type") == "response.create":
            self.turns.floor.sent_out_of_band()

    async def send(self, event: dict[str, Any]) -> None:
        """Queue a client event (see :meth:`send_nowait`)."""
        self.send_nowait(event)

    def send_raw(self, event: dict[str, Any]) -> None:
        """Queue a client event as it is, past the conversation's floor: a ``response.create``
        goes out even while a response is in progress (and the server refuses it). Otherwise
        as :meth:`send_nowait`; :meth:`encode` checks an event first, from any thread."""
        self._enqueue(event, None)

    def encode(self, event: dict[str, Any]) -> str:
        """The wire text of a client event; raises :class:`InvalidInput` (a ``ValueError``)
        saying why an event cannot be sent."""
        return self._encoded(event)

    async def request(
        self, event: dict[str, Any], match: Predicate, timeout: float | None = 30.0
    ) -> dict[str, Any]:
        """Send ``event`` and wait for the answer ``match`` accepts; an ``error`` event naming
        this ``event_id`` raises :class:`ServerError` instead."""
        return await self._request_nowait(event, match, timeout)

    def _request_nowait(
        self, event: dict[str, Any], match: Predicate, timeout: float | None = 30.0
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        """Send ``event`` now (so it keeps its place among events sent after it) and return
        what awaits its answer (see :meth:`request`)."""
        event_id = event["event_id"]
        answer = self.requests.answered_by(event_id, str(event.get("type")), match)
        try:
            entry = self._subscribe(answer)
        except BaseException:
            self.requests.forget(event_id)
            raise
        try:
            self.send_nowait(event)
        except BaseException:
            self.hub.unsubscribe(entry)
            self.requests.forget(event_id)
            raise

        async def answered() -> dict[str, Any]:
            try:
                result = await self.hub.wait(entry, timeout)
            finally:
                self.requests.forget(event_id)
            return self._raise_error(result, event)

        return answered()

    def _raise_error(self, result: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        """``result``, unless it is the server's ``error`` for ``event``: then raise it."""
        if result.get("type") == "error":
            raise ServerError(self.requests.error_info(result, event["event_id"],
                                                       str(event.get("type"))))
        return result
