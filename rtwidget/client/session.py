"""The public async session: text and audio turns, ``ask()`` and the tools it runs, the
barge-in rule, item operations and the conversation as DataFrames, on top of the events both
ways of :class:`~rtwidget.client.channel.Channel`."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..aio.deadlines import within
from ..data.cost import Cost, summarise
from ..data.frame import FrameCache, LiveView, events_frame, export, segments_frame
from ..protocol import client_events
from ..protocol.acks import MAX_REMEMBERED
from ..protocol.audio import BYTES_PER_MS, SAMPLE_RATE, resample, to_pcm16
from ..protocol.configuration import check_session_for, merge_session, session_config
from ..protocol.conversation import Conversation
from ..protocol.errors import ErrorInfo, ServerError, WaitTimeout
from ..protocol.history import continues, reply_text
from ..protocol.image_parts import image_message, image_part
from ..protocol.items import Response
from ..protocol.transcription import check_transcription_for
from ..tooling.mcp_approvals import McpApprovals
from ..tooling.registry import ToolSet
from ..tooling.runner import ToolResult
from .channel import Channel
from .image_prep import PreparedImage, check_images_for, prepare_image
from .options import SessionOptions
from .providers import Endpoint
from .session_tools import SessionTools


class AsyncRealtimeSession(Channel):
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
        check_session_for(self.endpoint.provider, self.config)
        if self.config:
            self._encoded(client_events.session_update(self.config))
        self._follow_ups: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._tools = SessionTools(self, options)
        check_session_for(self.endpoint.provider, {"tools": self._tools.toolset.raw})
        self.mcp_approvals = McpApprovals(self, options.approve)
        self._voices: dict[str, pd.DataFrame] = {}
        self.frames = FrameCache(self.conversation, lambda: self.endpoint.provider)

    @property
    def options(self) -> SessionOptions:
        """The options this session runs with now: the configuration as the server last
        confirmed it and the tools in use (a new session made with them starts where this one
        is)."""
        return self._options.replace(config=dict(self.config), tools=self.tools)

    async def connect(self) -> None:
        """Open the connection, wait for ``session.created`` and apply the configuration.

        Transient failures are retried under the :class:`~rtwidget.Reconnect` policy; a refused
        key raises :class:`~rtwidget.AuthenticationError` at once.
        """
        if self._task is not None:
            return
        self._tools.start()
        try:
            self._encoded(client_events.session_update(self.config))
        except ValueError:
            self._tools.stop()
            raise
        await self._start()

    def _stopped(self) -> None:
        self._tools.stop()

    def _fail_waiters(self, exc: Exception) -> None:
        super()._fail_waiters(exc)
        for follow_up in self._follow_ups.values():
            if not follow_up.done():
                follow_up.set_exception(exc)
                follow_up.exception()  # nobody may be waiting: not worth a warning

    async def __aenter__(self) -> AsyncRealtimeSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what it holds -----------------------------------------------------------------------

    @property
    def tools(self) -> ToolSet:
        """The tools this session offers (change them with ``update(tools=...)``)."""
        return self._tools.toolset

    @property
    def tool_results(self) -> dict[str, ToolResult]:
        """Finished tool calls by ``call_id``: output, error, duration."""
        return self._tools.results

    @property
    def errors(self) -> list[ErrorInfo]:
        """Every ``error`` event received, oldest first."""
        return list(self.conversation.errors)

    @property
    def recording(self) -> Path | None:
        """The folder this session records to (``record=``; ``True`` picks one under
        ``recordings/``), or ``None``; load it back with :func:`rtwidget.load_recording`."""
        return None if self.recorder is None else self.recorder.folder

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as a DataFrame, one row per item (columns: ``rtwidget.COLUMNS``;
        built when asked for, cached until the next change)."""
        return self.frames.get()

    @property
    def cost(self) -> Cost:
        """What the session has cost so far (``rt.prices`` for its provider and model; the
        local server costs nothing): ``float(session.cost)`` in US dollars, with the
        per-response and per-turn tables."""
        return summarise(self.frames.get())

    @property
    def events(self) -> pd.DataFrame:
        """The raw event log as a DataFrame: direction, type, time, size, payload."""
        return events_frame(self.conversation)

    @property
    def segments(self) -> pd.DataFrame:
        """The diarised transcript, one row per segment: who spoke, when, what they said."""
        return segments_frame(self.conversation)

    def live(self, rows: int = 20, max_rate: float = 4.0,
             columns: Sequence[str] | str | None = None) -> LiveView:
        """Show the DataFrame's last ``rows`` rows and redraw them in place as the talk goes on,
        at most ``max_rate`` times a second: who, what was said, tool and latency by default
        (``columns="all"`` for every column, or a list). ``.stop()`` on the result freezes it."""
        return LiveView(self.frames, lambda cb: self.on("*", cb), rows, max_rate,
                        columns=columns)

    def export(self, path: str | Path) -> Path:
        """Write the conversation DataFrame to ``.parquet``, ``.json`` or ``.jsonl``; read it
        back with :func:`rtwidget.load_conversation`."""
        return export(self.df, path)

    async def voices(self, language: str | None = None) -> pd.DataFrame:
        """The voices this session's provider offers (name, display name, language,
        description, tags); fetched once per session and language (off the loop), then
        cached."""
        from .voices import list_voices

        key = language or ""
        if key not in self._voices:
            self._voices[key] = await asyncio.to_thread(list_voices, self.endpoint, language)
        return self._voices[key].copy()

    # --- turns -------------------------------------------------------------------------------

    async def update(self, **config: Any) -> dict[str, Any]:
        """Change the session (partial update) and return the server's session object.

        The change is kept (and sent again after a reconnect) only once the server confirms
        it with ``session.updated``; a rejected update raises :class:`ServerError` and leaves
        the configuration (tools included) as it was."""
        return await self.update_soon(**config)

    def update_soon(self, **config: Any) -> asyncio.Future[dict[str, Any]]:
        """:meth:`update`, sent at once (in order with what is sent after it); returns a
        future of the server's session object. Call it on the session's loop."""
        previous_tools = self.tools

        def restore_tools() -> None:
            if self.tools is not previous_tools:
                self._tools.use(previous_tools)

        try:
            if "tools" in config:
                self._tools.use(ToolSet(config.pop("tools")))
                config["tools"] = self.tools.definitions()
            patch = session_config(**config)
            check_session_for(self.endpoint.provider, patch)
            check_transcription_for(self.endpoint.provider, merge_session(self.config, patch))
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
            self.config = merge_session(self.config, patch)
            session = result.get("session")
            return session if isinstance(session, dict) else {}

        return asyncio.ensure_future(confirmed())

    async def say(
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
        if respond and interrupt:
            self._tools.interrupted()  # the user moved on: the calls they waited for stop
        self.turns.submit(turn, interrupt=respond and interrupt)
        return item_id

    send_text = say

    def submit_turn(self, events: list[dict[str, Any]], interrupt: bool = False) -> None:
        """Send ``events`` as one turn through the conversation's floor (see
        :meth:`say`): a ``response.create`` among them waits for the reply in progress, or
        with ``interrupt`` cuts it."""
        self.turns.submit(events, interrupt=interrupt)

    async def cancel_tool(self, call_id: str) -> bool:
        """Cancel a running tool call (an async tool is cancelled, a plain function sees its
        ``CallContext.cancelled``); the model is told it was cancelled instead of its result.
        Returns whether it was running."""
        return self._tools.cancel(call_id)

    @property
    def running_tools(self) -> list[str]:
        """The call ids of the tool calls running now."""
        return self._tools.running()

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

    async def send_image(
        self, image: Any, text: str | None = None, *, detail: str | None = None,
        respond: bool = True, interrupt: bool = False, format: str | None = None,
    ) -> str:
        """Add a user message holding an image (a matplotlib figure, a PIL image, a numpy
        array, a path or bytes; see :func:`~rtwidget.client.image_prep.prepare_image`) and
        ``text`` after it, and ask for a response (``respond=False``: only add it). A reply in
        progress ends first, unless ``interrupt``. Returns the item id. A provider that takes no
        images raises :class:`~rtwidget.ConfigError` before anything is sent; an image that
        cannot be sent (not an image, too large) raises :class:`~rtwidget.InvalidInput`."""
        check_images_for(self.endpoint.provider, self.endpoint.dialect)
        if not isinstance(image, PreparedImage):
            image = await asyncio.to_thread(prepare_image, image, format=format)
        return self._send_prepared(image, text, detail=detail, respond=respond,
                                   interrupt=interrupt)

    def _send_prepared(self, image: PreparedImage, text: str | None = None, *,
                       detail: str | None = None, respond: bool = True,
                       interrupt: bool = False) -> str:
        """:meth:`send_image` of an image already prepared; call it on the session's loop."""
        check_images_for(self.endpoint.provider, self.endpoint.dialect)
        item_id = client_events.new_item_id()
        part = image_part(image.data, image.info.mime, detail)
        item = client_events.item_create(image_message(part, text, item_id))
        self.turns.submit([item, client_events.response_create()] if respond else [item],
                          interrupt=respond and interrupt)
        if image.thumbnail:
            self.note("rtwidget.image_thumbnail", item_id=item_id, thumbnail=image.thumbnail)
        return item_id

    def send_audio(self, audio: Any) -> None:
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
            message = client_events.text_message(text, "user", client_events.new_item_id())
            item = client_events.item_create(message)
            create = client_events.response_create()
            created = self._created(create)
            try:
                turn = self.turns.submit([item, create])
            except BaseException:
                created.close()
                raise
            try:
                response_id = await within(created, left())
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
                next_create = await within(asyncio.shield(follow_up), left())
                response_id = await within(self._created(next_create), left())
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
        return self._tools.handles(name)

    # --- responses and items -----------------------------------------------------------------

    def reply_text(self, response: Response) -> str:
        """The text (or audio transcript) of a response's messages."""
        return reply_text(self.conversation, response)

    async def create_response(self, **overrides: Any) -> str:
        """Ask for a response, with optional per-response overrides; returns the event id."""
        event = client_events.response_create(**overrides)
        check_session_for(self.endpoint.provider, event.get("response") or {})
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

    # --- what the user heard -----------------------------------------------------------------

    async def playback_stopped(self, item_id: str, audio_end_ms: float, *,
                               cancel: bool = True) -> bool:
        """The player stopped playing ``item_id`` after ``audio_end_ms`` of its audio (a
        barge-in, a stop button, a typed turn): the reply is cancelled, once (``cancel=False``
        when whoever stopped it has cancelled it already, as a typed turn does), and the item
        is cut where it stopped (``conversation.item.truncate``, clamped to the audio
        received), unless it got all its audio and was played to the end, or its audio came
        over a connection since lost (the server has it as text only). Returns whether it was
        cut; an item this session does not know changes nothing."""
        item = self.conversation.get(item_id)
        if item is None:
            return False
        received_ms = item.audio_out_bytes // BYTES_PER_MS
        end_ms = int(max(0, min(audio_end_ms, received_ms)))
        if cancel:
            self.turns.interrupt(announce=False)
        if item_id in self.items_before_connect:
            return False
        if end_ms < received_ms or item.status == "in_progress":
            self.send_nowait(client_events.item_truncate(item_id, end_ms))
            return True
        return False
