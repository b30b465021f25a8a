"""The public async session: requests and their answers, text and audio turns, ``ask()``
and the tools it runs, on top of :class:`~rtwidget.client.connection.Connection`."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from ..data.frame import FrameCache
from ..protocol import client_events, configuration
from ..protocol.acks import MAX_REMEMBERED
from ..protocol.audio import SAMPLE_RATE, resample, to_pcm16
from ..protocol.conversation import Conversation
from ..protocol.errors import ConnectionClosed, ServerError, WaitTimeout
from ..protocol.floor import claims_floor
from ..protocol.history import continues, reply_text
from ..protocol.items import Response
from ..protocol.requests import PendingRequests
from ..tooling.registry import ToolSet
from ..tooling.runner import ToolResult, ToolRunner
from .connection import Connection, log
from .event_hub import AudioListener, Listener, Predicate, UpdateListener, Waiter, predicate
from .options import SessionOptions
from .providers import Endpoint
from .turn_taking import TurnTaking


class AsyncRealtimeSession(Connection):
    """A Realtime session on the caller's event loop.

    ``settings`` are :class:`~rtwidget.SessionOptions` fields (``tools``, ``run_tools``,
    ``record``, ``reconnect``, ``restore_history``, ``ping_interval``...) and keywords of
    :func:`rtwidget.protocol.session_config` (``model``, ``instructions``, ``voice``,
    ``tts_model``, ``turn_detection``, ``tool_choice``...), on top of ``options`` if given.
    The configuration is sent after ``session.created`` and sent again after every reconnect,
    together with the conversation so far, so the server picks up where it left off.

    ``conversation`` is the state to fill; a long-running session can bound its memory with
    ``Conversation(keep_audio=False, max_log=5000)`` (no reply audio kept, a shorter log).
    Load a session recorded with ``record=`` back with :func:`rtwidget.load_recording`.
    """

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        options: SessionOptions | None = None,
        conversation: Conversation | None = None,
        **settings: Any,
    ) -> None:
        options = SessionOptions.of(options, **settings)
        super().__init__(endpoint, options, conversation)
        configuration.check_session_for(self.endpoint.provider, self.config)
        if self.config:
            self._encoded(client_events.session_update(self.config))
        self.requests = PendingRequests(self.conversation)
        self._follow_ups: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        tools = options.tools
        self.toolset = tools if isinstance(tools, ToolSet) else ToolSet(tools)
        self._runner: ToolRunner | None = None
        self._registry_off: Callable[[], None] | None = None
        self.frames = FrameCache(self.conversation)
        self.turns = TurnTaking(self)

    @property
    def options(self) -> SessionOptions:
        """The options this session runs with now: the configuration as the server last
        confirmed it and the tools in use (a new session made with them starts where this one
        is)."""
        return self._options.replace(config=dict(self.config), tools=self.toolset)

    async def connect(self) -> None:
        """Open the connection, wait for ``session.created`` and apply the configuration.

        Transient failures are retried under the :class:`~rtwidget.Reconnect` policy; a refused
        key raises :class:`~rtwidget.AuthenticationError` at once.
        """
        if self._task is not None:
            return
        self._start_tools()
        try:
            self._encoded(client_events.session_update(self.config))
        except ValueError:
            self._stop_tools()
            raise
        await self._start()

    def _stopped(self) -> None:
        self._stop_tools()

    def _fail_waiters(self, exc: Exception) -> None:
        super()._fail_waiters(exc)
        for follow_up in self._follow_ups.values():
            if not follow_up.done():
                follow_up.set_exception(exc)
                follow_up.exception()  # nobody may be waiting: not worth a warning

    # --- tools -------------------------------------------------------------------------------

    def _start_tools(self) -> None:
        defs = self.toolset.definitions()
        if defs or "tools" in self.config:
            self.config["tools"] = defs
        if self._options.run_tools and self._runner is None:
            self._runner = ToolRunner(self, self.toolset, self._options.max_tool_rounds)
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
        self.hub.spawn(self._send_tools(defs))

    async def _send_tools(self, defs: list[dict[str, Any]]) -> None:
        """Send a changed tool list as a tracked request (so its ``session.updated`` is not
        taken for another update's answer), and keep it once confirmed."""
        update = client_events.session_update({"type": "realtime", "tools": defs})
        try:
            await self.request(update, self.requests.updated_for(update["event_id"]))
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

    async def update(self, **config: Any) -> dict[str, Any]:
        """Change the session (partial update) and return the server's session object.

        The change is kept (and sent again after a reconnect) only once the server confirms
        it with ``session.updated``; a rejected update raises :class:`ServerError` and leaves
        the configuration (tools included) as it was."""
        return await self.update_nowait(**config)

    def update_nowait(self, **config: Any) -> asyncio.Future[dict[str, Any]]:
        """:meth:`update`, sent at once (in order with what is sent after it); returns a
        future of the server's session object. Call it on the session's loop."""
        previous_tools = self.toolset

        def restore_tools() -> None:
            if self.toolset is not previous_tools:
                self._use_tools(previous_tools)

        try:
            if "tools" in config:
                self._use_tools(ToolSet(config.pop("tools")))
                config["tools"] = self.toolset.definitions()
            patch = configuration.session_config(**config)
            configuration.check_session_for(self.endpoint.provider, patch)
            update = client_events.session_update(patch)
            answer = self._request_nowait(update, self.requests.updated_for(update["event_id"]))
        except BaseException:
            restore_tools()
            raise

        async def confirmed() -> dict[str, Any]:
            try:
                result = await answer
            except BaseException:
                restore_tools()
                raise
            # kept only once confirmed: a rejected update must not come back after a reconnect
            self.config = configuration.merge_session(self.config, patch)
            session = result.get("session")
            return session if isinstance(session, dict) else {}

        return asyncio.ensure_future(confirmed())

    async def send_text(
        self, text: str, *, respond: bool = True, role: str = "user", interrupt: bool = True
    ) -> str:
        """Add a text message (and ask for a response); returns the new item's id at once.

        A typed turn during a reply interrupts it, as a barge-in does: the reply is cancelled
        (the widget stops playing it and the reply is cut where it was heard), and the message
        and its ``response.create`` go out once the server has ended the reply.
        ``interrupt=False`` lets the reply finish first instead (the rule of :meth:`ask`).
        Turns go out in the order they were given."""
        item_id = client_events.new_item_id()
        item = client_events.item_create(client_events.text_message(text, role, item_id))  # type: ignore[arg-type]
        turn = [item, client_events.response_create()] if respond else [item]
        self.turns.submit(turn, interrupt=respond and interrupt)
        return item_id

    async def send_audio_item(
        self, audio: Any, *, transcript: str | None = None, respond: bool = True,
        rate: int = SAMPLE_RATE,
    ) -> str:
        """Add a pre-recorded user audio message (PCM16 mono, or float; ``rate`` Hz, converted
        to the protocol's 24 kHz); returns the item id."""
        if rate != SAMPLE_RATE:
            audio = resample(to_pcm16(audio), rate)
        item_id = client_events.new_item_id()
        item = client_events.item_create(client_events.audio_message(audio, transcript, item_id))
        self.turns.submit([item, client_events.response_create()] if respond else [item])
        return item_id

    def append_audio(self, audio: Any) -> None:
        """Stream microphone audio (PCM16 24 kHz mono) into the input buffer."""
        self.send_nowait(client_events.input_audio_append(to_pcm16(audio)))

    async def ask(self, text: str, timeout: float = 60.0) -> str:
        """Send a text turn and return the reply's text once the model has finished, tool
        calls included. Only the response this turn created counts (and the ones the session
        creates after running its tools), not another that ends meanwhile.

        A reply already in progress (to a spoken turn, a ``say()``) is not interrupted: the
        turn waits for it to end, then adds its message and asks for its own reply; the wait
        counts toward ``timeout`` (a turn still waiting when it runs out is not sent). A reply
        that fails (an engine that cannot run, a dropped connection) raises
        :class:`~rtwidget.ServerError` saying why; one cut short returns what was said."""
        deadline = asyncio.get_running_loop().time() + timeout

        def left() -> float:
            return max(0.0, deadline - asyncio.get_running_loop().time())

        if self._fatal is not None:
            raise self._fatal
        try:
            item = client_events.item_create(
                client_events.text_message(text, "user", client_events.new_item_id()))
            create = client_events.response_create()
            created = self._created(create)
            try:
                turn = self.turns.submit([item, create])
            except BaseException:
                created.close()
                raise
            try:
                response_id = await asyncio.wait_for(created, left())
            except asyncio.TimeoutError:
                self.turns.withdraw(turn)
                raise
            while True:
                await self._finished(response_id, left())
                response = self.conversation.responses.get(response_id)
                if response is not None and (failure := response.failure()) is not None:
                    raise ServerError(failure)
                if response is None or not continues(self.conversation, response, self._handles):
                    return reply_text(self.conversation, response) if response is not None else ""
                follow_up = self._follow_up(response_id)
                next_create = await asyncio.wait_for(asyncio.shield(follow_up), left())
                response_id = await asyncio.wait_for(self._created(next_create), left())
        except asyncio.TimeoutError:
            raise WaitTimeout(f"no complete reply within {timeout:g} s") from None

    def _created(self, create: dict[str, Any]) -> Coroutine[Any, Any, str]:
        """Awaits the id of the response the server created for the ``response.create`` event
        ``create`` (an ``error`` naming the event raises :class:`ServerError`). Subscribes at
        once, so call it before sending."""
        event_id = create["event_id"]

        def answer(ev: dict[str, Any]) -> bool:
            if ev.get("type") == "error":
                err = ev.get("error")
                return isinstance(err, dict) and err.get("event_id") == event_id
            return ev.get("type") == "response.created" and event_id in self.acks.created_for

        entry = self._subscribe(answer)

        async def wait() -> str:
            if event_id in self.acks.created_for:
                self.hub.unsubscribe(entry)
            else:
                self._raise_error(await self.hub.wait(entry, None), create)
            return self.acks.created_for[event_id]

        return wait()

    async def _finished(self, response_id: str, timeout: float) -> None:
        """Return once the response is done (at once if it already is)."""
        entry = self._subscribe(lambda ev: ev.get("type") == "response.done"
                                and isinstance(ev.get("response"), dict)
                                and ev["response"].get("id") == response_id)
        response = self.conversation.responses.get(response_id)
        if response is not None and response.status != "in_progress":
            self.hub.unsubscribe(entry)
            return
        await self.hub.wait(entry, timeout)

    def _follow_up(self, response_id: str) -> asyncio.Future[dict[str, Any]]:
        """Resolves to the ``response.create`` the tool runner sends after answering the
        calls of ``response_id``."""
        future = self._follow_ups.get(response_id)
        if future is None:
            future = self._follow_ups[response_id] = asyncio.get_running_loop().create_future()
            while len(self._follow_ups) > MAX_REMEMBERED:
                self._follow_ups.popitem(last=False)[1].cancel()
        return future

    def followed_up(self, response_id: str, create: dict[str, Any]) -> None:
        """Tell ``ask()`` that ``create`` continues ``response_id`` (tools answered)."""
        future = self._follow_up(response_id)
        if not future.done():
            future.set_result(create)

    def _handles(self, name: str | None) -> bool:
        """Whether the session answers calls to this tool itself."""
        return self._runner is not None and self._runner.handles(name)

    def reply_text(self, response: Response) -> str:
        """The text (or audio transcript) of a response's messages."""
        return reply_text(self.conversation, response)

    async def create_response(self, **overrides: Any) -> str:
        """Ask for a response, with optional per-response overrides; returns the event id."""
        event = client_events.response_create(**overrides)
        configuration.check_session_for(self.endpoint.provider, event.get("response") or {})
        self.send_nowait(event)
        return str(event["event_id"])

    async def cancel(self, response_id: str | None = None) -> None:
        """Cancel the response in progress (or the one named)."""
        self.send_nowait(client_events.response_cancel(response_id))

    async def commit_audio(self) -> None:
        """End the user's audio turn by hand (when server VAD is off)."""
        self.send_nowait(client_events.input_audio_commit())

    async def clear_audio(self) -> None:
        """Drop audio appended but not yet committed."""
        self.send_nowait(client_events.input_audio_clear())

    async def retrieve(self, item_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The server's copy of an item."""
        answer = await self.request(
            client_events.item_retrieve(item_id),
            lambda ev: ev.get("type") == "conversation.item.retrieved"
            and isinstance(ev.get("item"), dict)
            and ev["item"].get("id") == item_id,
            timeout,
        )
        return dict(answer["item"])

    async def delete(self, item_id: str, timeout: float = 30.0) -> None:
        """Delete an item on the server (and so in the local conversation)."""
        await self.request(
            client_events.item_delete(item_id),
            lambda ev: ev.get("type") == "conversation.item.deleted"
            and ev.get("item_id") == item_id,
            timeout,
        )

    async def truncate(
        self, item_id: str, audio_end_ms: int, content_index: int = 0, timeout: float = 30.0
    ) -> None:
        """Tell the server the assistant's audio after ``audio_end_ms`` was never heard."""
        await self.request(
            client_events.item_truncate(item_id, audio_end_ms, content_index),
            lambda ev: ev.get("type") == "conversation.item.truncated"
            and ev.get("item_id") == item_id,
            timeout,
        )

