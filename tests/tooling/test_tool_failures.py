"""A tool that fails oddly is reported as what it raised, at once: to the model (the
``function_call_output``) and in the DataFrame. A result that takes long to serialise is
serialised off the session's loop, and never more of it than fits. Against a real local server
on 127.0.0.1 whose scripted model calls the tools."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine
from rtwidget.tooling import results
from rtwidget.tooling.results import serialise_result

pytestmark = pytest.mark.timeout(120)

NAMES = ["stop_iteration", "key_error", "index_error", "own_timeout", "socket_timeout",
         "bad_str", "huge_message", "generator_exit", "own_cancel", "huge_result",
         "unsendable", "counted"]
RULES = [Rule(rf"run {name}\b", calls=[(name, {})]) for name in NAMES]
LONG = 60.0  # every tool's timeout: a call reported only after it would fail ask()'s timeout


class ReadTimeout(TimeoutError):
    """What an HTTP client raises when a read times out."""


class WeirdError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class Unrepresentable:
    def __repr__(self) -> str:
        raise ValueError("cannot show this")


class Counted:
    """Counts how often, and on which threads, it is turned into text."""

    seen: list[str] = []

    def __repr__(self) -> str:
        Counted.seen.append(threading.current_thread().name)
        return "c"


def failing(name: str, is_async: bool) -> Callable[..., Any]:
    def body() -> Any:
        if name == "stop_iteration":
            raise StopIteration
        if name == "key_error":
            return {}["city"]
        if name == "index_error":
            return [][3]
        if name == "own_timeout":
            raise TimeoutError("the weather service took too long")
        if name == "socket_timeout":
            raise ReadTimeout("timed out reading the forecast")
        if name == "bad_str":
            raise WeirdError
        if name == "huge_message":
            raise ValueError("x" * 5_000_000)
        if name == "generator_exit":
            raise GeneratorExit
        if name == "own_cancel":
            raise asyncio.CancelledError
        if name == "huge_result":
            row = list(range(200))
            return [[row] * 200] * 200  # 8 million values by reference
        if name == "unsendable":
            return {"a": Unrepresentable()}
        return [[Counted()] * 1000] * 1000

    if is_async:
        async def tool() -> Any:
            await asyncio.sleep(0)
            return body()
    else:
        def tool() -> Any:
            return body()
    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = f"The {name} tool."
    return tool


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        yield srv


def session(server: LocalServer, is_async: bool) -> rt.RealtimeSession:
    from rtwidget.tooling.schema import build_tool

    tools = [build_tool(failing(name, is_async), timeout=LONG) for name in NAMES]
    return rt.RealtimeSession("local", url=server.url, tools=tools, output_modalities=["text"])


def outcome(s: rt.RealtimeSession, name: str) -> tuple[dict[str, Any], str]:
    reply = s.ask(f"run {name}", timeout=20)  # far less than the tools' timeout
    output = json.loads(reply.removeprefix("The tool returned ").removesuffix("."))
    df = s.df
    row = df[(df["type"] == "function_call_output")].iloc[-1]
    return output, str(row["error"])


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("name", "expected"), [
    ("stop_iteration", "stop_iteration raised StopIteration"),
    ("key_error", "key_error raised KeyError: 'city'"),
    ("index_error", "index_error raised IndexError: list index out of range"),
    ("own_timeout", "own_timeout raised TimeoutError: the weather service took too long"),
    ("socket_timeout", "socket_timeout raised ReadTimeout: timed out reading the forecast"),
    ("bad_str", "bad_str raised WeirdError: <its message could not be made: __str__ raised "
                "RuntimeError>"),
    ("generator_exit", "generator_exit raised GeneratorExit"),
    ("own_cancel", "own_cancel raised CancelledError"),
])
def test_what_a_tool_raised_reaches_the_model_and_the_frame_as_itself_at_once(
        server: LocalServer, is_async: bool, name: str, expected: str) -> None:
    with session(server, is_async) as s:
        output, error = outcome(s, name)
        assert output == {"error": expected, "error_type": "exception"}
        assert error == expected
        result = next(r for r in s.tool_results.values() if r.name == name)
        assert result.error_type == "exception" and result.error == expected
        assert s.ask("still there?", timeout=20) == "You said: still there?"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_huge_message_is_cut_and_an_unsendable_result_is_said_to_be_one(
        server: LocalServer, is_async: bool) -> None:
    with session(server, is_async) as s:
        output, error = outcome(s, "huge_message")
        assert output["error"].startswith("huge_message raised ValueError: xxxx")
        assert "[cut: 4998000 more characters]" in output["error"] and len(output["error"]) < 3000
        output, error = outcome(s, "unsendable")
        assert output["error_type"] == "unserialisable_result"
        assert "unsendable returned a dict that cannot be sent: ValueError: cannot show this" \
            == output["error"] == error


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_huge_result_is_serialised_off_the_loop_and_only_as_much_as_fits(
        server: LocalServer, is_async: bool) -> None:
    Counted.seen.clear()
    with session(server, is_async) as s:
        reply = s.ask("run counted", timeout=20)
        assert reply.startswith("The tool returned [[")
        assert 0 < len(Counted.seen) <= results.MAX_NODES
        assert "rtwidget-session-loop" not in set(Counted.seen)
        reply = s.ask("run huge_result", timeout=20)
        assert "more" in reply and "[cut:" in reply
        assert s.ask("still there?", timeout=20) == "You said: still there?"


def test_serialising_looks_at_a_bounded_number_of_values() -> None:
    Counted.seen.clear()
    text = serialise_result({"k": [[Counted()] * 1000] * 1000, "tail": 1})
    assert len(Counted.seen) <= results.MAX_NODES and text.endswith("more characters]")
    assert json.loads(serialise_result([1, [2, {"a": (3,)}]])) == [1, [2, {"a": [3]}]]


def test_describing_an_exception_never_raises() -> None:
    from rtwidget.tooling.execution import describe_exception

    class NoName(Exception):
        def __str__(self) -> str:
            raise KeyboardInterrupt

    assert describe_exception(NoName()).startswith("NoName: <its message could not be made")
    assert describe_exception(KeyError("city")) == "KeyError: 'city'"
    assert describe_exception(StopIteration()) == "StopIteration"
