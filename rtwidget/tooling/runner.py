"""Answers the model's function calls for a session.

A call starts running as soon as its arguments are complete
(``response.function_call_arguments.done``), so several calls of one response run concurrently.
When the response is done, the outputs go back in call order as ``function_call_output`` items,
followed by one ``response.create`` so the model can answer with the results. Every failure (bad
JSON, wrong types, an unknown tool, an exception, a timeout, a result that cannot be sent)
becomes an error result the model can read, at once, and the conversation goes on. What the tool
raised is reported as itself (its type and message), whatever it is: a ``KeyError`` is not an
unknown tool, a ``TimeoutError`` of its own is not the call's timeout, ``StopIteration`` does not
leave the call hanging, and an exception whose message cannot be made gets a stand-in. Plain
functions and the serialising of what they return run off the session's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol import client_events
from ..protocol.conversation import Conversation
from ..protocol.errors import RealtimeError, ToolError
from ..protocol.items import Item, Response, Update
from .registry import ToolSet
from .results import error_result, serialise_result
from .schema import Tool

log = logging.getLogger("rtwidget.tools")

MAX_MESSAGE = 2000  # characters of an exception's message the model is shown


def describe_exception(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """``"KeyError: 'city'"``: an exception's type and message, cut to ``limit`` characters;
    a stand-in when its ``__str__`` raises (it never raises itself)."""
    kind = getattr(type(exc), "__name__", "Exception")
    try:
        message = str(exc)
    except BaseException as failed:  # any __str__ may fail in any way
        message = (f"<its message could not be made: __str__ raised "
                   f"{getattr(type(failed), '__name__', 'an exception')}>")
    if len(message) > limit:
        message = message[:limit] + f"... [cut: {len(message) - limit} more characters]"
    return f"{kind}: {message}" if message else kind


class ToolExit(RealtimeError):
    """A tool raised ``SystemExit`` or ``KeyboardInterrupt`` (``argparse`` calls
    ``sys.exit()``): it becomes an ordinary failure, so it cannot stop the session."""

    def __init__(self, exc: BaseException) -> None:
        what = describe_exception(exc)
        kind = type(exc).__name__
        super().__init__(f"{kind}({what.removeprefix(kind + ': ')})" if what != kind else kind)


class ToolRaised(RealtimeError):
    """What a tool itself raised (``error``), kept apart from the machinery's own failures:
    a tool's ``TimeoutError`` or ``KeyError`` is the tool's, not a timeout or an unknown name."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            error = ToolExit(error)
        elif isinstance(error, RuntimeError) and isinstance(error.__cause__, StopIteration) \
                and "raised StopIteration" in describe_exception(error):
            error = error.__cause__  # PEP 479 turned the tool's StopIteration into this
        self.error = error


async def _guarded(coro: Any) -> Any:
    try:
        return await coro
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():  # the call is being cancelled: a timeout, close()
            raise
        raise ToolRaised(exc) from None  # the tool's own
    except BaseException as exc:  # whatever a tool raises is its result
        raise ToolRaised(exc) from None


async def off_loop(fn: Callable[..., Any], *args: Any, name: str = "rtwidget-work") -> Any:
    """``fn(*args)`` on a daemon thread, awaited on the current loop; what ``fn`` raises comes
    back as :class:`ToolRaised`. A thread cannot be killed: if the awaiting is cancelled (a
    timeout), the thread is abandoned and its result dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(ToolRaised(error))

    def work() -> None:
        try:
            value, error = fn(*args), None
        except BaseException as exc:  # StopIteration, SystemExit...
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


async def call_tool(tool: Tool, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run a tool under its timeout: coroutines on the current loop, plain functions on a
    daemon thread (see :func:`off_loop`). What the tool raises (``SystemExit`` and
    ``KeyboardInterrupt`` as :class:`ToolExit`) comes back as :class:`ToolRaised`; the
    ``TimeoutError`` is the call's own."""
    if tool.is_async:
        return await asyncio.wait_for(_guarded(tool.fn(*args, **kwargs)), tool.timeout)
    return await asyncio.wait_for(
        off_loop(lambda: tool.fn(*args, **kwargs), name=f"rtwidget-tool-{tool.name}"),
        tool.timeout)


@dataclass
class ToolResult:
    """One finished call: what was asked, what came back, how long it took."""

    call_id: str
    name: str
    arguments: str
    output: str
    error: str | None
    error_type: str | None
    started_at: float
    seconds: float


class ToolHost(Protocol):
    """What the runner needs of a session (an :class:`~rtwidget.AsyncRealtimeSession` is one)."""

    conversation: Conversation

    def on_update(self, callback: Callable[[dict[str, Any], Update], Any]
                  ) -> Callable[[], None]: ...

    def note(self, kind: str, **fields: Any) -> None: ...

    def send_nowait(self, event: dict[str, Any]) -> None: ...

    def followed_up(self, response_id: str, create: dict[str, Any]) -> None: ...


class ToolRunner:
    """Runs a session's tool calls (see the module docstring).

    ``max_rounds`` caps how many responses in a row may end in tool calls; past the cap the
    follow-up response is created with ``tool_choice="none"`` so the model has to answer.
    """

    def __init__(self, session: ToolHost, toolset: ToolSet, max_rounds: int = 8):
        self.session = session
        self.toolset = toolset
        self.max_rounds = max_rounds
        self.rounds = 0
        self.results: dict[str, ToolResult] = {}
        self._running: dict[str, asyncio.Task[ToolResult]] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self._off = [session.on_update(self._on_update)]

    def detach(self) -> None:
        """Stop answering calls and cancel the ones running."""
        for off in self._off:
            off()
        for task in [*self._running.values(), *self._finishing]:
            task.cancel()

    def handles(self, name: str | None) -> bool:
        """Whether calls to ``name`` are this runner's to answer."""
        return not (name and self.toolset.handled_elsewhere(name))

    def _on_update(self, event: dict[str, Any], update: Update) -> None:
        if update.type == "response.function_call_arguments.done" and update.item is not None:
            self._on_arguments_done(update.item)
        elif update.type == "response.done" and update.response is not None:
            self._on_response_done(update.response)

    def _on_arguments_done(self, call: Item) -> None:
        """A call's arguments are complete: run it now (the item has the call id and name even
        where the event left them off, as Inworld may)."""
        call_id = call.call_id
        if not call_id or call_id in self._running or call_id in self.results:
            return
        if self.handles(call.name):
            self._start(call_id, call.name or "", call.arguments)

    def _start(self, call_id: str, name: str, arguments: str) -> asyncio.Task[ToolResult]:
        task = asyncio.ensure_future(self._run(call_id, name, arguments))
        self._running[call_id] = task
        return task

    async def _run(self, call_id: str, name: str, arguments: str) -> ToolResult:
        started = time.time()
        clock = time.perf_counter()
        output, error, kind = await self._outcome(name, arguments)
        if error is not None:
            output = error_result(kind or "error", error)
        result = ToolResult(call_id, name, arguments, output, error, kind, started,
                            time.perf_counter() - clock)
        self.results[call_id] = result
        self.session.note("rtwidget.tool_result", call_id=call_id, name=name,
                          seconds=result.seconds, error=error, error_type=kind)
        return result

    async def _outcome(self, name: str, arguments: str) -> tuple[str, str | None, str | None]:
        """``(output, error, error_type)`` of one call; never raises but for cancellation."""
        tool = self.toolset.get(name)
        if tool is None:
            known = [d["name"] for d in self.toolset.definitions()]
            return "", f"there is no tool named {name!r}; the tools are {known}", "unknown_tool"
        try:
            args, kwargs = tool.parse(arguments)
            value = await call_tool(tool, args, kwargs)
        except ToolRaised as raised:
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

    def _on_response_done(self, response: Response) -> None:
        calls = []
        for item_id in response.item_ids:
            item = self.session.conversation.get(item_id)
            if item is None or item.type != "function_call" or not item.call_id:
                continue
            if item.status != "completed" or not self.handles(item.name):
                continue
            if self.session.conversation.output_for(item.call_id) is not None:
                continue
            calls.append(item)
        if not calls:
            if response.status == "completed":
                self.rounds = 0
            return
        tasks = []
        for item in calls:
            assert item.call_id is not None
            task = self._running.get(item.call_id)
            if task is None:
                task = self._start(item.call_id, item.name or "", item.arguments)
            tasks.append(task)
        finishing = asyncio.ensure_future(self._answer(tasks, response.id,
                                                       respond=response.status == "completed"))
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finishing.discard)

    async def _answer(self, tasks: list[asyncio.Task[ToolResult]], response_id: str,
                      respond: bool) -> None:
        results = await asyncio.gather(*tasks)
        for result in results:
            self._running.pop(result.call_id, None)
            self.session.send_nowait(client_events.item_create(
                client_events.function_call_output(result.call_id, result.output)))
        if not respond:
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
        self.session.followed_up(response_id, create)
