"""A private asyncio loop on a daemon thread, and the calls onto it from any thread: what the
blocking session (:class:`~rtwidget.RealtimeSession`) stands on, so that audio, keepalives and
tool calls keep flowing while a notebook cell is busy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..protocol.errors import ConnectionClosed, UsageError, WaitTimeout

log = logging.getLogger("rtwidget.session")

T = TypeVar("T")
_POLL = 0.25  # how often a blocked caller checks that the loop is still alive


class LoopThread:
    """An event loop and the daemon thread ``name`` that runs it, from :meth:`start` until
    :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread (and so the loop)."""
        self.thread.start()

    def _serve(self) -> None:
        """The loop thread: a ``KeyboardInterrupt`` or ``SystemExit`` raised on the loop (by a
        callback) is logged and the loop goes on; only :meth:`stop` ends it."""
        while True:
            try:
                self.loop.run_forever()
                return
            except (KeyboardInterrupt, SystemExit):
                log.error("the session's loop caught an interrupt; it goes on", exc_info=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it here, at most ``timeout`` seconds (kept
        by this thread, so it holds even if the loop is stuck); a loop that stopped raises
        :class:`ConnectionClosed` at once."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise UsageError(
                "this blocking call was made on the session's own thread (from a listener); "
                "use session.aio and await it instead"
            )
        if not self.thread.is_alive():
            coro.close()
            raise ConnectionClosed("the session is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                done, _ = concurrent.futures.wait([future], timeout=max(0.0, step))
                if done:
                    return future.result()
                if not self.thread.is_alive():
                    raise ConnectionClosed("the session's event loop has stopped")
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"no answer within {timeout:g} s (the session's loop "
                                       "is busy)")
        except BaseException:
            future.cancel()
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop soon, from any thread (it must not block); ``False``
        if the loop has stopped, and then it does not run."""
        if self.loop.is_closed():
            return False
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # closed in between
            return False
        return True

    def stop(self) -> None:
        """Stop the loop and its thread, and close the loop once the thread has ended."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()
