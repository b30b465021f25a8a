"""A time limit that keeps a cancellation which comes as the awaited thing completes."""

from __future__ import annotations

import asyncio

import pytest

from rtwidget.aio.deadlines import within


async def _cancelled_as_it_completes() -> None:
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(within(done, 5))
    await asyncio.sleep(0)  # the task waits on ``done``
    done.set_result(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_cancellation_as_the_awaitable_completes_is_raised_not_swallowed() -> None:
    asyncio.run(_cancelled_as_it_completes())


def test_the_result_the_limit_and_no_limit() -> None:
    async def main() -> None:
        assert await within(asyncio.sleep(0, "ok"), 1) == "ok"
        assert await within(asyncio.sleep(0, "ok"), None) == "ok"
        with pytest.raises(asyncio.TimeoutError):
            await within(asyncio.sleep(5), 0.01)

    asyncio.run(main())
