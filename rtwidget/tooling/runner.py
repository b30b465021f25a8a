"""Answers the model's function calls for a session.

A call starts running as soon as its arguments are complete
(``response.function_call_arguments.done``), so several calls of one response run concurrently.
When the response is done, the outputs go back in call order as ``function_call_output`` items,
followed by one ``response.create`` so the model can answer with the results. Every failure (bad
JSON, wrong types, an unknown tool, an exception, a timeout) becomes an error result the model
can read, and the conversation goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ToolError
from ..protocol import events
from ..protocol.conversation import Conversation
from ..protocol.items import Item, Response, Update
from .registry import ToolExit, ToolSet, call_tool
from .results import error_result, serialise_result

log = logging.getLogger("rtwidget.tools")


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
        error: str | None = None
        kind: str | None = None
        output = ""
        tool = self.toolset.get(name)
        try:
            if tool is None:
                known = [d["name"] for d in self.toolset.definitions()]
                raise LookupError(f"there is no tool named {name!r}; the tools are {known}")
            args, kwargs = tool.parse(arguments)
            value = await call_tool(tool, args, kwargs)
            output = serialise_result(value)
        except LookupError as exc:
            error, kind = str(exc), "unknown_tool"
        except ToolError as exc:
            error, kind = str(exc), "invalid_arguments"
        except (asyncio.TimeoutError, TimeoutError):
            assert tool is not None
            error, kind = f"{name} did not finish within {tool.timeout:g} s", "timeout"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            what = str(exc) if isinstance(exc, ToolExit) else f"{type(exc).__name__}: {exc}"
            error, kind = f"{name} raised {what}", "exception"
            log.warning("tool %s raised", name, exc_info=True)
        if error is not None:
            output = error_result(kind or "error", error)
        result = ToolResult(call_id, name, arguments, output, error, kind, started,
                            time.perf_counter() - clock)
        self.results[call_id] = result
        self.session.note("rtwidget.tool_result", call_id=call_id, name=name,
                          seconds=result.seconds, error=error, error_type=kind)
        return result

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
            self.session.send_nowait(events.item_create(
                events.function_call_output(result.call_id, result.output)))
        if not respond:
            return
        self.rounds += 1
        if self.rounds > self.max_rounds:
            log.warning("%d tool rounds in a row; asking the model to answer without tools",
                        self.rounds - 1)
            create = events.response_create(tool_choice="none")
            self.rounds = 0
        else:
            create = events.response_create()
        self.session.send_nowait(create)
        self.session.followed_up(response_id, create)
