"""How one tool call runs: coroutines on the session's loop, plain functions on a daemon thread,
async generators yielding their progress; under the tool's timeout; cancelled at once (an async
tool's task is cancelled, a plain function sees :attr:`CallContext.cancelled` and its result is
dropped); and what the tool raised kept apart from the machinery's own failures.

A tool that declares a parameter annotated :class:`~rtwidget.tooling.call_context.CallContext`
gets its call's context (see that module).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..aio.deadlines import within
from ..protocol.errors import RealtimeError
from .call_context import CallContext

if TYPE_CHECKING:
    from .schema import Tool

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


async def _drain(generator: Any, context: CallContext | None) -> Any:
    """An async generator tool: the last value it yields is its result; the text and the
    fractions (0..1) it yields on the way are shown as its progress."""
    last: Any = None
    async for value in generator:
        last = value
        if context is None:
            continue
        if isinstance(value, float) and 0.0 <= value <= 1.0:
            context.progress("", value)
        elif isinstance(value, str):
            context.progress(value)
    return last


async def call_tool(tool: Tool, args: list[Any], kwargs: dict[str, Any],
                    context: CallContext | None = None) -> Any:
    """Run a tool under its timeout: coroutines on the current loop, async generators drained
    there (see :func:`_drain`), plain functions on a daemon thread (see :func:`off_loop`).
    ``context`` goes to the parameter the tool declared for it. What the tool raises
    (``SystemExit`` and ``KeyboardInterrupt`` as :class:`ToolExit`) comes back as
    :class:`ToolRaised`; the ``TimeoutError`` is the call's own."""
    if tool.context_param is not None:
        kwargs = {**kwargs, tool.context_param: context or CallContext("", tool.name)}
    if inspect.isasyncgenfunction(tool.fn):
        return await within(_guarded(_drain(tool.fn(*args, **kwargs), context)),
                                      tool.timeout)
    if tool.is_async:
        return await within(_guarded(tool.fn(*args, **kwargs)), tool.timeout)
    return await within(
        off_loop(lambda: tool.fn(*args, **kwargs), name=f"rtwidget-tool-{tool.name}"),
        tool.timeout)


