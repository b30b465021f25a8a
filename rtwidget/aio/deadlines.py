"""A time limit on an awaitable that never swallows a cancellation.

Before Python 3.12, ``asyncio.wait_for`` returns the awaitable's result instead of raising when
its task is cancelled just as the awaitable completes (CPython gh-86296). On the local server
that lost a ``response.cancel`` (and a barge-in) that came while a delta was being sent: the
reply went on to its end. :func:`within` raises the cancellation in every case.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``await awaitable``, or ``asyncio.TimeoutError`` after ``seconds`` (``None``: no limit);
    a cancellation of the awaiting task is always raised."""
    if seconds is None:
        return await awaitable
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
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
