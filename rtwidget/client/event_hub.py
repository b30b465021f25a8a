"""Server events handed to whoever listens: callbacks by event type, audio callbacks, and
one-shot waiters (futures) that take the first event a predicate accepts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..aio.deadlines import within
from ..protocol.errors import WaitTimeout
from ..protocol.items import BETA_ALIASES, Update
from ..protocol.requests import Predicate

log = logging.getLogger("rtwidget.session")

Listener = Callable[[dict[str, Any]], Any]
AudioListener = Callable[[str, bytes], Any]
UpdateListener = Callable[[dict[str, Any], Update], Any]
Waiter = tuple[Predicate, "asyncio.Future[dict[str, Any]]"]


def predicate(match: str | Predicate) -> Predicate:
    """``match`` itself, or for an event type (GA or beta name) a test of the type."""
    if not isinstance(match, str):
        return match
    kind = BETA_ALIASES.get(match, match)

    def same_type(ev: dict[str, Any]) -> bool:
        return BETA_ALIASES.get(ev.get("type", ""), ev.get("type")) == kind

    return same_type


def _off(items: list[Any], entry: Any) -> Callable[[], None]:
    def off() -> None:
        with contextlib.suppress(ValueError):
            items.remove(entry)

    return off


class EventHub:
    """Listeners and waiters of one session; :meth:`dispatch` runs on the session's loop.

    A listener that raises is logged and the session goes on; one that returns a coroutine has
    it run as a task. ``on_update`` listeners get the conversation's typed :class:`Update`
    with the event, so they need not parse the event again.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._updates: list[UpdateListener] = []
        self._audio: list[AudioListener] = []
        self._waiters: list[Waiter] = []
        self._background: set[asyncio.Future[Any]] = set()

    def on(self, event_type: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of this type (GA or beta name; ``"*"``
        for all); returns a function that unsubscribes."""
        listeners = self._listeners.setdefault(BETA_ALIASES.get(event_type, event_type), [])
        listeners.append(callback)
        return _off(listeners, callback)

    def on_update(self, callback: UpdateListener) -> Callable[[], None]:
        """Call ``callback(event, update)`` for every event, with what it changed."""
        self._updates.append(callback)
        return _off(self._updates, callback)

    def on_audio(self, callback: AudioListener) -> Callable[[], None]:
        """Call ``callback(item_id, pcm16_bytes)`` for every assistant audio delta."""
        self._audio.append(callback)
        return _off(self._audio, callback)

    def subscribe(self, test: Predicate) -> Waiter:
        """A waiter for the first event from now on that ``test`` accepts (on the loop)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (test, future)
        self._waiters.append(entry)
        return entry

    def unsubscribe(self, entry: Waiter) -> None:
        entry[1].cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)

    async def wait(self, entry: Waiter, timeout: float | None) -> dict[str, Any]:
        """The event the waiter takes; :class:`WaitTimeout` (a ``TimeoutError``) after
        ``timeout`` seconds."""
        try:
            return await within(entry[1], timeout)
        except asyncio.TimeoutError:
            raise WaitTimeout(f"no matching server event within {timeout} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def fail(self, exc: Exception) -> None:
        """Every waiter gets ``exc`` (the session ended)."""
        for _, future in list(self._waiters):
            if not future.done():
                future.set_exception(exc)

    def dispatch(self, event: dict[str, Any], update: Update) -> None:
        kind = BETA_ALIASES.get(update.type, update.type)
        if update.audio is not None and update.item is not None:
            for audio_cb in list(self._audio):
                self.run(audio_cb, update.item.id, update.audio)
        for update_cb in list(self._updates):
            self.run(update_cb, event, update)
        for cb in (*self._listeners.get(kind, ()), *self._listeners.get("*", ())):
            self.run(cb, event)
        for entry in list(self._waiters):
            test, future = entry
            if not future.done():
                try:
                    matched = test(event)
                except Exception:
                    matched = False
                if not matched:
                    continue
                future.set_result(event)
            # answered (or given up on): an expectation nobody waits for must not linger
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def run(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call a listener (a coroutine it returns runs as a task); what it raises is logged."""
        try:
            result = callback(*args)
            if asyncio.iscoroutine(result):
                self.spawn(result)
        except (Exception, KeyboardInterrupt, SystemExit):
            log.exception("a session listener raised; the session goes on")

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task of the session; a failure is logged."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an async session listener raised; the session goes on",
                      exc_info=task.exception())
