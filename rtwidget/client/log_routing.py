"""Where rtwidget's own messages go: to the session they belong to, never to a notebook cell.

A kernel binds ``sys.stderr`` to a cell: a thread writes to the cell whose request the kernel
handled last (often the one that started the chat, or a widget message that shows in no cell
at all). So a warning logged on a session's thread, a traceback from a failing tool, a
``warnings.warn`` or an uncaught exception in one of rtwidget's threads would land under
whichever cell happened to be current. Instead they become ``rtwidget.message`` events in the
session's log (``session.events``, the recording) and the widget showing the session shows
them. On a thread no session owns, they go to every open session; only with no session open
(or on the main thread, outside a widget's message handler: a cell's own call) do they take
Python's usual way to ``sys.stderr``, the cell that made the call.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

Deliver = Callable[[dict[str, Any]], None]

_owners: weakref.WeakKeyDictionary[threading.Thread, Deliver] = weakref.WeakKeyDictionary()
_open: dict[int, Deliver] = {}
_local = threading.local()
_lock = threading.Lock()


def attach(thread: threading.Thread, deliver: Deliver) -> Callable[[], None]:
    """Messages made on ``thread`` (and, while open, on threads no session owns) go to
    ``deliver``; returns the function that detaches it."""
    key = id(deliver)
    with _lock:
        _owners[thread] = deliver
        _open[key] = deliver

    def detach() -> None:
        with _lock:
            _open.pop(key, None)
            if _owners.get(thread) is deliver:
                del _owners[thread]

    return detach


@contextlib.contextmanager
def speaking_for(deliver: Deliver | None) -> Iterator[None]:
    """Messages made on this thread inside the block go to ``deliver`` (a widget handling a
    message from its page, on whichever thread the kernel runs comms)."""
    before = getattr(_local, "deliver", None)
    _local.deliver = deliver
    try:
        yield
    finally:
        _local.deliver = before


def _targets() -> list[Deliver]:
    deliver = getattr(_local, "deliver", None) or _owners.get(threading.current_thread())
    if deliver is not None:
        return [deliver]
    if threading.current_thread() is threading.main_thread():
        return []  # a cell's own call: its cell is the right place
    with _lock:
        return list(_open.values())


def _send(fields: dict[str, Any]) -> bool:
    """Hand ``fields`` to the sessions they belong to; False if none takes them."""
    if getattr(_local, "busy", False):
        return False  # a message made while delivering one: no loop
    targets = _targets()
    _local.busy = True
    try:
        for deliver in targets:
            with contextlib.suppress(Exception):
                deliver(fields)
    finally:
        _local.busy = False
    return bool(targets)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as the ``rtwidget.message`` event's fields (already redacted by the
    logger's filters): level, logger, message (with the exception's last line) and the
    traceback as text."""
    message = record.getMessage()
    tb = ""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        said = f"{type(exc).__name__}: {exc}"
        if said not in message:  # the message may already quote it
            message = f"{message}: {said}"
        tb = "".join(traceback.format_exception(*record.exc_info))
    return {"level": record.levelname.lower(), "logger": record.name, "message": message,
            "traceback": tb}


class SessionMessages(logging.Handler):
    """The handler on the ``rtwidget`` logger: WARNING and above go to their session (see the
    module's docstring); what no session takes is written to ``sys.stderr`` as Python's
    last-resort handler would."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not _send(fields_of(record)) and logging.lastResort is not None:
                logging.lastResort.handle(record)
        except Exception:
            self.handleError(record)


_handler = SessionMessages()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    text = warnings.formatwarning(message, category, filename, lineno, line)
    fields = {"level": "warning", "logger": "warnings", "message": f"{category.__name__}: "
              f"{message}", "traceback": text}
    if file is not None or not _rtwidget_thread() or not _send(fields):
        _show_warning.original(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]


def _rtwidget_thread() -> bool:
    """Whether this thread is one of rtwidget's (a session's, a widget's message handler): a
    warning made on another (the user's own, a library's) keeps Python's way."""
    thread = threading.current_thread()
    return bool(getattr(_local, "deliver", None)) or thread in _owners \
        or thread.name.startswith("rtwidget")


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    thread = args.thread
    ours = thread is not None and (thread.name.startswith("rtwidget") or thread in _owners)
    if ours and args.exc_type is not SystemExit and args.exc_value is not None:
        record = logging.LogRecord("rtwidget", logging.ERROR, __file__, 0,
                                   "thread %s failed", (thread.name if thread else "?",),
                                   (args.exc_type, args.exc_value, args.exc_traceback))
        if _send(fields_of(record)):
            return
    _thread_exception.original(args)  # type: ignore[attr-defined]


def install() -> None:
    """Route rtwidget's messages (idempotent): the log handler, ``warnings.showwarning`` and
    ``threading.excepthook`` for the threads sessions own (others are passed on as before)."""
    logger = logging.getLogger("rtwidget")
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
    if warnings.showwarning is not _show_warning:
        _show_warning.original = warnings.showwarning  # type: ignore[attr-defined]
        warnings.showwarning = _show_warning
    if threading.excepthook is not _thread_exception:
        _thread_exception.original = threading.excepthook  # type: ignore[attr-defined]
        threading.excepthook = _thread_exception


def loop_exception(loop: Any, context: dict[str, Any]) -> None:
    """The session loop's exception handler: asyncio's default one logs to the ``asyncio``
    logger, which has no handler, so it would reach a cell; this logs to the session's."""
    exc = context.get("exception")
    logging.getLogger("rtwidget.session").error(
        "on the session's loop: %s", context.get("message", "an error"),
        exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)

