"""A time limit on an awaitable that never swallows a cancellation.

Before Python 3.12, ``asyncio.wait_for`` returns the awaitable's result instead of raising when
its task is cancelled just as the awaitable completes (CPython gh-86296). On the local server
that lost a ``response.cancel`` (and a barge-in) that came while a delta was being sent: the
reply went on to its end. :func:`within` raises the cancellation in every case.

Like ``wait_for``, it runs the awaitable as a task of its own, so each call lets the loop run
its other tasks once. The local server relies on that: with ``asyncio.timeout`` instead (no
task, no yield while a send does not block) its streaming held back the end-of-turn work, and
fewer replies begun in the silence were taken over (39 of 50 against 46 and 46 with a task per
send, in `python -m bench --only profiles`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``await awaitable``, or ``asyncio.TimeoutError`` after ``seconds`` (``None``: no limit);
    a cancellation of the awaiting task is always raised (and cancels the awaitable)."""
    if seconds is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise asyncio.TimeoutError
    return task.result()
