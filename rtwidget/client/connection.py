"""The transport half of a session: one WebSocket at a time, kept open by a reconnect loop.

Each connection waits for ``session.created``, sends the configuration (and, after a drop, the
conversation so far and every request the last connection took but never answered), then pumps
events both ways until it drops. Every event in or out goes through the conversation, the
recorder and the listeners, in that order, on the session's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake

from ..aio.deadlines import within
from ..protocol import client_events
from ..protocol.acks import Acknowledgements
from ..protocol.conversation import Conversation
from ..protocol.dialects import encode
from ..protocol.errors import (
    AuthenticationError,
    ConnectionClosed,
    InvalidInput,
    RealtimeError,
    ServerRejected,
)
from ..protocol.history import history_items
from ..protocol.items import Update
from ..protocol.redact import known_secrets, wire_logger
from ..protocol.wire import decode_event
from .closes import FATAL_CLOSE, classify_handshake, close_error, close_words, retry_after, too_big
from .event_hub import EventHub
from .local_process import LocalServerProcess
from .options import SessionOptions
from .providers import Endpoint, resolve
from .recorder import Recorder

log = logging.getLogger("rtwidget.session")
MAX_SEND_BYTES = 15 * 1024 * 1024

def _version() -> str:
    try:
        return importlib.metadata.version("rtwidget")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Connection:
    """A session's connection and its reconnect loop (see the module docstring); the public
    API is :class:`~rtwidget.AsyncRealtimeSession`, built on this."""

    def __init__(self, endpoint: Endpoint | None, options: SessionOptions,
                 conversation: Conversation | None) -> None:
        self.endpoint = endpoint or resolve()
        self._options = options
        self.conversation = conversation if conversation is not None else Conversation()
        self.config: dict[str, Any] = dict(options.config)
        self.hub = EventHub()
        self.acks = Acknowledgements()
        self.dropped_audio_frames = 0
        self.reconnects = 0
        #: ids of the items the conversation held when this connection opened: the server has
        #: them as text at most (history goes back as text), so their audio cannot be cut there
        self.items_before_connect: frozenset[str] = frozenset()
        self.recorder: Recorder | None = None
        self._ws: ClientConnection | None = None
        self._outbox: deque[tuple[dict[str, Any], str]] = deque()
        self._wake: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._closing = False
        self._fatal: Exception | None = None
        self._first_error: asyncio.Future[None] | None = None
        self._restore_first = options.restore_history and len(self.conversation) > 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: LocalServerProcess | None = None  # the supervised server, when local
        self._largest_sent: tuple[dict[str, Any], int] | None = None  # on this connection

    @property
    def connected(self) -> bool:
        """Whether a connection is open and configured right now."""
        return self._ready is not None and self._ready.is_set()

    @property
    def closed(self) -> bool:
        """Whether the session has ended (closed by the user or by a final error)."""
        return self._closing or self._fatal is not None

    # --- starting and stopping -------------------------------------------------------------

    async def _start(self) -> None:
        """Start the loop and return once connected and configured (or raise the failure)."""
        if not self.endpoint.url:
            from .local_process import local_server

            self._local = await asyncio.to_thread(local_server)
            self.endpoint = self._local.endpoint()
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._options.record and self.recorder is None:
            self.recorder = self._open_recorder()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._first_error = loop.create_future()
        self._task = asyncio.create_task(self._run(), name="rtwidget-session")
        ready: asyncio.Future[Any] = asyncio.ensure_future(self._ready.wait())
        first_error: asyncio.Future[Any] = self._first_error
        try:
            await asyncio.wait({ready, first_error, self._task},
                               return_when=asyncio.FIRST_COMPLETED)
        finally:  # connected once is enough: it may have dropped already, and is being redialled
            connected = ready.done() and not ready.cancelled()
            ready.cancel()
        if self._first_error.done() and self._first_error.exception() is not None:
            await self.close()
            raise self._first_error.exception()  # type: ignore[misc]
        if not connected:  # the loop ended without saying why
            await self.close()
            raise ConnectionClosed("the session ended before it was connected")

    async def close(self) -> None:
        """Close the connection and stop; nothing is left running."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await within(ws.close(), 2)
        self._stopped()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._fail_waiters(ConnectionClosed("the session was closed"))
        if self.recorder is not None:
            self.recorder.meta["config"] = self.config
            await asyncio.to_thread(self.recorder.close)

    def _stopped(self) -> None:
        """Hook: the session is closing (stop what runs beside the connection)."""

    def _open_recorder(self) -> Recorder:
        record = self._options.record
        folder = Path(record) if isinstance(record, (str, Path)) else \
            Path("recordings") / (time.strftime("%Y%m%d-%H%M%S", time.gmtime()) +
                                  f"-{uuid.uuid4().hex[:6]}")
        endpoint = self.endpoint
        secrets = [endpoint.secret.reveal()] if endpoint.secret else []
        secrets += [*endpoint.extra_headers.values(), *known_secrets()]
        meta = {"endpoint": {"provider": endpoint.provider, "url": endpoint.describe(),
                             "dialect": endpoint.dialect},
                "config": self.config, "rtwidget": _version()}
        return Recorder(folder, meta, secrets)

    # --- events out ------------------------------------------------------------------------

    def _enqueue(self, event: dict[str, Any], text: str | None) -> None:
        if self._closing or self._fatal is not None:
            raise ConnectionClosed("the session is closed")
        if not self.connected and event.get("type") == "input_audio_buffer.append":
            self.dropped_audio_frames += 1
            return
        if event.get("type") == "conversation.item.create" and isinstance(event.get("item"), dict) \
                and not event["item"].get("id"):  # an id lets the server's answer be matched
            event = {**event, "item": {**event["item"], "id": client_events.new_item_id()}}
            text = None
        if not isinstance(event.get("event_id"), str):
            event = {**event, "event_id": client_events.new_event_id()}
            text = None
        self._outbox.append((event, text if text is not None else self._encoded(event)))
        if self._wake is not None:
            self._wake.set()

    def _encoded(self, event: dict[str, Any]) -> str:
        """The wire text of a client event, or an :class:`InvalidInput` saying why there is none."""
        try:
            text = encode(event, self.endpoint.dialect)
        except (TypeError, ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise InvalidInput(f"the {event.get('type')!r} event cannot be sent as JSON: "
                             f"{reason}") from None
        if len(text) > MAX_SEND_BYTES:
            raise InvalidInput(f"the {event.get('type')!r} event would be {len(text):,} bytes; "
                               f"servers refuse events over {MAX_SEND_BYTES:,} (15 MiB, OpenAI's "
                               "documented limit): send it in smaller pieces")
        return text

    async def _send_now(self, ws: ClientConnection, event: dict[str, Any],
                        text: str | None = None) -> None:
        if text is None:
            text = encode(event, self.endpoint.dialect)
        if self._largest_sent is None or len(text) > self._largest_sent[1]:
            self._largest_sent = (event, len(text))
        await ws.send(text)
        self.conversation.record_sent(event, len(text))
        if self.recorder is not None:
            self.recorder.write("out", event, self.conversation.now, len(text))

    # --- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        assert self._ready is not None and self._first_error is not None
        attempt = 0
        ever_connected = False
        while not self._closing:
            asked_wait = 0.0
            try:
                await self._connect_once(first=not ever_connected)
                ever_connected, up_since = True, time.monotonic()
                await self._pump()
                if self._closing:
                    break
                # a connection that stayed up a while starts the backoff afresh; one that
                # flaps (accepted, configured, closed) counts toward giving up
                if time.monotonic() - up_since >= self._options.reconnect.stable_after:
                    attempt = 0
                code = self._ws.close_code if self._ws is not None else None
                if code in FATAL_CLOSE:
                    raise close_error(code)
                reason = self._close_reason(code)
            except asyncio.CancelledError:
                raise
            except (AuthenticationError, ServerRejected) as exc:
                self._finish(exc)
                return
            except (OSError, InvalidHandshake, TimeoutError, websockets.ConnectionClosed,
                    ConnectionError) as exc:
                final = classify_handshake(exc)
                if final is not None:
                    self._finish(final)
                    return
                reason = str(exc) or type(exc).__name__
                asked_wait = retry_after(exc)
            except Exception as exc:  # a bug or a hostile input: end visibly, never silently
                log.error("the session's loop failed", exc_info=True)
                if self._ws is not None:
                    self._ws.transport.abort()
                self._finish(RealtimeError(f"the session stopped on an unexpected error: "
                                           f"{type(exc).__name__}: {exc}"))
                return
            finally:
                self._ready.clear()
                self._ws = None
            if self._closing:
                break
            if self._local is not None and (ended := await asyncio.to_thread(self._local.explain)):
                reason = ended.describe()
                self.note("rtwidget.server_crashed", reason=f"{reason}; it is being restarted "
                          "and the conversation restored", **ended.facts())
            self._connection_lost(str(reason))
            reconnect = self._options.reconnect
            if attempt >= reconnect.max_attempts:
                self._finish(ConnectionClosed(
                    f"gave up after {attempt} reconnect attempts; last failure: {reason}"
                ))
                return
            delay = max(reconnect.delay(attempt), asked_wait)
            attempt += 1
            log.warning("connection lost (%s); reconnecting in %.2f s (attempt %d)",
                        reason, delay, attempt)
            self.note("rtwidget.reconnecting", attempt=attempt, delay=delay, reason=str(reason))
            await asyncio.sleep(delay)

    def _connection_lost(self, reason: str) -> None:
        abandoned = [r for r in self.conversation.responses.values()
                     if r.status == "in_progress"]
        self.note("rtwidget.connection_lost", reason="connection_lost", detail=reason)
        for response in abandoned:  # listeners waiting on these must not wait forever
            done = {"type": "response.done", "response": {
                "id": response.id, "status": "failed",
                "status_details": response.status_details}}
            self.hub.dispatch(done, Update(type="response.done", response=response, known=False))

    def _close_reason(self, code: int | None) -> str:
        ws = self._ws
        problem = None
        whose = too_big(ws.protocol) if ws is not None else None
        if whose == "ours":  # we refused a server event
            problem = (f"a server event was larger than max_message_bytes "
                       f"({self._options.max_message_bytes} bytes); the connection was closed")
        elif whose == "theirs" and self._largest_sent is not None:
            event, size = self._largest_sent  # the likeliest cause: never sent again
            self.acks.unanswered.pop(event.get("event_id", ""), None)
            problem = (f"the server closed the connection over a message too big (code 1009) "
                       f"after the {event.get('type')} event {event.get('event_id')} ({size} "
                       "bytes); it is not sent again")
        if problem is not None:
            self.conversation.problems.append(problem)
            return problem
        return close_words(code, (ws.close_reason or "") if ws is not None else "")

    def _finish(self, exc: Exception) -> None:
        self._fatal = exc
        assert self._first_error is not None
        if not self._first_error.done():
            self._first_error.set_exception(exc)
            self._first_error.exception()
        self.note("rtwidget.closed", reason=str(exc))  # whoever waits for this gets it
        self._fail_waiters(exc)
        log.error("session ended: %s", exc)

    def _fail_waiters(self, exc: Exception) -> None:
        self.hub.fail(exc)

    async def _connect_once(self, *, first: bool) -> None:
        assert self._ready is not None
        options = self._options
        if self._local is not None:  # it may have restarted, on another port
            self.endpoint = await asyncio.to_thread(self._local.endpoint)
        ws = await connect(
            self.endpoint.connect_url(),
            additional_headers=await self._headers(),
            open_timeout=options.open_timeout,
            max_size=options.max_message_bytes,
            compression=None,
            proxy=None if self.endpoint.is_loopback else True,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=2,  # a peer that stopped answering is not waited for long
            logger=wire_logger("client"),
        )
        self._ws, self._largest_sent = ws, None
        self.items_before_connect = frozenset(item.id for item in self.conversation)
        created = await within(self._recv_until_created(ws), options.open_timeout)
        self._handle(created, 0)
        if not first:
            self.reconnects += 1
        if self.config:
            update = client_events.session_update(self.config)
            await self._send_now(ws, update)
            if (refused := await self._await_config_answer(ws, update["event_id"])) and first:
                await ws.close()  # the caller must not go on with a configuration not confirmed
                raise ServerRejected(f"the server refused the session configuration: {refused}")
        if (not first and options.restore_history) or (first and self._restore_first):
            for item in history_items(self.conversation):
                await self._send_now(ws, client_events.item_create(item))
        self._requeue_unanswered()
        self._ready.set()
        if not first:
            self.note("rtwidget.reconnected", reconnects=self.reconnects)

    async def _await_config_answer(self, ws: ClientConnection, event_id: str) -> str | None:
        """Read (and handle) events until the server answers the configuration just sent (so its
        ``session.updated`` is not taken for a later update's answer); a refusal's message is
        returned and kept in ``conversation.problems``. Waits ``open_timeout`` at most."""

        async def answer() -> str | None:
            while True:
                raw = await ws.recv()
                event = self._decode(raw)
                if event is None:
                    continue
                self._handle(event, len(raw))
                kind = event.get("type")
                err = event.get("error") if kind == "error" else None
                if kind == "session.updated" or (
                        isinstance(err, dict) and err.get("event_id") in (None, event_id)):
                    if err is not None:
                        self.conversation.problems.append(
                            f"the server refused the session configuration: "
                            f"{err.get('message')}")
                    return None if err is None else str(err.get("message"))

        try:
            return await within(answer(), self._options.open_timeout)
        except asyncio.TimeoutError:
            log.warning("no answer to the configuration within %g s", self._options.open_timeout)
            return None

    async def _headers(self) -> dict[str, str]:
        """The connection's headers; a JWT to mint is fetched off the loop, and a failure to
        reach the token endpoint counts as a failed attempt (retried), a refusal as final."""
        if self.endpoint.token_source is None:
            return self.endpoint.headers()
        try:
            return await asyncio.to_thread(self.endpoint.headers)
        except AuthenticationError:
            raise
        except RealtimeError as exc:
            raise ConnectionError(str(exc)) from None

    async def _recv_until_created(self, ws: ClientConnection) -> dict[str, Any]:
        while True:
            raw = await ws.recv()
            event = self._decode(raw)
            if event is None:
                continue
            if event.get("type") == "session.created":
                return event
            self._handle(event, len(raw))

    def _requeue_unanswered(self) -> None:
        """Client events the last connection took but the server never answered: sent again
        first (items, responses, item operations), or reported as lost (an audio commit: its
        audio died with the connection)."""
        again, lost = self.acks.take_unanswered()
        for event in reversed(again):
            self._outbox.appendleft((event, self._encoded(event)))
        if again:
            log.info("sending %d unanswered client event(s) again", len(again))
        if lost:
            self.conversation.problems.append(
                "lost with the connection, not sent again: "
                + ", ".join(f"{e.get('type')} {e.get('event_id')}" for e in lost))
            self.note("rtwidget.events_lost", events=[
                {"type": e.get("type"), "event_id": e.get("event_id")} for e in lost])

    async def _pump(self) -> None:
        ws = self._ws
        assert ws is not None and self._wake is not None
        writer = asyncio.create_task(self._write(ws))
        writer.add_done_callback(lambda task: self._writer_done(task, ws))
        try:
            async for raw in ws:
                event = self._decode(raw)
                if event is not None:
                    self._handle(event, len(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def _writer_done(self, task: asyncio.Task[None], ws: ClientConnection) -> None:
        if task.cancelled() or isinstance(task.exception(), websockets.ConnectionClosed):
            return
        # the reader must not go on alone: dropping the connection sends it all again
        log.error("the session's writer failed; reconnecting", exc_info=task.exception())
        ws.transport.abort()

    async def _write(self, ws: ClientConnection) -> None:
        assert self._wake is not None
        while True:
            while self._outbox:
                event, text = self._outbox[0]
                await self._send_now(ws, event, text)
                self._outbox.popleft()
                self.acks.sent(event)
            self._wake.clear()
            if self._outbox:
                continue
            await self._wake.wait()

    # --- events in -------------------------------------------------------------------------

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        event, problem = decode_event(raw)
        if problem is not None:
            self.conversation.problems.append(problem)
        return event

    def _handle(self, event: dict[str, Any], size: int) -> None:
        try:
            self.acks.received(event)
            update = self.conversation.apply(event, size)
            if self.recorder is not None:
                self.recorder.write("in", event, self.conversation.now, size)
        except Exception as exc:  # the session goes on; the event is not lost from view
            log.error("could not apply a server event", exc_info=True)
            self.conversation.problems.append(
                f"could not apply a {str(event.get('type'))[:80]} event: {type(exc).__name__}")
            return
        self.hub.dispatch(event, update)

    def note(self, kind: str, **fields: Any) -> None:
        """Log, record and announce something the client itself did or saw (``rtwidget.*``
        events: a tool's result, playback starting, a reconnect). Call it on the loop."""
        event = {"type": kind, **fields}
        update = self.conversation.note(event)
        if self.recorder is not None:
            self.recorder.write("local", event, self.conversation.now, 0)
        self.hub.dispatch(event, update)
