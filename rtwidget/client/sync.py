"""The blocking session: :class:`RealtimeSession` runs an :class:`AsyncRealtimeSession` on a
private thread, so that audio, keepalives and tool calls keep flowing while a notebook cell is
busy, and every call is safe from any thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from ..aio.deadlines import within
from ..data.cost import Cost
from ..data.frame import LiveView
from ..protocol import client_events
from ..protocol.audio import SAMPLE_RATE
from ..protocol.conversation import Conversation
from ..protocol.errors import ConnectionClosed, ErrorInfo, UsageError
from ..tooling.registry import ToolSet
from ..tooling.runner import ToolResult
from . import log_routing
from .event_hub import AudioListener, Listener, Predicate, UpdateListener
from .image_prep import PreparedImage, check_images_for, prepare_image
from .loop_thread import LoopThread
from .options import SessionOptions
from .providers import Endpoint, resolve
from .session import AsyncRealtimeSession

log = logging.getLogger("rtwidget.session")
log_routing.install()  # the session's warnings and tracebacks go to it, not to a cell

T = TypeVar("T")
_GRACE = 2.0  # beyond a call's own timeout, before the caller stops waiting for the loop


def _later(timeout: float | None) -> float | None:
    """How long a caller waits for a call whose own timeout is ``timeout``."""
    return None if timeout is None else timeout + _GRACE


class Expectation:
    """An event a :class:`RealtimeSession` is already listening for (see
    :meth:`RealtimeSession.expect`)."""

    def __init__(
        self, session: RealtimeSession, waiter: Coroutine[Any, Any, dict[str, Any]],
        timeout: float | None = None,
    ) -> None:
        self._session = session
        self._timeout = timeout
        self._waiter: Coroutine[Any, Any, dict[str, Any]] | None = waiter

    def wait(self) -> dict[str, Any]:
        """Block until the event arrives (or the timeout given to ``expect`` passes)."""
        if self._waiter is None:
            raise UsageError("this expectation was already waited for")
        waiter, self._waiter = self._waiter, None
        return self._session._run(waiter, self._timeout)


class RealtimeSession:
    """A Realtime session with a blocking API, safe to call from any thread.

    It owns an event loop on a daemon thread, so streaming goes on while notebook cells run.
    Use it as a context manager or call :meth:`close`; either leaves no thread or socket behind.

    ``settings`` are those of :class:`AsyncRealtimeSession` (:class:`~rtwidget.SessionOptions`
    fields and session configuration keywords); ``provider``/``url``/``api_key``/``headers``
    choose the endpoint as :func:`rtwidget.resolve` does, or ``endpoint`` gives it.

    >>> with RealtimeSession(instructions="Be brief.") as s:   # doctest: +SKIP
    ...     s.ask("What is the capital of France?")
    """

    def __init__(
        self,
        provider: str | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        endpoint: Endpoint | None = None,
        connect: bool = True,
        options: SessionOptions | None = None,
        conversation: Conversation | None = None,
        **settings: Any,
    ) -> None:
        options = SessionOptions.of(options, **settings)
        if endpoint is None:
            endpoint = resolve(provider, url=url, api_key=api_key, headers=headers,
                               model=options.config.get("model"))
        self._loop_thread = LoopThread("rtwidget-session-loop")
        self._loop, self._thread = self._loop_thread.loop, self._loop_thread.thread
        self._audio_out: deque[dict[str, Any]] = deque()
        self._voices: dict[str, pd.DataFrame] = {}
        self._audio_wake = False
        # before the thread starts: a configuration it refuses leaves nothing running
        self.aio = AsyncRealtimeSession(endpoint, options=options, conversation=conversation)
        self._loop.set_exception_handler(log_routing.loop_exception)
        self._detach_messages = log_routing.attach(self._thread, self._message)
        self._loop_thread.start()
        if connect:
            try:
                self.connect()
            except BaseException:
                self._detach_messages()
                self._loop_thread.stop()
                raise

    # --- plumbing ----------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the session's loop and wait for it here (see
        :meth:`LoopThread.run`)."""
        return self._loop_thread.run(coro, timeout)

    def _message(self, fields: dict[str, Any]) -> None:
        """A warning, error or traceback made on this session's thread (or on a thread no
        session owns): an ``rtwidget.message`` event in its log, shown by its widget."""
        self.call_soon(self._note_message, fields)

    def _note_message(self, fields: dict[str, Any]) -> None:
        self.aio.note("rtwidget.message", **fields)  # kept in the log, also after close

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.aio.closed or not self._thread.is_alive():
            raise ConnectionClosed("the session is closed")
        self._loop.call_soon_threadsafe(self._guard, fn, *args)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("dropped a client event that could not be queued")

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the session's thread soon, from any thread (it must not
        block); ``False`` if the session's loop has stopped, and then it does not run."""
        return self._loop_thread.call_soon(fn, *args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the session's thread in ``delay`` seconds; call it on that
        thread (from a listener)."""
        self._loop.call_later(delay, fn, *args)

    # --- public API --------------------------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        """The conversation state (items, responses, errors, event log)."""
        return self.aio.conversation

    @property
    def options(self) -> SessionOptions:
        """The options this session runs with now (its confirmed configuration and tools
        included): ``RealtimeSession(endpoint=s.endpoint, options=s.options)`` starts a session
        just like it."""
        return self.aio.options

    @property
    def endpoint(self) -> Endpoint:
        """Where the session connects (never shows the key)."""
        return self.aio.endpoint

    @property
    def recording(self) -> Path | None:
        """The folder this session records to (``record=``; ``True`` picks one under
        ``recordings/``), or ``None``; load it back with :func:`rtwidget.load_recording`."""
        return self.aio.recording

    @property
    def connected(self) -> bool:
        """Whether the connection is open right now."""
        return self.aio.connected

    @property
    def closed(self) -> bool:
        """Whether the session has ended (closed by the user or by a final error)."""
        return self.aio.closed

    @property
    def errors(self) -> list[ErrorInfo]:
        """Every ``error`` event received, oldest first."""
        return self.aio.errors

    @property
    def config(self) -> dict[str, Any]:
        """The session configuration as the server last confirmed it (re-applied after each
        reconnect)."""
        return dict(self.aio.config)

    def voices(self, language: str | None = None) -> pd.DataFrame:
        """The voices this session's provider offers (name, display name, language,
        description, tags); fetched once per session and language, then cached."""
        from .voices import list_voices

        key = language or ""
        if key not in self._voices:
            self._voices[key] = list_voices(self.endpoint, language)
        return self._voices[key].copy()

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as a DataFrame, one row per item (columns: ``rtwidget.COLUMNS``;
        built when asked for, cached until the next change)."""
        return self.aio.df

    @property
    def cost(self) -> Cost:
        """What the session has cost so far: see :attr:`AsyncRealtimeSession.cost`."""
        return self.aio.cost

    @property
    def events(self) -> pd.DataFrame:
        """The raw event log as a DataFrame: direction, type, time, size, payload."""
        return self.aio.events

    @property
    def segments(self) -> pd.DataFrame:
        """The diarised transcript, one row per segment: who spoke, when, what they said."""
        return self.aio.segments

    def live(self, rows: int = 20, max_rate: float = 4.0,
             columns: Sequence[str] | str | None = None) -> LiveView:
        """Show the DataFrame's last ``rows`` rows and redraw them in place as the talk goes on,
        at most ``max_rate`` times a second: who, what was said, tool and latency by default
        (``columns="all"`` for every column, or a list). ``.stop()`` on the result freezes it."""
        return self.aio.live(rows, max_rate, columns)

    def export(self, path: str | Path) -> Path:
        """Write the conversation DataFrame to ``.parquet``, ``.json`` or ``.jsonl``; read it
        back with :func:`rtwidget.load_conversation`."""
        return self.aio.export(path)

    @property
    def tools(self) -> ToolSet:
        """The tools this session offers (change them with ``update(tools=...)``)."""
        return self.aio.tools

    @property
    def tool_results(self) -> dict[str, ToolResult]:
        """Finished tool calls by ``call_id``: output, error, duration."""
        return self.aio.tool_results

    @property
    def running_tools(self) -> list[str]:
        """The call ids of the tool calls running now."""
        return self.aio.running_tools

    def submit_turn(self, events: list[dict[str, Any]], interrupt: bool = False) -> None:
        """Send ``events`` as one turn through the conversation's floor (see
        :meth:`AsyncRealtimeSession.submit_turn`)."""
        async def submit() -> None:
            self.aio.submit_turn(events, interrupt)

        self._run(submit())

    def cancel_tool(self, call_id: str) -> bool:
        """Cancel a running tool call (see :meth:`AsyncRealtimeSession.cancel_tool`);
        whether it was running."""
        return self._run(self.aio.cancel_tool(call_id))

    def connect(self) -> None:
        """Connect (done by the constructor unless ``connect=False``)."""
        self._run(self.aio.connect())

    def connect_in_background(self) -> concurrent.futures.Future[None]:
        """Start connecting and return at once; the future holds the outcome. Events sent
        meanwhile wait for the connection (audio appends are dropped until it is up)."""
        return asyncio.run_coroutine_threadsafe(self.aio.connect(), self._loop)

    def close(self) -> None:
        """Close the connection and stop the session's thread."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self.aio.close(), timeout=10)
        elif not self._loop.is_running():  # the loop's thread is gone: clean up from here
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(within(self.aio.close(), 10))
        self._loop_thread.stop()
        self._detach_messages()

    def __enter__(self) -> RealtimeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("closed" if self.aio.closed else "connecting")
        return f"<RealtimeSession {self.endpoint.describe()} {state}>"

    def on(self, event_type: str, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` (on the session's thread) for each event of this type, or
        ``"*"`` for every event. Returns a function that unsubscribes."""
        return self.aio.on(event_type, callback)

    def on_update(self, callback: UpdateListener) -> Callable[[], None]:
        """Call ``callback(event, update)`` (on the session's thread) for every event, with
        the conversation's typed :class:`~rtwidget.protocol.Update`."""
        return self.aio.on_update(callback)

    def on_audio(self, callback: AudioListener) -> Callable[[], None]:
        """Call ``callback(item_id, pcm16_bytes)`` for every assistant audio delta."""
        return self.aio.on_audio(callback)

    def wait_for(self, match: str | Predicate, timeout: float = 30.0) -> dict[str, Any]:
        """Block until a server event of this type (or matching the predicate) arrives.

        Only events arriving after the call count; to wait for the answer to something you
        send, use the blocking methods below, which subscribe before sending.
        """
        return self._run(self.aio.wait_for(match, timeout), _later(timeout))

    def expect(self, match: str | Predicate, timeout: float = 30.0) -> Expectation:
        """Subscribe now to the next event of this type (or matching the predicate); call
        ``.wait()`` on the result after sending whatever should cause it.

        >>> done = session.expect("response.done")          # doctest: +SKIP
        >>> session.say("Hi!")
        >>> done.wait()["response"]["status"]
        'completed'
        """

        async def subscribe() -> Coroutine[Any, Any, dict[str, Any]]:
            return self.aio.expect(match, timeout)

        return Expectation(self, self._run(subscribe()), _later(timeout))

    def update(self, **config: Any) -> dict[str, Any]:
        """Partially update the session (model, instructions, voice, tools...) and return the
        session as the server now has it."""
        return self._run(self.aio.update(**config), _later(30.0))

    def update_soon(self, **config: Any) -> concurrent.futures.Future[dict[str, Any]]:
        """:meth:`update` without waiting, from any thread: the update is sent before anything
        sent after this call; the returned future holds the server's session object, or the
        error (a rejected update changes nothing)."""
        result: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def settle(done: asyncio.Future[dict[str, Any]]) -> None:
            if done.cancelled():
                result.cancel()
            elif done.exception() is not None:
                result.set_exception(done.exception())
            else:
                result.set_result(done.result())

        def start() -> None:
            try:
                self.aio.update_soon(**config).add_done_callback(settle)
            except BaseException as exc:
                result.set_exception(exc)

        self._soon(start)
        return result

    def say(self, text: str, *, respond: bool = True, interrupt: bool = True) -> str:
        """Add a user text turn and ask for a reply; returns the item id at once.

        Typed during a reply, the turn interrupts it as a barge-in does: the reply is cancelled
        (a widget showing this session stops playing it, and it is cut where it was heard), and
        the turn is sent and answered once the server has ended the reply. With
        ``interrupt=False`` the reply finishes first (the rule of :meth:`ask`)."""
        return self._run(self.aio.say(text, respond=respond, interrupt=interrupt))

    send_text = say

    def ask(self, text: str, timeout: float = 60.0) -> str:
        """Send a text turn and block until the reply is complete; returns its text.

        A reply in progress is not interrupted: the turn waits until it has ended, then asks
        for its own reply (the wait counts toward ``timeout``)."""
        return self._run(self.aio.ask(text, timeout), _later(timeout))

    def send_audio(self, audio: Any) -> None:
        """Stream microphone audio (PCM16 24 kHz mono bytes or a numpy array); never blocks.
        Audio at another rate: convert it whole first (``rtwidget.protocol.audio.resample``).

        The event is built here (validation and base64 off the session's loop); frames that
        arrive while the loop is busy cross over together, with one wake-up."""
        self._audio_out.append(client_events.input_audio_append(audio))
        if not self._audio_wake:
            self._audio_wake = True
            self._soon(self._drain_audio)

    def _drain_audio(self) -> None:
        self._audio_wake = False
        while self._audio_out:
            self.aio.send_nowait(self._audio_out.popleft())

    def send_audio_item(
        self, audio: Any, *, transcript: str | None = None, respond: bool = True,
        rate: int = SAMPLE_RATE,
    ) -> str:
        """Add a pre-recorded audio message (recorded at ``rate`` Hz) and ask for a reply;
        returns its item id."""
        return self._run(self.aio.send_audio_item(audio, transcript=transcript, respond=respond,
                                                  rate=rate))

    def send_image(
        self, image: Any, text: str | None = None, *, detail: str | None = None,
        respond: bool = True, interrupt: bool = False, format: str | None = None,
    ) -> str:
        """Add a user message holding an image (a matplotlib figure, a PIL image, a numpy
        array, a path or bytes) and ``text`` after it, and ask for a reply (see
        :meth:`AsyncRealtimeSession.send_image`); returns its item id at once. The image is
        encoded in the calling thread."""
        check_images_for(self.endpoint.provider, self.endpoint.dialect)
        prepared = image if isinstance(image, PreparedImage) else prepare_image(image,
                                                                                format=format)
        return self._run(self.aio.send_image(prepared, text, detail=detail, respond=respond,
                                             interrupt=interrupt))

    def commit_audio(self) -> None:
        """End the user's audio turn by hand (when server VAD is off)."""
        self._run(self.aio.commit_audio())

    def clear_audio(self) -> None:
        """Drop audio appended but not yet committed."""
        self._run(self.aio.clear_audio())

    def create_response(self, **overrides: Any) -> str:
        """Ask the model to respond now, with optional per-response overrides."""
        return self._run(self.aio.create_response(**overrides))

    def cancel(self, response_id: str | None = None) -> None:
        """Cancel the response in progress."""
        self._run(self.aio.cancel(response_id))

    def retrieve(self, item_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The server's copy of an item."""
        return self._run(self.aio.retrieve(item_id, timeout), _later(timeout))

    def delete(self, item_id: str, timeout: float = 30.0) -> None:
        """Delete an item, on the server and locally."""
        self._run(self.aio.delete(item_id, timeout), _later(timeout))

    def truncate(
        self, item_id: str, audio_end_ms: int, content_index: int = 0, timeout: float = 30.0
    ) -> None:
        """Mark the assistant audio after ``audio_end_ms`` as never heard."""
        self._run(self.aio.truncate(item_id, audio_end_ms, content_index, timeout),
                  _later(timeout))

    def playback_stopped(self, item_id: str, audio_end_ms: float, *, cancel: bool = True) -> bool:
        """The player stopped playing ``item_id`` after ``audio_end_ms`` of its audio: the reply
        is cancelled (unless ``cancel=False``) and the item cut where it stopped (see
        :meth:`AsyncRealtimeSession.playback_stopped`); returns whether it was cut."""
        return self._run(self.aio.playback_stopped(item_id, audio_end_ms, cancel=cancel))

    def note(self, kind: str, **fields: Any) -> None:
        """Log and record something the client saw (an ``rtwidget.*`` event; see
        :meth:`AsyncRealtimeSession.note`), from any thread; after close it is dropped."""
        if not self.aio.closed:
            self._soon(lambda: self.aio.note(kind, **fields))

    def send(self, event: dict[str, Any]) -> None:
        """Send a raw client event (it gets an ``event_id`` if it has none)."""
        event = dict(event)
        event.setdefault("event_id", client_events.new_event_id())
        self.aio.encode(event)  # an event that cannot be sent is refused here
        self._soon(self.aio.send_raw, event)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``await fn()`` on the session's loop and return its result (for extensions)."""

        async def runner() -> T:
            return await fn()

        return self._run(runner(), timeout)
