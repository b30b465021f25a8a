"""Realtime sessions over WebSocket: :class:`AsyncRealtimeSession` for code with its own event
loop, and :class:`RealtimeSession`, which runs one on a private thread so that audio, keepalives
and tool calls keep flowing while a notebook cell is busy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import random
import re
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from ..data.frame import FrameCache, LiveView, events_frame, export
from ..errors import (
    AuthenticationError,
    ConnectionClosed,
    ErrorInfo,
    RealtimeError,
    ServerError,
    ServerRejected,
    error_info_from_event,
)
from ..protocol import events
from ..protocol.audio import SAMPLE_RATE, resample, to_pcm16
from ..protocol.client_events import NOT_GIVEN, check_session_for, merge_session, session_config
from ..protocol.conversation import BETA_ALIASES, Conversation, Response, Update
from ..protocol.dialects import encode
from ..protocol.redact import known_secrets, wire_logger
from ..tooling.registry import ToolSet
from ..tooling.runner import ToolResult, ToolRunner
from .providers import Endpoint, resolve
from .recorder import Recorder

log = logging.getLogger("rtwidget.session")

T = TypeVar("T")
Listener = Callable[[dict[str, Any]], Any]
AudioListener = Callable[[str, bytes], Any]
Predicate = Callable[[dict[str, Any]], bool]

_FATAL_CLOSE = {1002, 1003, 1007, 1008, 1010, 4001, 4003, 4401, 4403}
_AUTH_CLOSE = {1008, 4001, 4003, 4401, 4403}
_MAX_RETRY_AFTER = 60.0
_POLL = 0.25  # how often a blocked caller checks that the session's loop is still alive
_GRACE = 2.0  # beyond a call's own timeout, before the caller stops waiting for the loop

# Client events kept until the server acknowledges them; after a reconnect the first kind is
# sent again, the others (whose state died with the connection) are reported as lost.
_RESEND = {"conversation.item.create", "response.create", "conversation.item.delete",
           "conversation.item.truncate", "conversation.item.retrieve"}
_TRACKED = _RESEND | {"input_audio_buffer.commit"}
_MAX_UNACKED = 1_000
_MAX_REMEMBERED = 256  # response.create event ids -> the response each created


def _item_id(event: dict[str, Any]) -> Any:
    item = event.get("item")
    return item.get("id") if isinstance(item, dict) else event.get("item_id")


# server event -> the client event it acknowledges, and how the two are paired (None: in order)
_ACKS: dict[str, tuple[str, Callable[[dict[str, Any]], Any] | None]] = {
    "response.created": ("response.create", None),
    "conversation.item.added": ("conversation.item.create", _item_id),
    "conversation.item.deleted": ("conversation.item.delete", _item_id),
    "conversation.item.truncated": ("conversation.item.truncate", _item_id),
    "conversation.item.retrieved": ("conversation.item.retrieve", _item_id),
    "input_audio_buffer.committed": ("input_audio_buffer.commit", None),
}

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _without_surrogates(value: Any) -> Any:
    """``value`` with lone UTF-16 surrogates (which JSON escapes can carry, and which no
    encoder downstream accepts) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


@dataclass(frozen=True)
class Reconnect:
    """How to retry a dropped connection: exponential backoff with full jitter.

    The n-th wait is uniform in ``[0, min(max_delay, base_delay * 2**n)]``; after
    ``max_attempts`` failed attempts in a row the session gives up.
    """

    base_delay: float = 0.5
    max_delay: float = 15.0
    max_attempts: int = 10

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt number ``attempt`` (0-based)."""
        return rng() * min(self.max_delay, self.base_delay * 2**attempt)


NO_RECONNECT = Reconnect(max_attempts=0)


def _classify_handshake(exc: BaseException) -> Exception | None:
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


def _retry_after(exc: BaseException) -> float:
    """Seconds an HTTP 429/503 asked us to wait (``Retry-After``), else 0."""
    if isinstance(exc, InvalidStatus):
        value = exc.response.headers.get("Retry-After", "")
        with contextlib.suppress(ValueError):
            return min(_MAX_RETRY_AFTER, max(0.0, float(value)))
    return 0.0


def _version() -> str:
    try:
        return importlib.metadata.version("rtwidget")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_ERROR_HINTS = {"session.update": ("session",), "conversation.item.retrieve": ("retrieve",),
                "conversation.item.delete": ("delete",),
                "conversation.item.truncate": ("truncate", "audio_end_ms", "content_index")}


def _error_fits(hint: str, request_type: str) -> bool:
    """Whether an error's ``param``/``code`` text points at a request of this type."""
    return any(word in hint for word in _ERROR_HINTS.get(request_type, ()))


def _predicate(match: str | Predicate) -> Predicate:
    if not isinstance(match, str):
        return match
    kind = BETA_ALIASES.get(match, match)

    def same_type(ev: dict[str, Any]) -> bool:
        return BETA_ALIASES.get(ev.get("type", ""), ev.get("type")) == kind

    return same_type


class AsyncRealtimeSession:
    """A Realtime session on the caller's event loop.

    ``config`` keywords are those of :func:`rtwidget.protocol.session_config` (``model``,
    ``instructions``, ``voice``, ``tts_model``, ``turn_detection``, ``tool_choice``...). They
    are sent after ``session.created`` and sent again after every reconnect, together with the
    conversation so far, so the server picks up where it left off.

    ``tools`` chooses what the model may call: by default every tool in :data:`rtwidget.tools`
    (kept current as tools are defined); or a :class:`~rtwidget.ToolRegistry`; or a
    list of functions, tool names and raw definitions (dicts, whose calls you answer yourself);
    or ``False`` for none. ``run_tools=False`` leaves every call to you.

    ``ping_interval`` / ``ping_timeout``: the keepalive; a server that answers no ping in time
    counts as a dropped connection. A server event over ``max_message_bytes`` closes the
    connection (code 1009), which is then retried like any drop.

    ``conversation`` is the state to fill; a long-running session can bound its memory with
    ``Conversation(keep_audio=False, max_log=5000)`` (no reply audio kept, a shorter log).

    ``record`` writes the session to a folder (:mod:`rtwidget.protocol.record_format`): a
    path, or ``True`` for a new folder under ``recordings/``. Load it back with
    :func:`rtwidget.load_recording`.
    """

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        reconnect: Reconnect = Reconnect(),
        restore_history: bool = True,
        open_timeout: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        conversation: Conversation | None = None,
        tools: Any = None,
        run_tools: bool = True,
        max_tool_rounds: int = 8,
        record: str | Path | bool | None = None,
        **config: Any,
    ) -> None:
        self.endpoint = endpoint or resolve()
        self.record = record
        self.reconnect = reconnect
        self.restore_history = restore_history
        self.open_timeout = open_timeout
        self.max_message_bytes = max_message_bytes
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.conversation = conversation if conversation is not None else Conversation()
        self.config: dict[str, Any] = session_config(**config) if config else {}
        check_session_for(self.endpoint.provider, self.config)
        if self.config:
            self._encoded(events.session_update(self.config))
        self._requests: dict[str, str] = {}  # event_id -> type of requests awaiting an answer
        self._last_answer: dict[str, Any] | None = None  # the event that answered one last
        self.dropped_audio_frames = 0
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._listeners: dict[str, list[Listener]] = {}
        self._audio_listeners: list[AudioListener] = []
        self._waiters: list[tuple[Predicate, asyncio.Future[dict[str, Any]]]] = []
        self._outbox: deque[tuple[dict[str, Any], str]] = deque()
        self._unacked: dict[str, dict[str, Any]] = {}
        self._created_for: OrderedDict[str, str] = OrderedDict()
        self._follow_ups: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._wake: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._closing = False
        self._fatal: Exception | None = None
        self._first_error: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self.run_tools = run_tools
        self.max_tool_rounds = max_tool_rounds
        self.toolset = tools if isinstance(tools, ToolSet) else ToolSet(tools)
        self._restore_first = restore_history and len(self.conversation) > 0
        self._task: asyncio.Task[None] | None = None
        self._runner: ToolRunner | None = None
        self._registry_off: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames = FrameCache(self.conversation)
        self.recorder: Recorder | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is open and configured right now."""
        return self._ready is not None and self._ready.is_set()

    @property
    def closed(self) -> bool:
        """Whether the session has ended (closed by the user or by a final error)."""
        return self._closing or self._fatal is not None

    async def connect(self) -> None:
        """Open the connection, wait for ``session.created`` and apply the configuration.

        Transient failures are retried under the :class:`Reconnect` policy; a refused key raises
        :class:`AuthenticationError` at once.
        """
        if self._task is not None:
            return
        if not self.endpoint.url:
            from ..server import shared_local_server

            server = await asyncio.to_thread(shared_local_server)
            self.endpoint = resolve("local", url=server.url)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._start_tools()
        try:
            self._encoded(events.session_update(self.config))
        except ValueError:
            self._stop_tools()
            raise
        if self.record and self.recorder is None:
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
        finally:
            ready.cancel()
        if self._first_error.done() and self._first_error.exception() is not None:
            await self.close()
            raise self._first_error.exception()  # type: ignore[misc]
        if not self._ready.is_set():  # the loop ended without saying why
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
                await asyncio.wait_for(ws.close(), timeout=2)
        self._stop_tools()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._fail_waiters(ConnectionClosed("the session was closed"))
        if self.recorder is not None:
            self.recorder.meta["config"] = self.config
            await asyncio.to_thread(self.recorder.close)

    def _open_recorder(self) -> Recorder:
        folder = Path(self.record) if isinstance(self.record, (str, Path)) else \
            Path("recordings") / (time.strftime("%Y%m%d-%H%M%S", time.gmtime()) +
                                  f"-{uuid.uuid4().hex[:6]}")
        endpoint = self.endpoint
        secrets = [endpoint.secret.reveal()] if endpoint.secret else []
        secrets += [*endpoint.extra_headers.values(), *known_secrets()]
        meta = {"endpoint": {"provider": endpoint.provider, "url": endpoint.describe(),
                             "dialect": endpoint.dialect},
                "config": self.config, "rtwidget": _version()}
        return Recorder(folder, meta, secrets)

    # --- tools -------------------------------------------------------------------------------

    def _start_tools(self) -> None:
        defs = self.toolset.definitions()
        if defs or "tools" in self.config:
            self.config["tools"] = defs
        if self.run_tools and self._runner is None:
            self._runner = ToolRunner(self, self.toolset, self.max_tool_rounds)
        self._watch_registry()

    def _watch_registry(self) -> None:
        if self._registry_off is not None:
            self._registry_off()
            self._registry_off = None
        registry = self.toolset.registry
        if registry is None:
            return

        def changed(_: object) -> None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._tools_changed)

        self._registry_off = registry.subscribe(changed)

    def _stop_tools(self) -> None:
        if self._registry_off is not None:
            self._registry_off()
            self._registry_off = None
        if self._runner is not None:
            self._runner.detach()
            self._runner = None

    def _tools_changed(self) -> None:
        """A tool was defined, redefined or removed: send the new list if it differs."""
        defs = self.toolset.definitions()
        if defs == self.config.get("tools", []) or self.closed:
            return
        if not self.connected:
            self.config["tools"] = defs  # sent with the configuration on connecting
            return
        task = asyncio.ensure_future(self._send_tools(defs))
        self._background.add(task)
        task.add_done_callback(self._listener_done)

    async def _send_tools(self, defs: list[dict[str, Any]]) -> None:
        """Send a changed tool list as a tracked request (so its ``session.updated`` is not
        taken for another update's answer), and keep it once confirmed."""
        update = events.session_update({"type": "realtime", "tools": defs})
        try:
            await self.request(update, self._updated_for(update["event_id"]))
        except (ServerError, ConnectionClosed, TimeoutError, ValueError) as exc:
            log.warning("the server did not take the new tool list: %s", exc)
            return
        self.config["tools"] = defs

    def _use_tools(self, toolset: ToolSet) -> None:
        self.toolset = toolset
        if self._runner is not None:
            self._runner.toolset = toolset
        self._watch_registry()

    @property
    def tool_results(self) -> dict[str, ToolResult]:
        """Finished tool calls by ``call_id``."""
        return dict(self._runner.results) if self._runner is not None else {}

    async def __aenter__(self) -> AsyncRealtimeSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- events in ---------------------------------------------------------------------------

    def on(self, event_type: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on the session's loop for each server event of this type
        (GA or beta name; ``"*"`` for all). Returns a function that unsubscribes."""
        kind = BETA_ALIASES.get(event_type, event_type)
        self._listeners.setdefault(kind, []).append(callback)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.get(kind, []).remove(callback)

        return off

    def on_audio(self, callback: AudioListener) -> Callable[[], None]:
        """Call ``callback(item_id, pcm16_bytes)`` for every received assistant audio delta."""
        self._audio_listeners.append(callback)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._audio_listeners.remove(callback)

        return off

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
        return self._await_waiter(self._subscribe(_predicate(match)), timeout)

    def _subscribe(self, predicate: Predicate) -> tuple[Predicate, asyncio.Future[dict[str, Any]]]:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise ConnectionClosed("the session is closed")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        return entry

    def _unsubscribe(self, entry: tuple[Predicate, asyncio.Future[dict[str, Any]]]) -> None:
        entry[1].cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)

    async def _await_waiter(
        self, entry: tuple[Predicate, asyncio.Future[dict[str, Any]]], timeout: float | None
    ) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(entry[1], timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no matching server event within {timeout} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # --- events out --------------------------------------------------------------------------

    def send_nowait(self, event: dict[str, Any]) -> None:
        """Queue a client event. While disconnected, audio appends are dropped (and counted)
        and every other event waits for the next connection. An event that cannot be encoded
        as JSON raises :class:`ValueError` here and is not sent."""
        self._enqueue(event, None)

    def _enqueue(self, event: dict[str, Any], text: str | None) -> None:
        if self._closing or self._fatal is not None:
            raise ConnectionClosed("the session is closed")
        if not self.connected and event.get("type") == "input_audio_buffer.append":
            self.dropped_audio_frames += 1
            return
        if event.get("type") == "conversation.item.create" and isinstance(event.get("item"), dict) \
                and not event["item"].get("id"):  # an id lets the server's answer be matched
            event = {**event, "item": {**event["item"], "id": events.new_item_id()}}
            text = None
        if not isinstance(event.get("event_id"), str):
            event = {**event, "event_id": events.new_event_id()}
            text = None
        self._outbox.append((event, text if text is not None else self._encoded(event)))
        if self._wake is not None:
            self._wake.set()

    def _encoded(self, event: dict[str, Any]) -> str:
        """The wire text of a client event, or a :class:`ValueError` saying why there is none."""
        try:
            return encode(event, self.endpoint.dialect)
        except (TypeError, ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ValueError(f"the {event.get('type')!r} event cannot be sent as JSON: "
                             f"{reason}") from None

    async def send(self, event: dict[str, Any]) -> None:
        """Queue a client event (see :meth:`send_nowait`)."""
        self.send_nowait(event)

    async def request(
        self, event: dict[str, Any], match: Predicate, timeout: float | None = 30.0
    ) -> dict[str, Any]:
        """Send ``event`` and wait for the answer ``match`` accepts; an ``error`` event naming
        this ``event_id`` raises :class:`ServerError` instead."""
        event_id = event["event_id"]
        kind = str(event.get("type"))

        def answers(ev: dict[str, Any]) -> bool:
            if ev.get("type") == "error":
                err = ev.get("error")
                if not isinstance(err, dict):
                    return False
                if err.get("event_id") is None:
                    return self._claims_unnamed_error(event_id, err)
                return bool(err.get("event_id") == event_id)
            return match(ev)

        def answer(ev: dict[str, Any]) -> bool:
            # one event answers one request, and it is answered now, not when the caller
            # wakes: the next event, maybe read before that, answers the next one in line
            if ev is self._last_answer or not answers(ev):
                return False
            self._requests.pop(event_id, None)
            self._last_answer = ev
            return True

        entry = self._subscribe(answer)
        self._requests[event_id] = kind
        try:
            self.send_nowait(event)
        except BaseException:
            self._unsubscribe(entry)
            self._requests.pop(event_id, None)
            raise
        try:
            result = await self._await_waiter(entry, timeout)
        finally:
            self._requests.pop(event_id, None)
        return self._raise_error(result, event)

    def _raise_error(self, result: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        """``result``, unless it is the server's ``error`` for ``event``: then raise it."""
        if result.get("type") == "error":
            raise ServerError(self._request_error(result, event["event_id"],
                                                  str(event.get("type"))))
        return result

    def _updated_for(self, event_id: str) -> Predicate:
        """Matches the ``session.updated`` answering the ``session.update`` ``event_id``: the
        server answers updates in order and ``session.updated`` names none, so it is the
        answer to the oldest update sent and still waiting."""

        def oldest_update() -> str | None:
            for eid, kind in self._requests.items():
                if kind == "session.update" and self.conversation.caused_by(eid) is not None:
                    return eid
            return None

        return lambda ev: ev.get("type") == "session.updated" and oldest_update() == event_id

    def _claims_unnamed_error(self, event_id: str, err: dict[str, Any]) -> bool:
        """Whether an ``error`` without an ``event_id`` (Inworld sends ``null``) belongs to the
        waiting request ``event_id``: of the requests already sent and still waiting, those
        whose type the error's ``param``/``code`` points at, else all of them; the oldest one
        takes it."""
        sent = [(eid, kind) for eid, kind in self._requests.items()
                if self.conversation.caused_by(eid) is not None]
        hint = f"{err.get('param') or ''} {err.get('code') or ''}".lower()
        fitting = [eid for eid, kind in sent if _error_fits(hint, kind)]
        candidates = fitting or [eid for eid, _ in sent]
        return bool(candidates) and candidates[0] == event_id

    def _request_error(self, event: dict[str, Any], event_id: str, kind: str) -> ErrorInfo:
        """The :class:`ErrorInfo` for an ``error`` answering the request ``event_id``."""
        info = self.conversation.errors[-1] if self.conversation.errors else None
        if info is None or info.event_id != event_id:
            info = error_info_from_event(event, kind, 0.0)
        if info.event_id is None:
            info = dataclasses.replace(info, caused_by=kind, matched_by_order=True)
        return info

    async def update(self, **config: Any) -> dict[str, Any]:
        """Change the session (partial update) and return the server's session object.

        The change is kept (and sent again after a reconnect) only once the server confirms
        it with ``session.updated``; a rejected update raises :class:`ServerError` and leaves
        the configuration (tools included) as it was."""
        previous_tools = self.toolset
        try:
            if "tools" in config:
                self._use_tools(ToolSet(config.pop("tools")))
                config["tools"] = self.toolset.definitions()
            patch = session_config(**config)
            check_session_for(self.endpoint.provider, patch)
            update = events.session_update(patch)
            answer = await self.request(update, self._updated_for(update["event_id"]))
        except BaseException:
            if self.toolset is not previous_tools:
                self._use_tools(previous_tools)
            raise
        # kept only once confirmed: a rejected update must not come back after a reconnect
        self.config = merge_session(self.config, patch)
        session = answer.get("session")
        return session if isinstance(session, dict) else {}

    async def send_text(
        self, text: str, *, respond: bool = True, role: str = "user"
    ) -> str:
        """Add a text message (and ask for a response); returns the new item's id."""
        item_id = events.new_item_id()
        self.send_nowait(events.item_create(events.text_message(text, role, item_id)))  # type: ignore[arg-type]
        if respond:
            self.send_nowait(events.response_create())
        return item_id

    async def send_audio_item(
        self, audio: Any, *, transcript: str | None = None, respond: bool = True,
        rate: int = SAMPLE_RATE,
    ) -> str:
        """Add a pre-recorded user audio message (PCM16 mono, or float; ``rate`` Hz, converted
        to the protocol's 24 kHz); returns the item id."""
        if rate != SAMPLE_RATE:
            audio = resample(to_pcm16(audio), rate)
        item_id = events.new_item_id()
        self.send_nowait(events.item_create(events.audio_message(audio, transcript, item_id)))
        if respond:
            self.send_nowait(events.response_create())
        return item_id

    def append_audio(self, audio: Any) -> None:
        """Stream microphone audio (PCM16 24 kHz mono) into the input buffer."""
        self.send_nowait(events.input_audio_append(to_pcm16(audio)))

    async def ask(self, text: str, timeout: float = 60.0) -> str:
        """Send a text turn and return the reply's text once the model has finished, tool
        calls included. Only the response this turn created counts (and the ones the session
        creates after running its tools), not another that ends meanwhile."""
        deadline = asyncio.get_running_loop().time() + timeout

        def left() -> float:
            return max(0.0, deadline - asyncio.get_running_loop().time())

        if self._fatal is not None:
            raise self._fatal
        try:
            await self.send_text(text, respond=False)
            create = events.response_create()
            created = self._created(create)
            try:
                self.send_nowait(create)
            except BaseException:
                created.close()
                raise
            response_id = await asyncio.wait_for(created, left())
            while True:
                await self._finished(response_id, left())
                response = self.conversation.responses.get(response_id)
                if response is None or not self._needs_follow_up(response):
                    return self.reply_text(response) if response is not None else ""
                follow_up = self._follow_up(response_id)
                next_create = await asyncio.wait_for(asyncio.shield(follow_up), left())
                response_id = await asyncio.wait_for(self._created(next_create), left())
        except asyncio.TimeoutError:
            raise TimeoutError(f"no complete reply within {timeout:g} s") from None

    def _created(self, create: dict[str, Any]) -> Coroutine[Any, Any, str]:
        """Awaits the id of the response the server created for the ``response.create`` event
        ``create`` (an ``error`` naming the event raises :class:`ServerError`). Subscribes at
        once, so call it before sending."""
        event_id = create["event_id"]

        def answer(ev: dict[str, Any]) -> bool:
            if ev.get("type") == "error":
                err = ev.get("error")
                return isinstance(err, dict) and err.get("event_id") == event_id
            return ev.get("type") == "response.created" and event_id in self._created_for

        entry = self._subscribe(answer)

        async def wait() -> str:
            if event_id in self._created_for:
                self._unsubscribe(entry)
            else:
                self._raise_error(await self._await_waiter(entry, None), create)
            return self._created_for[event_id]

        return wait()

    async def _finished(self, response_id: str, timeout: float) -> None:
        """Return once the response is done (at once if it already is)."""
        entry = self._subscribe(lambda ev: ev.get("type") == "response.done"
                                and isinstance(ev.get("response"), dict)
                                and ev["response"].get("id") == response_id)
        response = self.conversation.responses.get(response_id)
        if response is not None and response.status != "in_progress":
            self._unsubscribe(entry)
            return
        await self._await_waiter(entry, timeout)

    def _follow_up(self, response_id: str) -> asyncio.Future[dict[str, Any]]:
        """Resolves to the ``response.create`` the tool runner sends after answering the
        calls of ``response_id``."""
        future = self._follow_ups.get(response_id)
        if future is None:
            future = self._follow_ups[response_id] = asyncio.get_running_loop().create_future()
            while len(self._follow_ups) > _MAX_REMEMBERED:
                self._follow_ups.popitem(last=False)[1].cancel()
        return future

    def followed_up(self, response_id: str, create: dict[str, Any]) -> None:
        """Tell ``ask()`` that ``create`` continues ``response_id`` (tools answered)."""
        future = self._follow_up(response_id)
        if not future.done():
            future.set_result(create)

    def _needs_follow_up(self, response: Response) -> bool:
        """Whether the session will answer tool calls of this response with another one."""
        runner = self._runner
        if response.status != "completed" or runner is None:
            return False
        items = (self.conversation.get(i) for i in response.item_ids)
        return any(i is not None and i.type == "function_call" and runner.handles(i.name)
                   for i in items)

    def reply_text(self, response: Response) -> str:
        """The text (or audio transcript) of a response's messages."""
        texts = []
        for item_id in response.item_ids:
            item = self.conversation.get(item_id)
            if item is not None and item.type == "message":
                texts.append(item.display_text)
        return "".join(texts)

    async def create_response(self, **overrides: Any) -> str:
        """Ask for a response, with optional per-response overrides; returns the event id."""
        event = events.response_create(**overrides)
        check_session_for(self.endpoint.provider, event.get("response") or {})
        self.send_nowait(event)
        return str(event["event_id"])

    async def cancel(self, response_id: str | None = None) -> None:
        """Cancel the response in progress (or the one named)."""
        self.send_nowait(events.response_cancel(response_id))

    async def commit_audio(self) -> None:
        """End the user's audio turn by hand (when server VAD is off)."""
        self.send_nowait(events.input_audio_commit())

    async def clear_audio(self) -> None:
        """Drop audio appended but not yet committed."""
        self.send_nowait(events.input_audio_clear())

    async def retrieve(self, item_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The server's copy of an item."""
        answer = await self.request(
            events.item_retrieve(item_id),
            lambda ev: ev.get("type") == "conversation.item.retrieved"
            and isinstance(ev.get("item"), dict)
            and ev["item"].get("id") == item_id,
            timeout,
        )
        return dict(answer["item"])

    async def delete(self, item_id: str, timeout: float = 30.0) -> None:
        """Delete an item on the server (and so in the local conversation)."""
        await self.request(
            events.item_delete(item_id),
            lambda ev: ev.get("type") == "conversation.item.deleted"
            and ev.get("item_id") == item_id,
            timeout,
        )

    async def truncate(
        self, item_id: str, audio_end_ms: int, content_index: int = 0, timeout: float = 30.0
    ) -> None:
        """Tell the server the assistant's audio after ``audio_end_ms`` was never heard."""
        await self.request(
            events.item_truncate(item_id, audio_end_ms, content_index),
            lambda ev: ev.get("type") == "conversation.item.truncated"
            and ev.get("item_id") == item_id,
            timeout,
        )

    # --- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        assert self._ready is not None and self._first_error is not None
        attempt = 0
        ever_connected = False
        while not self._closing:
            asked_wait = 0.0
            try:
                await self._connect_once(first=not ever_connected)
                ever_connected = True
                attempt = 0
                await self._pump()
                if self._closing:
                    break
                code = self._ws.close_code if self._ws is not None else None
                if code in _FATAL_CLOSE:
                    raise self._close_error(code)
                reason = self._close_reason(code)
            except asyncio.CancelledError:
                raise
            except (AuthenticationError, ServerRejected) as exc:
                self._finish(exc)
                return
            except (OSError, InvalidHandshake, TimeoutError, websockets.ConnectionClosed,
                    ConnectionError) as exc:
                final = _classify_handshake(exc)
                if final is not None:
                    self._finish(final)
                    return
                reason = str(exc) or type(exc).__name__
                asked_wait = _retry_after(exc)
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
            abandoned = [r for r in self.conversation.responses.values()
                         if r.status == "in_progress"]
            self.note("rtwidget.connection_lost", reason="connection_lost", detail=str(reason))
            for response in abandoned:  # listeners waiting on these must not wait forever
                done = {"type": "response.done", "response": {
                    "id": response.id, "status": "failed",
                    "status_details": response.status_details}}
                self._dispatch(done, Update(type="response.done", known=False))
            if attempt >= self.reconnect.max_attempts:
                self._finish(ConnectionClosed(
                    f"gave up after {attempt} reconnect attempts; last failure: {reason}"
                ))
                return
            delay = max(self.reconnect.delay(attempt), asked_wait)
            attempt += 1
            log.warning("connection lost (%s); reconnecting in %.2f s (attempt %d)",
                        reason, delay, attempt)
            self.note("rtwidget.reconnecting", attempt=attempt, delay=delay, reason=str(reason))
            await asyncio.sleep(delay)

    def _close_reason(self, code: int | None) -> str:
        ws = self._ws
        text = (ws.close_reason or "") if ws is not None else ""
        sent = getattr(ws.protocol, "close_sent", None) if ws is not None else None
        if code == 1009 or getattr(sent, "code", None) == 1009:  # we refused a message
            problem = (f"a server event was larger than max_message_bytes "
                       f"({self.max_message_bytes} bytes); the connection was closed")
            self.conversation.problems.append(problem)
            return problem
        return f"the server closed the connection (code {code}{': ' + text if text else ''})"

    def _close_error(self, code: int) -> Exception:
        if code in _AUTH_CLOSE:
            return AuthenticationError(f"the server closed the session for auth (code {code})")
        return ServerRejected(f"the server closed the session (code {code}); retrying would "
                              "repeat the failure")

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
        for _, future in list(self._waiters):
            if not future.done():
                future.set_exception(exc)
        for follow_up in self._follow_ups.values():
            if not follow_up.done():
                follow_up.set_exception(exc)
                follow_up.exception()  # nobody may be waiting: not worth a warning

    async def _connect_once(self, *, first: bool) -> None:
        assert self._ready is not None
        ws = await connect(
            self.endpoint.connect_url(),
            additional_headers=await self._headers(),
            open_timeout=self.open_timeout,
            max_size=self.max_message_bytes,
            compression=None,
            proxy=None if self.endpoint.is_loopback else True,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=2,  # a peer that stopped answering is not waited for long
            logger=wire_logger("client"),
        )
        self._ws = ws
        created = await asyncio.wait_for(self._recv_until_created(ws), self.open_timeout)
        self._handle(created, 0)
        if not first:
            self.reconnects += 1
        if self.config:
            update = events.session_update(self.config)
            await self._send_now(ws, update)
            await self._await_config_answer(ws, update["event_id"])
        if (not first and self.restore_history) or (first and self._restore_first):
            for item in self._history_items():
                await self._send_now(ws, events.item_create(item))
        self._requeue_unacknowledged()
        self._ready.set()
        if not first:
            self.note("rtwidget.reconnected", reconnects=self.reconnects)

    async def _await_config_answer(self, ws: ClientConnection, event_id: str) -> None:
        """Read (and handle) events until the server answers the configuration just sent, so
        that its ``session.updated`` is not taken for the answer to a later update. A refusal
        is kept in ``conversation.problems``; a server that never answers is not waited for
        longer than ``open_timeout``."""

        async def answer() -> None:
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
                    return

        try:
            await asyncio.wait_for(answer(), self.open_timeout)
        except asyncio.TimeoutError:
            log.warning("no answer to the session configuration within %g s; going on",
                        self.open_timeout)

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

    def _history_items(self) -> list[dict[str, Any]]:
        """The conversation so far as items to re-create after a reconnect: messages as text
        (audio as its transcript), function calls and outputs as they were, same ids."""
        items: list[dict[str, Any]] = []
        for item in self.conversation:
            if item.type == "message" and item.role in ("user", "assistant", "system"):
                text = item.display_text
                if text:
                    items.append(events.text_message(text, item.role, item.id))  # type: ignore[arg-type]
            elif item.type == "function_call" and item.call_id and item.name:
                items.append({"type": "function_call", "id": item.id, "call_id": item.call_id,
                              "name": item.name, "arguments": item.arguments or "{}"})
            elif item.type == "function_call_output" and item.call_id:
                items.append(events.function_call_output(item.call_id, item.output or "",
                                                         item.id))
        return items

    def _requeue_unacknowledged(self) -> None:
        """Client events the last connection took but the server never answered: sent again
        first (items, responses, item operations), or reported as lost (an audio commit: its
        audio died with the connection)."""
        pending, self._unacked = list(self._unacked.values()), {}
        again = [e for e in pending if e.get("type") in _RESEND]
        lost = [e for e in pending if e.get("type") not in _RESEND]
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

    def _awaiting_answer(self, event: dict[str, Any]) -> None:
        if event.get("type") in _TRACKED:
            self._unacked[event["event_id"]] = event
            if len(self._unacked) > _MAX_UNACKED:  # a server that never answers
                self._unacked.pop(next(iter(self._unacked)))

    def _acknowledge(self, event: dict[str, Any]) -> None:
        """Forget the client event this server event answers (see :meth:`_awaiting_answer`)."""
        kind = event.get("type")
        if not isinstance(kind, str):
            return
        kind = BETA_ALIASES.get(kind, kind)
        if kind == "error":
            err = event.get("error")
            if isinstance(err, dict) and isinstance(err.get("event_id"), str):
                self._unacked.pop(err["event_id"], None)
            return
        rule = _ACKS.get(kind)
        if rule is None or not self._unacked:
            return
        client_type, key = rule
        wanted = key(event) if key is not None else None
        for event_id, sent in self._unacked.items():
            if sent.get("type") == client_type and (key is None or _item_id(sent) == wanted):
                del self._unacked[event_id]
                break
        else:
            return
        if kind == "response.created" and isinstance(event.get("response"), dict):
            self._created_for[event_id] = str(event["response"].get("id"))
            while len(self._created_for) > _MAX_REMEMBERED:
                self._created_for.popitem(last=False)

    async def _send_now(self, ws: ClientConnection, event: dict[str, Any],
                        text: str | None = None) -> None:
        if text is None:
            text = encode(event, self.endpoint.dialect)
        await ws.send(text)
        self.conversation.record_sent(event, len(text))
        if self.recorder is not None:
            self.recorder.write("out", event, self.conversation.now, len(text))

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
                self._awaiting_answer(event)
            self._wake.clear()
            if self._outbox:
                continue
            await self._wake.wait()

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        """The event in a server message, with its text made safe (no lone surrogates), or
        ``None`` with the reason in ``conversation.problems``."""
        try:
            event = json.loads(raw)
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            if "\\u" in text and _SURROGATE_ESCAPE.search(text):
                event = _without_surrogates(event)
        except RecursionError:
            self.conversation.problems.append("server sent a message nested too deeply")
            return None
        except (ValueError, UnicodeDecodeError) as exc:
            self.conversation.problems.append(f"server sent a message that is not JSON: {exc}")
            return None
        if not isinstance(event, dict):
            self.conversation.problems.append("server sent JSON that is not an object")
            return None
        return event

    def _handle(self, event: dict[str, Any], size: int) -> None:
        try:
            self._acknowledge(event)
            update = self.conversation.apply(event, size)
            if self.recorder is not None:
                self.recorder.write("in", event, self.conversation.now, size)
        except Exception as exc:  # the session goes on; the event is not lost from view
            log.error("could not apply a server event", exc_info=True)
            self.conversation.problems.append(
                f"could not apply a {str(event.get('type'))[:80]} event: {type(exc).__name__}")
            return
        self._dispatch(event, update)

    def note(self, kind: str, **fields: Any) -> None:
        """Log, record and announce something the client itself did or saw (``rtwidget.*``
        events: a tool's result, playback starting, a reconnect). Call it on the loop."""
        event = {"type": kind, **fields}
        update = self.conversation.note(event)
        if self.recorder is not None:
            self.recorder.write("local", event, self.conversation.now, 0)
        self._dispatch(event, update)

    def _dispatch(self, event: dict[str, Any], update: Update) -> None:
        kind = BETA_ALIASES.get(update.type, update.type)
        if update.audio is not None and update.item is not None:
            for audio_cb in list(self._audio_listeners):
                self._safely(audio_cb, update.item.id, update.audio)
        for cb in (*self._listeners.get(kind, ()), *self._listeners.get("*", ())):
            self._safely(cb, event)
        for entry in list(self._waiters):
            predicate, future = entry
            if not future.done():
                try:
                    matched = predicate(event)
                except Exception:
                    matched = False
                if not matched:
                    continue
                future.set_result(event)
            # answered (or given up on): an expectation nobody waits for must not linger
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an async session listener raised; the session goes on",
                      exc_info=task.exception())

    def _safely(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            result = callback(*args)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._background.add(task)
                task.add_done_callback(self._listener_done)
        except (Exception, KeyboardInterrupt, SystemExit):
            log.exception("a session listener raised; the session goes on")


def _later(timeout: float | None) -> float | None:
    """How long a caller waits for a call whose own timeout is ``timeout``."""
    return None if timeout is None else timeout + _GRACE


class Expectation:
    """An event a :class:`RealtimeSession` is already listening for (see
    :meth:`RealtimeSession.expect`)."""

    def __init__(
        self, session: RealtimeSession, waiter: Coroutine[Any, Any, dict[str, Any]],
        timeout: float | None = None,
    ) -> None:
        self._session = session
        self._timeout = timeout
        self._waiter: Coroutine[Any, Any, dict[str, Any]] | None = waiter

    def wait(self) -> dict[str, Any]:
        """Block until the event arrives (or the timeout given to ``expect`` passes)."""
        if self._waiter is None:
            raise RuntimeError("this expectation was already waited for")
        waiter, self._waiter = self._waiter, None
        return self._session._run(waiter, self._timeout)


class RealtimeSession:
    """A Realtime session with a blocking API, safe to call from any thread.

    It owns an event loop on a daemon thread, so streaming goes on while notebook cells run.
    Use it as a context manager or call :meth:`close`; either leaves no thread or socket behind.

    >>> with RealtimeSession(instructions="Be brief.") as s:   # doctest: +SKIP
    ...     s.ask("What is the capital of France?")
    """

    def __init__(
        self,
        provider: str | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        endpoint: Endpoint | None = None,
        connect: bool = True,
        reconnect: Reconnect = Reconnect(),
        restore_history: bool = True,
        open_timeout: float = 10.0,
        record: str | Path | bool | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        conversation: Conversation | None = None,
        **config: Any,
    ) -> None:
        if endpoint is None:
            endpoint = resolve(provider, url=url, api_key=api_key, headers=headers,
                               model=config.get("model"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name="rtwidget-session-loop", daemon=True
        )
        self._audio_out: deque[dict[str, Any]] = deque()
        self._voices: dict[str, pd.DataFrame] = {}
        self._audio_wake = False
        self.aio = AsyncRealtimeSession(
            endpoint,
            reconnect=reconnect,
            restore_history=restore_history,
            open_timeout=open_timeout,
            record=record,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_message_bytes=max_message_bytes,
            conversation=conversation,
            **config,
        )  # before the thread starts: a configuration it refuses leaves nothing running
        self._thread.start()
        if connect:
            try:
                self.connect()
            except BaseException:
                self._stop_loop()
                raise

    # --- plumbing ----------------------------------------------------------------------------

    def _serve(self) -> None:
        """The loop thread: a ``KeyboardInterrupt`` or ``SystemExit`` raised on the loop (by a
        callback) is logged and the loop goes on; only :meth:`_stop_loop` ends it."""
        while True:
            try:
                self._loop.run_forever()
                return
            except (KeyboardInterrupt, SystemExit):
                log.error("the session's loop caught an interrupt; it goes on", exc_info=True)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it here, at most ``timeout`` seconds (kept
        by this thread, so it holds even if the loop is stuck); a loop that stopped raises
        :class:`ConnectionClosed` at once."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "this blocking call was made on the session's own thread (from a listener); "
                "use session.aio and await it instead"
            )
        if not self._thread.is_alive():
            coro.close()
            raise ConnectionClosed("the session is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                done, _ = concurrent.futures.wait([future], timeout=max(0.0, step))
                if done:
                    return future.result()
                if not self._thread.is_alive():
                    raise ConnectionClosed("the session's event loop has stopped")
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no answer within {timeout:g} s (the session's loop "
                                       "is busy)")
        except BaseException:
            future.cancel()
            raise

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.aio.closed or not self._thread.is_alive():
            raise ConnectionClosed("the session is closed")
        self._loop.call_soon_threadsafe(self._guard, fn, *args)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("dropped a client event that could not be queued")

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    # --- public API --------------------------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        """The conversation state (items, responses, errors, event log)."""
        return self.aio.conversation

    @property
    def endpoint(self) -> Endpoint:
        """Where the session connects (never shows the key)."""
        return self.aio.endpoint

    @property
    def connected(self) -> bool:
        """Whether the connection is open right now."""
        return self.aio.connected

    @property
    def errors(self) -> list[ErrorInfo]:
        """Every ``error`` event received, oldest first."""
        return list(self.aio.conversation.errors)

    @property
    def config(self) -> dict[str, Any]:
        """The session configuration as the server last confirmed it (re-applied after each
        reconnect)."""
        return dict(self.aio.config)

    def voices(self, language: str | None = None) -> pd.DataFrame:
        """The voices this session's provider offers (name, display name, language,
        description, tags); fetched once per session and language, then cached."""
        from .voices import list_voices

        key = language or ""
        if key not in self._voices:
            self._voices[key] = list_voices(self.endpoint, language)
        return self._voices[key].copy()

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as a DataFrame, one row per item (columns: ``rtwidget.COLUMNS``;
        built when asked for, cached until the next change)."""
        return self.aio.frames.get()

    @property
    def events(self) -> pd.DataFrame:
        """The raw event log as a DataFrame: direction, type, time, size, payload."""
        return events_frame(self.conversation)

    def live(self, rows: int = 20, max_rate: float = 4.0) -> LiveView:
        """Show the DataFrame's last ``rows`` rows and redraw them in place as the talk goes on,
        at most ``max_rate`` times a second. ``.stop()`` on the result freezes it."""
        return LiveView(self.aio.frames, lambda cb: self.on("*", cb), rows, max_rate)

    def export(self, path: str | Path) -> Path:
        """Write the conversation DataFrame to ``.parquet``, ``.json`` or ``.jsonl``; read it
        back with :func:`rtwidget.load_conversation`."""
        return export(self.df, path)

    @property
    def tools(self) -> ToolSet:
        """The tools this session offers (change them with ``update(tools=...)``)."""
        return self.aio.toolset

    @property
    def tool_results(self) -> dict[str, ToolResult]:
        """Finished tool calls by ``call_id``: output, error, duration."""
        return self.aio.tool_results

    def connect(self) -> None:
        """Connect (done by the constructor unless ``connect=False``)."""
        self._run(self.aio.connect())

    def connect_in_background(self) -> concurrent.futures.Future[None]:
        """Start connecting and return at once; the future holds the outcome. Events sent
        meanwhile wait for the connection (audio appends are dropped until it is up)."""
        return asyncio.run_coroutine_threadsafe(self.aio.connect(), self._loop)

    def close(self) -> None:
        """Close the connection and stop the session's thread."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self.aio.close(), timeout=10)
        elif not self._loop.is_running():  # the loop's thread is gone: clean up from here
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.wait_for(self.aio.close(), 10))
        self._stop_loop()

    def __enter__(self) -> RealtimeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("closed" if self.aio.closed else "connecting")
        return f"<RealtimeSession {self.endpoint.describe()} {state}>"

    def on(self, event_type: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` (on the session's thread) for each event of this type, or
        ``"*"`` for every event. Returns a function that unsubscribes."""
        return self.aio.on(event_type, callback)

    def on_audio(self, callback: AudioListener) -> Callable[[], None]:
        """Call ``callback(item_id, pcm16_bytes)`` for every assistant audio delta."""
        return self.aio.on_audio(callback)

    def wait_for(self, match: str | Predicate, timeout: float = 30.0) -> dict[str, Any]:
        """Block until a server event of this type (or matching the predicate) arrives.

        Only events arriving after the call count; to wait for the answer to something you
        send, use the blocking methods below, which subscribe before sending.
        """
        return self._run(self.aio.wait_for(match, timeout), _later(timeout))

    def expect(self, match: str | Predicate, timeout: float = 30.0) -> Expectation:
        """Subscribe now to the next event of this type (or matching the predicate); call
        ``.wait()`` on the result after sending whatever should cause it.

        >>> done = session.expect("response.done")          # doctest: +SKIP
        >>> session.say("Hi!")
        >>> done.wait()["response"]["status"]
        'completed'
        """

        async def subscribe() -> Coroutine[Any, Any, dict[str, Any]]:
            return self.aio.expect(match, timeout)

        return Expectation(self, self._run(subscribe()), _later(timeout))

    def update(self, **config: Any) -> dict[str, Any]:
        """Partially update the session (model, instructions, voice, tools...) and return the
        session as the server now has it."""
        return self._run(self.aio.update(**config), _later(30.0))

    def say(self, text: str, *, respond: bool = True) -> str:
        """Add a user text turn and ask for a reply; returns the item id at once."""
        return self._run(self.aio.send_text(text, respond=respond))

    send_text = say

    def ask(self, text: str, timeout: float = 60.0) -> str:
        """Send a text turn and block until the reply is complete; returns its text."""
        return self._run(self.aio.ask(text, timeout), _later(timeout))

    def send_audio(self, audio: Any) -> None:
        """Stream microphone audio (PCM16 24 kHz mono bytes or a numpy array); never blocks.
        Audio at another rate: convert it whole first (``rtwidget.protocol.audio.resample``).

        The event is built here (validation and base64 off the session's loop); frames that
        arrive while the loop is busy cross over together, with one wake-up."""
        self._audio_out.append(events.input_audio_append(audio))
        if not self._audio_wake:
            self._audio_wake = True
            self._soon(self._drain_audio)

    def _drain_audio(self) -> None:
        self._audio_wake = False
        while self._audio_out:
            self.aio.send_nowait(self._audio_out.popleft())

    def send_audio_item(
        self, audio: Any, *, transcript: str | None = None, respond: bool = True,
        rate: int = SAMPLE_RATE,
    ) -> str:
        """Add a pre-recorded audio message (recorded at ``rate`` Hz) and ask for a reply;
        returns its item id."""
        return self._run(self.aio.send_audio_item(audio, transcript=transcript, respond=respond,
                                                  rate=rate))

    def commit_audio(self) -> None:
        """End the user's audio turn by hand (when server VAD is off)."""
        self._run(self.aio.commit_audio())

    def clear_audio(self) -> None:
        """Drop audio appended but not yet committed."""
        self._run(self.aio.clear_audio())

    def create_response(self, **overrides: Any) -> str:
        """Ask the model to respond now, with optional per-response overrides."""
        return self._run(self.aio.create_response(**overrides))

    def cancel(self, response_id: str | None = None) -> None:
        """Cancel the response in progress."""
        self._run(self.aio.cancel(response_id))

    def retrieve(self, item_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The server's copy of an item."""
        return self._run(self.aio.retrieve(item_id, timeout), _later(timeout))

    def delete(self, item_id: str, timeout: float = 30.0) -> None:
        """Delete an item, on the server and locally."""
        self._run(self.aio.delete(item_id, timeout), _later(timeout))

    def truncate(
        self, item_id: str, audio_end_ms: int, content_index: int = 0, timeout: float = 30.0
    ) -> None:
        """Mark the assistant audio after ``audio_end_ms`` as never heard."""
        self._run(self.aio.truncate(item_id, audio_end_ms, content_index, timeout),
                  _later(timeout))

    def note(self, kind: str, **fields: Any) -> None:
        """Log and record something the client saw (an ``rtwidget.*`` event; see
        :meth:`AsyncRealtimeSession.note`), from any thread; after close it is dropped."""
        if not self.aio.closed:
            self._soon(lambda: self.aio.note(kind, **fields))

    def send(self, event: dict[str, Any]) -> None:
        """Send a raw client event (it gets an ``event_id`` if it has none)."""
        event = dict(event)
        event.setdefault("event_id", events.new_event_id())
        text = self.aio._encoded(event)  # an event that cannot be sent is refused here
        self._soon(self.aio._enqueue, event, text)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``await fn()`` on the session's loop and return its result (for extensions)."""

        async def runner() -> T:
            return await fn()

        return self._run(runner(), timeout)


__all__ = [
    "NOT_GIVEN",
    "NO_RECONNECT",
    "AsyncRealtimeSession",
    "Expectation",
    "RealtimeSession",
    "Reconnect",
]
