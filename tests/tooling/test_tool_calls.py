"""Tools called by the model, run by the session, against the local server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer, ReplyContext, Rule, ScriptedReplyEngine, ToolCall
from rtwidget.server.engines import ReplyChunk, TextDelta

TOOL_RULES = [
    Rule(r"weather in (?P<city>\w+)", calls=[("get_weather", {"city": "{city}"})]),
    Rule(r"both", calls=[("slow_a", {}), ("slow_b", {})]),
    Rule(r"broken json", calls=[("get_weather", '{"city": "Par')]),
    Rule(r"wrong type", calls=[("get_weather", {"city": 42})]),
    Rule(r"invent", calls=[("no_such_tool", {})], unchecked=True),
    Rule(r"explode", calls=[("explode", {})]),
    Rule(r"hang", calls=[("hang", {})]),
    Rule(r"await", calls=[("async_tool", {"n": 3})]),
]


@pytest.fixture
def tool_server() -> Iterator[LocalServer]:
    with LocalServer(engine=ScriptedReplyEngine(rules=TOOL_RULES)) as srv:
        yield srv


def open_session(server: LocalServer, **config: object) -> rt.RealtimeSession:
    return rt.RealtimeSession("local", url=server.url, output_modalities=["text"], **config)


def rows(session: rt.RealtimeSession) -> list[tuple[str, str | None, str | None]]:
    df = session.df
    return list(zip(df["type"], df["tool_name"], df["text"], strict=True))


def test_sync_tool_runs_in_a_worker_thread_and_the_model_answers(tool_server) -> None:
    threads = []

    @rt.tool
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        threads.append(threading.current_thread().name)
        return {"city": city, "sky": "clear", "celsius": 21}

    with open_session(tool_server) as s:
        reply = s.ask("What is the weather in Paris?")
        df = s.df
    assert reply == 'The tool returned {"city":"Paris","sky":"clear","celsius":21}.'
    assert threads[0].startswith("rtwidget-tool-get_weather")
    assert list(df["type"]) == ["message", "function_call", "function_call_output", "message"]
    call = df.iloc[1]
    assert call["tool_name"] == "get_weather" and json.loads(call["arguments"]) == {
        "city": "Paris"}
    assert df.iloc[2]["tool_name"] == "get_weather" and pd_isna(df.iloc[2]["error"])
    assert df.iloc[2]["tool_s"] >= 0


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_async_tool_runs_on_the_session_loop(tool_server) -> None:
    where = []

    @rt.tool
    async def async_tool(n: int) -> list[int]:
        where.append(threading.current_thread().name)
        await asyncio.sleep(0.01)
        return list(range(n))

    with open_session(tool_server) as s:
        assert s.ask("please await it") == "The tool returned [0,1,2]."
    assert where == ["rtwidget-session-loop"]


def test_two_calls_run_concurrently_and_answer_in_call_order(tool_server) -> None:
    both_running = threading.Barrier(2, timeout=10)
    finished: list[str] = []
    b_finished = threading.Event()

    @rt.tool
    def slow_a() -> str:
        both_running.wait()  # only passes if slow_b runs at the same time
        assert b_finished.wait(10)  # finish second
        return "A"

    @rt.tool
    def slow_b() -> str:
        both_running.wait()
        return "B"

    def on_result(event: dict) -> None:
        finished.append(event["name"])
        if event["name"] == "slow_b":
            b_finished.set()

    with open_session(tool_server) as s:
        s.on("rtwidget.tool_result", on_result)
        assert s.ask("run both") == "The tool returned A; B."
        assert finished == ["slow_b", "slow_a"]
        outputs = [i for i in s.conversation if i.type == "function_call_output"]
        calls = [i for i in s.conversation if i.type == "function_call"]
    assert [o.output for o in outputs] == ["A", "B"]
    assert [o.call_id for o in outputs] == [c.call_id for c in calls]


@pytest.mark.parametrize(("prompt", "error_type", "fragment"), [
    ("broken json", "invalid_arguments", "not valid JSON"),
    ("wrong type", "invalid_arguments", "city: Input should be a valid string"),
    ("invent a tool", "unknown_tool", "no tool named 'no_such_tool'"),
    ("explode now", "exception", "explode raised ValueError: kaboom"),
    ("hang forever", "timeout", "hang did not finish within 0.2 s"),
])
def test_failures_become_error_results_and_the_talk_goes_on(tool_server, prompt, error_type,
                                                            fragment) -> None:
    release = threading.Event()

    @rt.tool
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    @rt.tool
    def explode() -> None:
        raise ValueError("kaboom")

    @rt.tool(timeout=0.2)
    def hang() -> None:
        release.wait(10)

    with open_session(tool_server) as s:
        reply = s.ask(prompt)
        output = json.loads(reply.removeprefix("The tool returned ").removesuffix("."))
        assert output["error_type"] == error_type and fragment in output["error"]
        df = s.df
        errors = df[df["type"] == "function_call_output"]["error"]
        assert fragment in errors.iloc[0]
        (result,) = s.tool_results.values()
        assert result.error_type == error_type
        assert s.ask("still fine?") == "You said: still fine?"
    release.set()


def test_async_tool_timeout_cancels_it(tool_server) -> None:
    cancelled = threading.Event()

    @rt.tool(name="async_tool", timeout=0.1)
    async def stuck(n: int) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with open_session(tool_server) as s:
        reply = s.ask("await it")
    assert "did not finish within 0.1 s" in reply and cancelled.is_set()


def test_redefining_a_tool_updates_the_live_session_without_reconnecting(tool_server) -> None:
    @rt.tool
    def get_weather(city: str) -> str:
        """Version one."""
        return "v1"

    with open_session(tool_server) as s:
        assert s.ask("weather in Oslo") == "The tool returned v1."
        updated = s.expect(lambda ev: ev.get("type") == "session.updated" and any(
            t.get("description") == "Version two." for t in ev["session"]["tools"]))

        @rt.tool
        def get_weather(city: str, units: str = "C") -> str:
            """Version two."""
            return f"v2 {units}"

        updated.wait()
        assert s.ask("weather in Oslo") == "The tool returned v2 C."
        (conn,) = tool_server.connections
        assert [t["name"] for t in conn.session["tools"]] == ["get_weather"]
        assert "units" in conn.session["tools"][0]["parameters"]["properties"]
        assert s.aio.reconnects == 0


def test_per_session_choice_of_tools(tool_server) -> None:
    @rt.tool
    def get_weather(city: str) -> str:
        return "registered"

    def explode() -> str:
        return "a plain function, never registered"

    with open_session(tool_server, tools=[explode]) as s:
        assert [t["name"] for t in s.config["tools"]] == ["explode"]
        assert s.ask("weather in Rome") == "You said: weather in Rome"  # not offered
        assert s.ask("explode") == "The tool returned a plain function, never registered."
    with open_session(tool_server, tools=False) as s:
        assert "tools" not in s.config or s.config["tools"] == []
        assert s.ask("explode") == "You said: explode"


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", "The tool returned sunny."),
    ("none", "You said: weather in Lima"),
    ("required", "The tool returned sunny."),
    ("get_weather", "The tool returned sunny."),
])
def test_tool_choice_end_to_end(tool_server, choice, expected) -> None:
    @rt.tool
    def get_weather(city: str = "here") -> str:
        return "sunny"

    with open_session(tool_server, tool_choice=choice) as s:
        assert s.ask("weather in Lima") == expected
        if choice in ("required", "get_weather"):
            # forced even when the words do not ask for it
            s.update(tool_choice=choice)
            assert s.ask("hello") == "The tool returned sunny."


class LoopingEngine:
    """A model that calls a tool every time it may, to test the round cap."""

    def __init__(self) -> None:
        self.choices: list[object] = []

    async def reply(self, context: ReplyContext):  # type: ignore[no-untyped-def]
        self.choices.append(context.tool_choice)
        chunk: ReplyChunk = TextDelta("Done.") if context.tool_choice == "none" else ToolCall(
            "again", "{}")
        yield chunk


def test_endless_tool_rounds_are_capped() -> None:
    @rt.tool
    def again() -> str:
        return "ok"

    engine = LoopingEngine()
    with LocalServer(engine=engine) as srv, rt.RealtimeSession(
        "local", url=srv.url, output_modalities=["text"], max_tool_rounds=3
    ) as s:
        assert s.ask("go") == "Done."
    assert engine.choices == ["auto"] * 4 + ["none"]
