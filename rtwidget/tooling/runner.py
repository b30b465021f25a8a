"""Answers the model's function calls for a session.

A call starts running as soon as its arguments are complete
(``response.function_call_arguments.done``), so several calls of one response run concurrently;
a call with the same tool and arguments as one still running is answered from that one. When
the response is done, the outputs go back in call order as ``function_call_output`` items,
followed by one ``response.create`` (through the conversation's floor: it waits for any response
in progress) so the model can answer with the results. Every failure (bad JSON, wrong types, an
unknown tool, an exception, a timeout, a result that cannot be sent) becomes an error result the
model can read, at once, and the conversation goes on.

While the user waits, nothing is silent: ``filler_after`` seconds after the user's turn ended
with a call still running, the agent says a short filler (an out-of-band response, which adds
nothing to the conversation and holds no floor), unless the calls' response already said
something. The user may move on: speech starting or a typed turn that interrupts cancels the
running calls that allow it (their outputs are never sent, and no follow-up is asked for), and
``cancel(call_id)`` cancels one call (the model is told it was cancelled). A background tool's
call is answered at once with a "started" output; its real result comes later as a system
message, delivered when the agent is idle and the user is not speaking, by interrupting, or
silently (see :mod:`rtwidget.tooling.delivery`).

Each stage is noted as an ``rtwidget.tool_*`` event (started, progress, result), which the
Conversation keeps per call for ``df`` and the widget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import client_events
from ..protocol.conversation import Conversation
from ..protocol.errors import ToolError
from ..protocol.items import Item, Response, Update
from .call_context import CallContext
from .delivery import FILLER_INSTRUCTIONS, Delivery, TurnHost
from .execution import (
    ToolExit,
    ToolRaised,
    call_tool,
    describe_exception,
    off_loop,
)
from .registry import ToolSet
from .results import error_result, serialise_result
from .schema import SESSION, Tool

log = logging.getLogger("rtwidget.tools")

INTERRUPTED = "interrupted"
"""Why a call was cancelled when the user spoke or typed over the wait."""


@dataclass
class ToolResult:
    """One finished call: what was asked, what came back, how long it took. ``status``:
    ``done``, ``failed`` or ``cancelled``."""

    call_id: str
    name: str
    arguments: str
    output: str
    error: str | None
    error_type: str | None
    started_at: float
    seconds: float
    status: str = "done"


@dataclass(eq=False)
class Call:
    """A call the runner started and has not answered yet."""

    call_id: str
    name: str
    arguments: str
    tool: Tool | None
    context: CallContext
    task: asyncio.Task[ToolResult] | None = None
    cancelled: str | None = None  # why: INTERRUPTED or "cancelled"
    duplicate_of: str | None = None
    followers: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @property
    def background(self) -> bool:
        return self.tool is not None and self.tool.background

    def key(self) -> tuple[str, str]:
        """The tool and its arguments, the same however the JSON was spaced."""
        try:
            args = json.dumps(json.loads(self.arguments or "{}"), sort_keys=True)
        except (ValueError, TypeError):
            args = self.arguments
        return self.name, args


@dataclass(eq=False)
class Answer:
    """The calls of one response, being answered: which outputs went out, and whether one
    was dropped because the user moved on (then no follow-up response is asked for)."""

    response_id: str
    calls: list[Call]
    respond: bool
    sent: set[str] = field(default_factory=set)
    dropped: bool = False


class ToolHost(TurnHost, Protocol):
    """What the runner needs of a session (an :class:`~rtwidget.AsyncRealtimeSession` is one)."""

    conversation: Conversation

    def on_update(self, callback: Callable[[dict[str, Any], Update], Any]
                  ) -> Callable[[], None]: ...

    def note(self, kind: str, **fields: Any) -> None: ...

    def followed_up(self, response_id: str, create: dict[str, Any]) -> None: ...


class ToolRunner:
    """Runs a session's tool calls (see the module docstring).

    ``max_rounds`` caps how many responses in a row may end in tool calls; past the cap the
    follow-up response is created with ``tool_choice="none"`` so the model has to answer.
    """

    def __init__(self, session: ToolHost, toolset: ToolSet, max_rounds: int = 8,
                 filler_after: float | None = 0.7,
                 filler_instructions: str = FILLER_INSTRUCTIONS) -> None:
        self.session = session
        self.toolset = toolset
        self.max_rounds = max_rounds
        self.filler_after = filler_after
        self.rounds = 0
        self.results: dict[str, ToolResult] = {}
        self.calls: dict[str, Call] = {}  # running, or finished and not answered yet
        self.delivery = Delivery(session, filler_instructions)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answers: list[Answer] = []  # responses whose calls are being answered
        try:
            self._event_loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made off its loop: progress from threads is not passed on
            self._event_loop = None
        self._off = [session.on_update(self._on_update)]

    def detach(self) -> None:
        """Stop answering calls and cancel the ones running."""
        for off in self._off:
            off()
        for call in self.calls.values():
            call.context.cancel()
        for task in [*(c.task for c in self.calls.values() if c.task), *self._tasks]:
            task.cancel()

    def handles(self, name: str | None) -> bool:
        """Whether calls to ``name`` are this runner's to answer."""
        return not (name and self.toolset.handled_elsewhere(name))

    def running(self) -> list[str]:
        """The ids of the calls still running."""
        return [c.call_id for c in self.calls.values() if c.task and not c.task.done()]

    # --- what the server said --------------------------------------------------------------------

    def _on_update(self, event: dict[str, Any], update: Update) -> None:
        kind = update.type
        if kind == "response.function_call_arguments.done" and update.item is not None:
            self._on_arguments_done(update.item)
        elif kind == "response.done" and update.response is not None:
            self._on_response_done(update.response)
        elif kind == "input_audio_buffer.speech_started":
            self.delivery.user_speaking = True
            self.interrupted()
        elif kind in ("input_audio_buffer.speech_stopped", "input_audio_buffer.cleared"):
            self.delivery.user_speaking = False

    def _on_arguments_done(self, call: Item) -> None:
        """A call's arguments are complete: run it now (the item has the call id and name even
        where the event left them off, as Inworld may)."""
        call_id = call.call_id
        if not call_id or call_id in self.calls or call_id in self.results:
            return
        if self.handles(call.name):
            self._start(call_id, call.name or "", call.arguments)

    # --- running ---------------------------------------------------------------------------------

    def _start(self, call_id: str, name: str, arguments: str) -> Call:
        tool = self.toolset.get(name)

        def progress(message: str, fraction: float | None) -> None:
            self._soon(lambda: self._progress(call_id, message, fraction))

        call = Call(call_id, name, arguments, tool, CallContext(call_id, name, progress))
        twin = next((c for c in self.calls.values() if c.key() == call.key()
                     and c.duplicate_of is None and c.cancelled is None and c.task is not None
                     and not c.task.done()), None)
        self.calls[call_id] = call
        if twin is not None and twin.task is not None:
            call.duplicate_of = twin.call_id
            twin.followers.append(call_id)
            call.task = asyncio.ensure_future(self._follow(call, twin.task))
        else:
            call.task = asyncio.ensure_future(self._run(call))
        self.session.note("rtwidget.tool_started", call_id=call_id, name=name,
                          background=call.background, duplicate_of=call.duplicate_of)
        return call

    def _soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the session's loop, from any thread."""
        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                self._event_loop.call_soon_threadsafe(fn)

    def _progress(self, call_id: str, message: str, fraction: float | None) -> None:
        call = self.calls.get(call_id)
        if call is None or call.cancelled or (call.task is not None and call.task.done()):
            return
        said: dict[str, Any] = {"message": message} if message else {}
        if fraction is not None:
            said["fraction"] = fraction  # what is not said stays as it was
        self.session.note("rtwidget.tool_progress", call_id=call_id, name=call.name, **said)

    async def _run(self, call: Call) -> ToolResult:
        started = time.time()
        clock = time.perf_counter()
        try:
            output, error, kind = await self._outcome(call)
        except asyncio.CancelledError:
            if call.cancelled is None:
                raise  # the session is closing
        if call.cancelled is not None:  # (a sync tool's result may come after its cancel)
            return self.results[call.call_id]  # made by cancel()
        if error is not None:
            output = error_result(kind or "error", error)
        status = "cancelled" if kind == "cancelled" else "failed" if error else "done"
        result = ToolResult(call.call_id, call.name, call.arguments, output, error, kind,
                            started, time.perf_counter() - clock, status)
        self._finished(result, call.background)
        return result

    async def _follow(self, call: Call, original: asyncio.Task[ToolResult]) -> ToolResult:
        """A duplicate call: the running twin's result, under this call's id."""
        started, clock = time.time(), time.perf_counter()
        try:
            twin = await asyncio.shield(original)
        except asyncio.CancelledError:
            if call.cancelled is None:
                raise  # the session is closing
        if call.cancelled is not None:
            return self.results[call.call_id]  # made by cancel()
        result = ToolResult(call.call_id, call.name, call.arguments, twin.output, twin.error,
                            twin.error_type, started, time.perf_counter() - clock, twin.status)
        self._finished(result, call.background)
        return result

    def _finished(self, result: ToolResult, background: bool) -> None:
        self.results[result.call_id] = result
        self.session.note("rtwidget.tool_result", call_id=result.call_id, name=result.name,
                          seconds=result.seconds, error=result.error,
                          error_type=result.error_type, status=result.status,
                          background=background)

    @staticmethod
    def _cancel_text(call: Call) -> str:
        if call.cancelled == INTERRUPTED:
            return f"{call.name} was cancelled: the user interrupted"
        return f"{call.name} was cancelled by the user"

    async def _outcome(self, call: Call) -> tuple[str, str | None, str | None]:
        """``(output, error, error_type)`` of one call; never raises but for cancellation."""
        name, tool = call.name, call.tool
        if tool is None:
            known = [d["name"] for d in self.toolset.definitions()]
            return "", f"there is no tool named {name!r}; the tools are {known}", "unknown_tool"
        try:
            args, kwargs = tool.parse(call.arguments)
            value = await call_tool(tool, args, kwargs, call.context)
        except ToolRaised as raised:
            if call.cancelled is not None:
                return "", self._cancel_text(call), "cancelled"
            log.warning("tool %s raised %s", name, describe_exception(raised.error),
                        exc_info=raised.error)
            what = str(raised.error) if isinstance(raised.error, ToolExit) \
                else describe_exception(raised.error)
            return "", f"{name} raised {what}", "exception"
        except ToolError as exc:
            return "", describe_exception(exc).removeprefix("ToolError: "), "invalid_arguments"
        except (asyncio.TimeoutError, TimeoutError):
            return "", f"{name} did not finish within {tool.timeout:g} s", "timeout"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # rtwidget's own failure around the call, not the tool's
            log.error("could not run tool %s", name, exc_info=True)
            return "", f"{name} could not be run: {describe_exception(exc)}", "error"
        if isinstance(value, str) and len(value) <= 1_000_000:
            return serialise_result(value), None, None
        try:  # a big structure takes a while to walk: not on the session's loop
            return await off_loop(serialise_result, value, name="rtwidget-result"), None, None
        except asyncio.CancelledError:
            raise
        except ToolRaised as raised:
            return "", (f"{name} returned a {type(value).__name__} that cannot be sent: "
                        f"{describe_exception(raised.error)}"), "unserialisable_result"

    # --- cancelling ------------------------------------------------------------------------------

    def cancel(self, call_id: str, reason: str = "cancelled") -> bool:
        """Cancel a running call (and the duplicates answered from it); whether it was
        running. Its output is never sent; with ``reason="cancelled"`` the model is told the
        call was cancelled instead."""
        call = self.calls.get(call_id)
        if call is None or call.task is None or call.task.done() or call.cancelled:
            return False
        call.cancelled = reason
        call.context.cancel()
        call.task.cancel()  # (a task cancelled before it began never runs its own code)
        error = self._cancel_text(call)
        self._finished(ToolResult(call.call_id, call.name, call.arguments,
                                  error_result("cancelled", error), error, "cancelled",
                                  call.started_at, time.time() - call.started_at, "cancelled"),
                       call.background)
        for follower in list(call.followers):
            self.cancel(follower, reason)
        return True

    def interrupted(self) -> list[str]:
        """The user spoke or typed over the wait: cancel the running calls whose tools allow
        it (not background ones), and send the outputs of those already finished at once, so
        they come before the user's new turn; the ids cancelled."""
        cancelled = [c.call_id for c in list(self.calls.values())
                     if not c.background and (c.tool is None or c.tool.cancel_on_interruption)
                     and self.cancel(c.call_id, INTERRUPTED)]
        for answer in list(self._answers):
            self._send_outputs(answer, finished_only=True)
        return cancelled

    # --- answering -------------------------------------------------------------------------------

    def _on_response_done(self, response: Response) -> None:
        calls: list[Call] = []
        conversation = self.session.conversation
        for item_id in response.item_ids:
            item = conversation.get(item_id)
            if item is None or item.type != "function_call" or not item.call_id:
                continue
            if item.status != "completed" or not self.handles(item.name):
                continue
            if conversation.output_for(item.call_id) is not None:
                continue
            call = self.calls.get(item.call_id)
            if call is None:
                if item.call_id in self.results:
                    continue  # answered already
                call = self._start(item.call_id, item.name or "", item.arguments)
            calls.append(call)
        if not calls:
            if response.status == "completed":
                self.rounds = 0
            return
        respond = response.status == "completed"
        self._spawn(self._answer(Answer(response.id, calls, respond)))
        if respond:
            wait = self._filler_wait(calls)
            if wait is not None:
                self._spawn(self.delivery.filler(response, [c.task for c in calls if c.task
                                                            and not c.background], wait))

    def _filler_wait(self, calls: list[Call]) -> float | None:
        """Seconds after the turn's end before a filler: the shortest of the calls' own."""
        waits = []
        for call in calls:
            if call.background:
                continue
            own = call.tool.filler_after if call.tool is not None else SESSION
            wait = self.filler_after if own == SESSION else own
            if isinstance(wait, (int, float)):
                waits.append(float(wait))
        return min(waits) if waits else None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, answer: Answer) -> None:
        self._answers.append(answer)
        try:
            await asyncio.gather(*[c.task for c in answer.calls if c.task is not None
                                   and not c.background], return_exceptions=True)
            if not self._send_outputs(answer):
                return  # the session is closing
        finally:
            self._answers.remove(answer)
        if not answer.respond or answer.dropped:
            return
        self.rounds += 1
        if self.rounds > self.max_rounds:
            log.warning("%d tool rounds in a row; asking the model to answer without tools",
                        self.rounds - 1)
            create = client_events.response_create(tool_choice="none")
            self.rounds = 0
        else:
            create = client_events.response_create()
        self.session.send_nowait(create)
        self.session.followed_up(answer.response_id, create)

    def _send_outputs(self, answer: Answer, finished_only: bool = False) -> bool:
        """Send the outputs of the answer's calls not sent yet, in call order (with
        ``finished_only``, of those finished so far); ``False`` if a result is missing (the
        session is closing)."""
        for call in answer.calls:
            if call.call_id in answer.sent:
                continue
            if call.background:
                output = self.delivery.started_output(call.name)
                if call.task is not None:
                    call.task.add_done_callback(self._delivers(call))
            elif call.cancelled == INTERRUPTED:
                self.calls.pop(call.call_id, None)
                answer.sent.add(call.call_id)
                answer.dropped = True  # the user moved on: this output is never sent
                continue
            else:
                result = self.results.get(call.call_id)
                if result is None:
                    if finished_only:
                        continue
                    return False
                self.calls.pop(call.call_id, None)
                output = result.output
            answer.sent.add(call.call_id)
            self.session.send_nowait(client_events.item_create(
                client_events.function_call_output(call.call_id, output)))
        return True

    def _delivers(self, call: Call) -> Callable[[asyncio.Task[ToolResult]], None]:
        def done(task: asyncio.Task[ToolResult]) -> None:
            self._spawn(self._deliver(call, task))
        return done

    async def _deliver(self, call: Call, task: asyncio.Task[ToolResult]) -> None:
        """A background call finished: its result to the model, as its tool says."""
        self.calls.pop(call.call_id, None)
        if task.cancelled() or call.cancelled is not None:
            return
        result = task.result()
        mode = call.tool.deliver if call.tool is not None else "when_idle"
        await self.delivery.deliver(result.name, result.call_id, result.arguments,
                                    result.output, mode)
        self.session.note("rtwidget.tool_delivered", call_id=result.call_id, name=result.name,
                          mode=mode)
