"""Responses of the local server: ``response.create`` and ``response.cancel``, and the life of
each response, from ``response.created`` through the reply engine's words (written out by
:mod:`.output`) to ``response.done`` with its status and usage.

At most one response at a time belongs to the conversation (its output becomes conversation
items); out-of-band responses (``conversation: "none"``) run beside it, a few at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..protocol.configuration import merge_session
from .early_reply import EarlyReply, context_key
from .engines import DropConnection, HistoryTurn, ReplyContext, TextDelta, ToolCall, count_tokens
from .faults import EngineFailed, fault, internal_error
from .item_store import ItemStore, ServerItem
from .mcp_relay import McpRelay
from .output import OutputWriter, ServerResponse, TokenLimit
from .server_session import ServerSession, new_id
from .validation import MAX_INPUT_ITEMS, Problem, check_item, check_response_fields

log = logging.getLogger("rtwidget.server")

_SESSION_KEYS = ("instructions", "output_modalities", "max_output_tokens", "tools",
                 "tool_choice", "temperature", "model")


def _without_nulls(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` less those that are ``None``: the GA events leave such fields out."""
    return {k: v for k, v in fields.items() if v is not None}


class Responses:
    """The responses of one connection. ``on_start`` runs when a response of the conversation
    starts; ``on_end`` when it ends, with how many ms of audio it produced."""

    def __init__(self, session: ServerSession, items: ItemStore, on_start: Callable[[], None],
                 on_end: Callable[[int], None]) -> None:
        self._session = session
        self._emit = session.emit
        self._items = items
        self._output = OutputWriter(session, items)
        self.relay = McpRelay(session, items, self._output)
        self._on_start = on_start
        self._on_end = on_end
        self.active: ServerResponse | None = None  # the conversation's response in progress
        self.out_of_band: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()  # read-aheads, early replies' cancels
        self._early: EarlyReply | None = None  # a reply to the turn being spoken, begun early
        self.done = 0

    async def close(self) -> None:
        """Stop every response in progress (the client is gone)."""
        tasks = list(self.out_of_band)
        if self.active is not None and self.active.task is not None:
            tasks.append(self.active.task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)
        await self.cancel_early()

    # --- client events -----------------------------------------------------------------------

    async def create(self, event: dict[str, Any]) -> Problem | None:
        """``response.create``."""
        overrides = dict(event.get("response") or {})
        problem = check_response_fields(overrides, "response.")
        if problem is not None:
            return problem
        if overrides.get("conversation", "auto") not in ("auto", "none"):
            return Problem("invalid_value", "conversation must be 'auto' or 'none'.",
                           "response.conversation")
        input_turns: list[HistoryTurn] | None = None
        if "input" in overrides:
            turns = self._input_turns(overrides["input"])
            if isinstance(turns, Problem):
                return turns
            input_turns = turns
        if self.active is not None and overrides.get("conversation", "auto") == "auto":
            return Problem("conversation_already_has_active_response", "Conversation already "
                           f"has an active response in progress: {self.active.id}. Wait "
                           "until the response is finished before creating a new one.")
        limit = self._session.options.max_out_of_band
        if overrides.get("conversation") == "none" and len(self.out_of_band) >= limit:
            return Problem("too_many_active_responses", f"{limit} out-of-band responses are "
                           "already in progress; wait for one to finish.")
        event_id = event.get("event_id")
        self.start(overrides, input_turns, event_id if isinstance(event_id, str) else None)
        return None

    def _input_turns(self, entries: Any) -> list[HistoryTurn] | Problem:
        """``response.input``: items, or references to the conversation's, as turns."""
        if not isinstance(entries, list):
            return Problem("invalid_type", "response.input must be a list of items.",
                           "response.input")
        if len(entries) > MAX_INPUT_ITEMS:
            return Problem("invalid_value", f"response.input holds at most "
                           f"{MAX_INPUT_ITEMS} items.", "response.input")
        turns = []
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("type") == "item_reference":
                found = self._items.get(str(entry.get("id")))
                if found is None:
                    return Problem("invalid_value", f"Unknown item '{entry.get('id')}'.",
                                   f"response.input[{i}].id")
                turns.append(found.turn())
                continue
            if not isinstance(entry, dict) or (p := check_item(entry)):
                return p or Problem("invalid_type", "Items must be objects.",
                                    f"response.input[{i}]")
            turns.append(ServerItem({**entry, "id": "input"}).turn())
        return turns

    async def cancel(self, event: dict[str, Any]) -> Problem | None:
        """``response.cancel``."""
        response = self.active
        wanted = event.get("response_id")
        if response is None or (wanted and wanted != response.id):
            return Problem("response_cancel_not_active", "Cancellation failed: no active "
                           "response found" + (f" with id '{wanted}'." if wanted else "."))
        await self.stop(response, "client_cancelled")
        return None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, overrides: dict[str, Any], input_turns: list[HistoryTurn] | None,
              event_id: str | None = None) -> None:
        """Start streaming a response with these ``response.create`` overrides (``event_id``:
        of the ``response.create``, echoed by an ``error`` if an engine fails)."""
        settings = self._session.settings
        config = {k: settings.get(k) for k in _SESSION_KEYS}
        config.update({k: v for k, v in overrides.items() if k != "audio"})
        out_audio = merge_session(settings["audio"]["output"],
                                  (overrides.get("audio") or {}).get("output") or {})
        config["voice"] = out_audio.get("voice")
        config["speed"] = float(out_audio.get("speed") or 1.0)
        in_conversation = overrides.get("conversation", "auto") == "auto"
        conversation_id = "conv_" + str(settings.get("id", "sess_local"))[5:] \
            if in_conversation else None
        response = ServerResponse(new_id("resp"), config, in_conversation, input_turns,
                                  event_id=event_id, conversation_id=conversation_id)
        if in_conversation:
            self.active = response
            self._on_start()
        response.task = asyncio.create_task(self._stream(response), name=response.id)
        if not in_conversation:
            self.out_of_band.add(response.task)
            response.task.add_done_callback(self.out_of_band.discard)

    async def stop(self, response: ServerResponse, reason: str) -> None:
        """Cancel a response in progress; it ends with ``response.done`` (status
        ``cancelled``) even if its streaming never began."""
        response.status_details = {"type": "cancelled", "reason": reason}
        if response.task is not None and not response.task.done():
            response.task.cancel()
            await asyncio.gather(response.task, return_exceptions=True)
        if self.active is response:  # cancelled before its task ever ran: end it here
            self.active = None
            response.status = "cancelled"
            self.done += 1
            await self._emit({"type": "response.created", "response": response.public()})
            await self._emit({"type": "response.done", "response": response.public()})

    def _context(self, response: ServerResponse) -> ReplyContext:
        history = response.input_turns
        if history is None:
            history = [item.turn() for item in self._items.items]
        for turn in history:
            tokens = count_tokens(turn.text or turn.arguments or turn.output or "")
            audio = int(turn.audio_ms / 100)
            response.input_tokens += tokens + audio
            response.input_audio_tokens += audio
        return self._reply_context(response.config, history)

    def start_early(self, words: str) -> bool:
        """Start the reply to the user's turn from ``words``, the turn as heard so far (see
        :mod:`.early_reply`), if the reply engine can be started early and no response is in
        progress; ``False`` if it was not started."""
        config = self._session_config()
        engine = self._engine(config)
        if self.active is not None or not getattr(engine, "starts_early", False):
            return False
        history = [item.turn() for item in self._items.items]
        history.append(HistoryTurn(role="user", type="message", text=words))
        context = self._reply_context(config, history)
        if self._early is not None:
            if self._early.key == context_key(context) and not self._early.taken:
                return True
            self._forget_early()
        self._early = EarlyReply(engine, context)
        return True

    async def cancel_early(self) -> None:
        """Drop the reply begun early, if any (the user went on speaking)."""
        early, self._early = self._early, None
        if early is not None:
            await early.cancel()

    def _forget_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            task = asyncio.create_task(early.cancel(), name="cancel early reply")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _taken_early(self, response: ServerResponse, engine: Any,
                     context: ReplyContext) -> EarlyReply | None:
        """The reply begun early, if it answers this context (else it is dropped): only a
        response of the conversation, on its own history, takes it."""
        early = self._early
        if early is None or not response.in_conversation or response.input_turns is not None:
            return None
        if early.engine is engine and not early.taken and early.key == context_key(context):
            self._early = None
            engine.early_replies_used = getattr(engine, "early_replies_used", 0) + 1
            return early
        log.debug("a reply begun early was dropped: the turn's final words differ")
        self._forget_early()
        return None

    @property
    def has_early(self) -> bool:
        """Whether a reply begun early waits for its response."""
        return self._early is not None

    def _session_config(self) -> dict[str, Any]:
        settings = self._session.settings
        return {k: settings.get(k) for k in _SESSION_KEYS}

    def _engine(self, config: dict[str, Any]) -> Any:
        options = self._session.options
        return options.engines.get(str(config.get("model") or ""), options.engine)

    def prepare_next(self, words: str | None = None) -> None:
        """Let the reply engine read ahead the prompt of the conversation's next reply, if it
        can (``prepare(context)``: the prompt cache of :class:`.llm.LlamaReplyEngine`), on a
        worker thread while the user listens or speaks: the reply to the next turn then starts
        sooner. ``words``: the user's turn as heard so far, read ahead too. Nothing is sent to
        the client; a failure is only logged."""
        config = self._session_config()
        prepare = getattr(self._engine(config), "prepare", None)
        if self.active is not None or not callable(prepare):
            return
        history = [item.turn() for item in self._items.items]
        if words:
            history.append(HistoryTurn(role="user", type="message", text=words))
        context = self._reply_context(config, history)
        task = asyncio.create_task(asyncio.to_thread(prepare, context), name="prepare")
        self._background.add(task)
        task.add_done_callback(self._prepared)

    def _prepared(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("reading ahead the next reply's prompt failed: %s", exc)

    def _reply_context(self, cfg: dict[str, Any], history: list[HistoryTurn]) -> ReplyContext:
        max_tokens = cfg.get("max_output_tokens")
        return ReplyContext(
            instructions=str(cfg.get("instructions") or ""),
            history=history,
            tools=self.relay.functions(list(cfg.get("tools") or [])),
            tool_choice=cfg.get("tool_choice", "auto"),
            max_output_tokens=max_tokens if isinstance(max_tokens, int) else None,
            # 0 is a temperature (greedy decoding, the same reply every time), not "unset"
            temperature=float(0.8 if cfg.get("temperature") is None else cfg["temperature"]),
            model=str(cfg.get("model") or ""),
        )

    async def _stream(self, response: ServerResponse) -> None:
        try:
            await self._emit({"type": "response.created", "response": response.public()})
            if not await self._reply(response):
                return
            await self._output.finish_message(response, "completed")
            response.status = "completed"
        except TokenLimit:
            response.status = "incomplete"
            response.status_details = {"type": "incomplete", "reason": "max_output_tokens"}
            await self._output.end_all(response, "incomplete")
        except asyncio.CancelledError:
            response.status = "cancelled"
            response.status_details = response.status_details or {
                "type": "cancelled", "reason": "client_cancelled"}
            if not await self._end_early(response):
                return
        except ConnectionClosed:
            return
        except Exception as exc:
            if not await self._fail(response, exc):
                return
        finally:
            if self.active is response:
                self.active = None
                self._on_end(response.played_ms())
        self.done += 1
        with contextlib.suppress(ConnectionClosed):
            await self._emit({"type": "response.done", "response": response.public()})
            if response.in_conversation:
                self.prepare_next()

    async def _fail(self, response: ServerResponse, exc: Exception) -> bool:
        """An engine (or the server) failed mid-response: the client gets an ``error`` naming
        the engine and the fix, and the response ends as ``failed`` with the same error in its
        ``status_details``; ``False`` if the client is gone."""
        if isinstance(exc, EngineFailed):
            log.error("response %s failed: %s", response.id, exc,
                      exc_info=None if exc.missing else exc.cause)
            error = exc.error()
        else:
            log.exception("response %s failed", response.id)
            error = internal_error(exc)
        response.status = "failed"
        response.status_details = {"type": "failed", "error": error}
        try:
            await self._emit({"type": "error", "error": _without_nulls(
                {**error, "event_id": response.event_id})})
        except ConnectionClosed:
            return False
        return await self._end_early(response)

    async def _reply(self, response: ServerResponse) -> bool:
        """Stream the engine's reply, going on after the MCP calls it made (a few rounds at
        most); ``False`` if it dropped the connection."""
        tools = list(response.config.get("tools") or [])
        if response.in_conversation:
            await self.relay.answer_approvals(response, tools)
        for _ in range(4):
            outcome = await self._reply_once(response, tools)
            if outcome != "mcp_called":
                return outcome != "dropped"
            await self._output.finish_message(response, "completed")
        return True

    async def _reply_once(self, response: ServerResponse, tools: list[Any]) -> str:
        """One run of the engine: ``"done"``, ``"dropped"``, or ``"mcp_called"`` (it called
        MCP tools: run it again with their results)."""
        options = self._session.options
        context = self._context(response)
        called = False
        engine = options.engines.get(context.model, options.engine)
        early = self._taken_early(response, engine, context)
        try:
            chunks = aiter(early.chunks() if early is not None else engine.reply(context))
        except Exception as exc:
            raise fault("replies", engine, exc) from exc
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise fault("replies", engine, exc) from exc
            if isinstance(chunk, DropConnection):
                self._session.abort()
                return "dropped"
            if isinstance(chunk, TextDelta):
                await self._output.text(response, chunk.text, chunk.whole)
            elif isinstance(chunk, ToolCall):
                await self._output.finish_message(response, "completed")
                entry = self.relay.owner(chunk.name, tools) if response.in_conversation \
                    else None
                if entry is None:
                    await self._output.tool_call(response, chunk)
                elif await self.relay.call_or_ask(response, entry, chunk.name, chunk.arguments):
                    called = True
                else:
                    return "done"  # waiting for the client's approval
            await asyncio.sleep(options.pace)
        return "mcp_called" if called else "done"

    async def _end_early(self, response: ServerResponse) -> bool:
        """Close the message a cancelled or failed response was writing; ``False`` if the
        client is gone."""
        try:
            await self._output.end_all(response, "incomplete")
        except ConnectionClosed:
            return False
        return True
