"""The chat's own messages (warnings, tool tracebacks, uncaught errors on its threads) go to the
session's log and its widget, never to ``sys.stderr``, which a kernel binds to whichever cell
it ran last; a cell's own call on the main thread keeps Python's usual way to its cell."""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import pytest
from conftest import eventually

import rtwidget as rt
from rtwidget.client import log_routing
from rtwidget.server import LocalServer, ScriptedReplyEngine


def _messages(session: rt.RealtimeSession) -> list[dict[str, Any]]:
    return [e.payload for e in session.conversation.log if e.type == "rtwidget.message"]


def test_a_warning_logged_on_the_session_thread_goes_to_the_session(
        session: rt.RealtimeSession, capsys: pytest.CaptureFixture[str]) -> None:
    session.call_soon(logging.getLogger("rtwidget.session").warning, "the sky is %s", "falling")
    got = eventually(lambda: _messages(session), what="the message in the session's log")
    assert got[0]["message"] == "the sky is falling" and got[0]["level"] == "warning"
    assert "rtwidget.message" in set(session.events["type"])
    assert capsys.readouterr().err == ""


def test_a_failing_callback_and_a_warning_on_the_loop_go_to_the_session(
        session: rt.RealtimeSession, capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> None:
        raise RuntimeError("a callback broke")

    def warns() -> None:
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)

    session.call_soon(fails)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        log_routing.install()  # over pytest's recorder of warnings, as over Python's in a kernel
        session.call_soon(warns)
        got = eventually(lambda: [m for m in _messages(session) if "deprecated" in m["message"]]
                         and _messages(session), what="both messages")
    texts = " | ".join(m["message"] for m in got)
    assert "RuntimeError: a callback broke" in texts and "deprecated thing" in texts
    broke = next(m for m in got if "a callback broke" in m["message"])
    assert "Traceback" in broke["traceback"] and broke["level"] == "error"
    assert capsys.readouterr().err == ""


def test_an_uncaught_error_in_an_rtwidget_thread_goes_to_the_open_sessions(
        session: rt.RealtimeSession, capsys: pytest.CaptureFixture[str]) -> None:
    def work() -> None:
        raise ValueError("lost in a thread")

    thread = threading.Thread(target=work, name="rtwidget-test-worker")
    thread.start()
    thread.join()
    got = eventually(lambda: [m for m in _messages(session) if "lost in a thread" in m["message"]],
                     what="the thread's error in the session")
    assert "ValueError" in got[0]["traceback"]
    assert capsys.readouterr().err == ""


def test_a_cells_own_call_with_no_chat_still_reaches_its_cell(
        capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("rtwidget.session").warning("said in the cell's own call")
    assert "said in the cell's own call" in capsys.readouterr().err


def test_a_failing_tool_shows_in_the_widget_and_the_log_not_on_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = rt.ToolRegistry()

    @registry.register
    def explode() -> str:
        """Always fails."""
        raise ZeroDivisionError("the tool divided by zero")

    with LocalServer(engine=ScriptedReplyEngine()) as server:
        chat = rt.chat("local", url=server.url, tools=registry, tool_choice="required",
                       output_modalities=["text"])
        try:
            eventually(lambda: chat.status == "connected", what="connected")
            chat.say("Go.")
            got = eventually(lambda: [m for m in _messages(chat.session)
                                      if "explode" in m["message"]], what="the tool's message")
            assert "ZeroDivisionError: the tool divided by zero" in got[0]["message"]
            assert "Traceback" in got[0]["traceback"]
            eventually(lambda: "ZeroDivisionError" in chat.notice, what="the widget showing it")
            assert chat.df["error"].dropna().str.contains("divided by zero").any()
        finally:
            chat.close()
    assert "Traceback" not in capsys.readouterr().err


def test_a_closed_chat_keeps_its_widget_read_only_with_its_transcript(
        server: LocalServer) -> None:
    chat = rt.chat("local", url=server.url, output_modalities=["text"])
    sent: list[dict[str, Any]] = []
    original = chat.comm.send

    def capture(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        if isinstance(data, dict) and data.get("method") == "custom":
            sent.append(data["content"])
        return original(data=data, metadata=metadata, buffers=buffers)

    chat.comm.send = capture

    def page(content: dict[str, Any]) -> None:
        chat._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                          "buffers": []})

    eventually(lambda: chat.status == "connected", what="connected")
    page({"type": "ready"})
    chat.ask("Remember me.")
    chat.close()
    assert chat.comm is not None, "the widget's model stays, so the page keeps showing it"
    assert chat.ended and chat.status == "closed"
    assert len(chat.df) == 2
    sent.clear()
    page({"type": "ready"})  # the page reloaded: it gets the transcript again
    rows = [m for m in sent if m.get("type") == "rows"]
    assert rows and "Remember me." in repr(rows[-1])
    page({"type": "text", "text": "Anyone there?"})  # read-only: ignored, nothing raised
    assert len(chat.df) == 2


def test_what_a_widget_logs_handling_its_page_goes_to_its_chat(
        server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The kernel may run comm messages on the main thread: still the chat's, not a cell's."""
    chat = rt.chat("local", url=server.url, output_modalities=["text"])
    try:
        eventually(lambda: chat.status == "connected", what="connected")
        chat._handle_msg({"content": {"data": {"method": "custom", "content": {
            "type": "no-such-message"}}}, "buffers": []})
        got = eventually(lambda: [m for m in _messages(chat.session)
                                  if "no-such-message" in m["message"]], what="the message")
        assert got[0]["logger"] == "rtwidget.widget"
        eventually(lambda: "no-such-message" in chat.notice, what="shown in the widget")
    finally:
        chat.close()
    assert capsys.readouterr().err == ""


def test_a_warning_in_the_notice_line_gives_way_once_the_session_is_back() -> None:
    from types import SimpleNamespace

    from rtwidget.notebook.notices import Notices
    from rtwidget.protocol.items import Update

    widget = SimpleNamespace(notice="Talking to the local server.", error="", status="connected")
    notices = Notices(widget)
    notices.message(Update("rtwidget.message"), {"level": "warning",
                                                 "message": "connection lost; reconnecting"})
    assert widget.notice == "connection lost; reconnecting" and not widget.error
    notices.server_news(Update("rtwidget.reconnected"), {})
    assert widget.notice == "Talking to the local server." and widget.status == "connected"
    notices.message(Update("rtwidget.message"), {"level": "error", "message": "it broke"})
    assert widget.error == "it broke" and widget.notice == "Talking to the local server."


def test_a_message_that_quotes_its_exception_does_not_say_it_twice() -> None:
    from rtwidget.client.log_routing import fields_of

    try:
        raise ConnectionError("the market data service is down")
    except ConnectionError as exc:
        quoted = logging.LogRecord("rtwidget.tools", logging.ERROR, __file__, 1,
                                   "tool %s raised %s: %s", ("quote", type(exc).__name__, exc),
                                   (type(exc), exc, exc.__traceback__))
        plain = logging.LogRecord("rtwidget.tools", logging.ERROR, __file__, 1, "tool failed",
                                  (), (type(exc), exc, exc.__traceback__))
    assert fields_of(quoted)["message"] == \
        "tool quote raised ConnectionError: the market data service is down"
    assert fields_of(plain)["message"] == \
        "tool failed: ConnectionError: the market data service is down"
