"""Slow tools against the local server: a filler while the user waits, a barge-in or a typed
turn that cancels the calls, an explicit cancel, background tools whose results come later
without colliding with a reply, duplicate calls answered once, and progress on the call's row."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import RULES, eventually, frames, utterance

import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine

WAIT_RULES = [
    *RULES,
    Rule(r"twice", calls=[("lookup", {"q": "x"}), ("lookup", {"q": "x"})]),
    Rule(r"slow and poll", calls=[("slow", {}), ("poll", {})]),
    Rule(r"slow and nothing", calls=[("slow", {}), ("nothing", {})]),
    Rule(r"slow and quick", calls=[("slow", {}), ("get_weather", {"city": "Paris"})]),
    Rule(r"stream", calls=[("steps", {})]),
    # ~10 s: long enough that a result coming while it is told always finds it under way
    Rule(r"epic", say=" ".join(f"Verse {i} of the epic." for i in range(1200))),
]


@pytest.fixture
def wait_server() -> Iterator[LocalServer]:
    # pace: the replies take time to stream, so a result can arrive while the agent speaks
    with LocalServer(engine=ScriptedReplyEngine(rules=WAIT_RULES), pace=0.002) as srv:
        yield srv


def open_session(server: LocalServer, tools: list[Any], **options: Any) -> rt.RealtimeSession:
    return rt.RealtimeSession("local", url=server.url, tools=[rt.build_tool(t) if callable(t)
                                                              else t for t in tools], **options)


def responses(session: rt.RealtimeSession) -> list[Any]:
    return list(session.conversation.responses.values())


def fillers(session: rt.RealtimeSession) -> list[Any]:
    return [r for r in responses(session) if (r.metadata or {}).get("rtwidget") == "filler"]


def said(session: rt.RealtimeSession, start: str) -> list[Any]:
    return [i for i in session.conversation if (i.display_text or "").startswith(start)]


def outputs(session: rt.RealtimeSession, call_id: str) -> int:
    return sum(1 for i in session.conversation
               if i.type == "function_call_output" and i.call_id == call_id)


def test_a_slow_tool_gets_a_spoken_filler_before_its_result_and_reply(wait_server) -> None:
    done_at: list[float] = []

    def get_weather(city: str) -> dict:
        """Current weather."""
        time.sleep(3)
        done_at.append(time.time())
        return {"city": city, "sky": "sunny"}

    with open_session(wait_server, [get_weather]) as s:
        reply = s.ask("What is the weather in Paris?", timeout=30)
        df = s.df
        filler = fillers(s)
    assert "sunny" in reply
    assert len(filler) == 1 and filler[0].out_of_band and filler[0].status == "completed"
    said = df[df["response_id"] == filler[0].id]
    assert said["text"].tolist() == ["One moment, let me check that."]
    assert (said["audio_out_s"] > 0).all()  # spoken: audio came for it
    call = df[df["type"] == "function_call"].iloc[0]
    reply_row = df[(df["type"] == "message") & (df["text"] == reply)].iloc[0]
    # the order a listener hears: the filler's audio, then the tool's end, then the reply
    assert filler[0].first_audio_at < done_at[0]
    assert filler[0].done_at < reply_row["created_at"].timestamp()
    assert call["tool_status"] == "done"


def test_no_filler_for_a_quick_tool_or_when_turned_off(wait_server) -> None:
    def get_weather(city: str) -> str:
        """Current weather."""
        time.sleep(1.2)
        return "sunny"

    def quick(city: str) -> str:
        """Current weather."""
        return "sunny"

    with open_session(wait_server, [rt.build_tool(quick, name="get_weather")]) as s:
        s.ask("What is the weather in Paris?")
        assert fillers(s) == []
    with open_session(wait_server, [get_weather], filler_after=None) as s:
        s.ask("What is the weather in Paris?")
        assert fillers(s) == []
    off = rt.build_tool(get_weather, filler_after=None)
    with open_session(wait_server, [off]) as s:
        s.ask("What is the weather in Paris?")
        assert fillers(s) == []


def test_speech_over_the_wait_cancels_an_async_and_a_polling_sync_tool(wait_server) -> None:
    cancelled: dict[str, float] = {}
    started = threading.Event()

    async def slow() -> str:
        """Slow."""
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled["async"] = time.monotonic()
            raise
        return "never"

    def poll(ctx: rt.CallContext) -> str:
        """Polls."""
        while not ctx.wait(0.01):
            pass
        cancelled["sync"] = time.monotonic()
        return "never sent"

    with open_session(wait_server, [slow, rt.build_tool(poll, name="poll")],
                      filler_after=None) as s:
        s.say("slow and poll please")
        assert started.wait(10)
        calls = eventually(lambda: s.running_tools if len(s.running_tools) == 2 else None)
        before = len(responses(s))
        heard = s.expect("input_audio_buffer.speech_started", timeout=10)
        for frame in frames(utterance("stop that")):
            s.send_audio(frame)
        heard.wait()
        eventually(lambda: len(cancelled) == 2, what="both tools cancelled")
        eventually(lambda: not s.running_tools)
        # the user's new turn is answered; nothing else is asked for
        eventually(lambda: [r for r in responses(s)[before:] if r.status == "completed"])
        eventually(lambda: all(r.status != "in_progress" for r in responses(s)))
        assert len(responses(s)) == before + 1
        for call_id in calls:
            assert outputs(s, call_id) == 0  # a cancelled call's output is never sent
            assert s.conversation.tool_outcomes[call_id]["status"] == "cancelled"
        df = s.df
    assert set(df.loc[df["type"] == "function_call", "tool_status"]) == {"cancelled"}
    assert not [e for e in s.errors if e.code]


def test_a_typed_turn_cancels_the_wait_and_is_answered(wait_server) -> None:
    seen = threading.Event()

    async def slow() -> str:
        """Slow."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.set()
            raise
        return "never"

    def get_weather(city: str) -> str:
        """Weather."""
        return f"sunny in {city}"

    with open_session(wait_server, [slow, get_weather], output_modalities=["text"]) as s:
        s.say("slow and quick")
        # the quick call has been answered and the slow one runs (the calls come one by one)
        eventually(lambda: "done" in s.df["tool_status"].dropna().tolist()
                   and len(s.running_tools) == 1)
        s.say("Never mind. Hello there.")  # a typed turn that interrupts, as in the widget
        assert seen.wait(5)
        eventually(lambda: [i for i in s.conversation if i.text == "You said: Never mind. "
                            "Hello there." and i.status == "completed"])
        df = s.df
        assert not s.errors
    # the quick call of the same response is answered; the slow one is not; no follow-up
    assert df["tool_status"].dropna().tolist() == ["cancelled", "done"]
    assert df["type"].tolist().count("function_call_output") == 1


def test_a_tool_that_opts_out_keeps_running_and_is_answered_after_the_new_turn(
        wait_server) -> None:
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(1.0)
        return "the slow answer"

    tool = rt.build_tool(slow, cancel_on_interruption=False)

    def nothing() -> str:
        """Nothing."""
        return "ok"

    with open_session(wait_server, [tool, nothing], output_modalities=["text"],
                      filler_after=None) as s:
        s.say("slow and nothing")
        eventually(lambda: s.running_tools)
        s.say("Hello there.")
        reply = eventually(lambda: [i.text for i in s.conversation if i.role == "assistant"
                                    and "slow answer" in (i.display_text or "")], timeout=15)
        assert reply
        eventually(lambda: all(r.status != "in_progress" for r in responses(s)))
        assert not s.errors


def test_cancel_tool_tells_the_model(wait_server) -> None:
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(30)
        return "never"

    def nothing() -> str:
        """Nothing."""
        return "ok"

    with open_session(wait_server, [slow, nothing], output_modalities=["text"],
                      filler_after=None) as s:
        s.say("slow and nothing")
        call_id = eventually(lambda: s.running_tools)[0]
        assert s.cancel_tool(call_id) and not s.cancel_tool(call_id)
        reply = eventually(lambda: [i.text for i in s.conversation if i.role == "assistant"
                                    and i.type == "message" and i.status == "completed"])
        output = next(i.output for i in s.conversation
                      if i.type == "function_call_output" and i.call_id == call_id)
    assert json.loads(output)["error_type"] == "cancelled"
    assert "slow was cancelled by the user" in reply[0]


def test_a_background_result_arrives_while_the_agent_speaks_and_waits_its_turn(
        wait_server) -> None:
    release = threading.Event()

    def make_report(topic: str, ctx: rt.CallContext) -> dict:
        """A long report."""
        ctx.progress("collecting", 0.5)
        release.wait(20)
        return {"topic": topic, "pages": 12}

    report = rt.build_tool(make_report, background=True)
    with open_session(wait_server, [report]) as s:
        first = s.ask("Make a report on sales.", timeout=20)
        assert "started" in first  # the model was told at once; the talk goes on
        call_id = next(i.call_id for i in s.conversation if i.type == "function_call")
        eventually(lambda: s.df["tool_progress"].dropna().tolist() == ["collecting 50%"])
        assert s.df.loc[s.df["type"] == "function_call", "tool_status"].tolist() == ["running"]
        s.say("Tell me a long story.")
        eventually(lambda: any(r.status == "in_progress" for r in responses(s)))
        release.set()  # the result comes while the story is being told
        update = eventually(lambda: [i for i in s.conversation if i.role == "assistant" and
                                     i.status == "completed" and
                                     (i.display_text or "").startswith("An update:")], timeout=20)
        story = said(s, "Sentence number")[0]
        assert story.status == "completed"  # not cut by the result
        assert "pages" in update[0].display_text
        assert outputs(s, call_id) == 1
        assert s.conversation.tool_outcomes[call_id].get("delivered")
        assert not s.errors


def test_silent_and_interrupting_background_results(wait_server) -> None:
    def make_report(topic: str) -> str:
        """Report."""
        return f"{topic}: 12 pages"

    silent = rt.build_tool(make_report, background=True, deliver="silent")
    with open_session(wait_server, [silent], output_modalities=["text"]) as s:
        s.ask("Make a report on sales.")
        note = eventually(lambda: [i for i in s.conversation if i.role == "system"])
        count = len(responses(s))
        time.sleep(0.3)
        assert len(responses(s)) == count and "12 pages" in note[0].text

    release = threading.Event()

    def make_report_later(topic: str) -> str:
        """Report."""
        release.wait(20)
        return f"{topic}: 12 pages"

    loud = rt.build_tool(make_report_later, name="make_report", background=True,
                         deliver="interrupt")
    with open_session(wait_server, [loud], output_modalities=["text"]) as s:
        s.ask("Make a report on sales.")
        s.say("Tell me the epic.")
        eventually(lambda: said(s, "Verse"))
        release.set()  # the result comes while the story is being told, and cuts it
        eventually(lambda: said(s, "An update"), timeout=20)
        story = said(s, "Verse")[0]
        assert story.status == "incomplete"  # cut for the result
        assert not [e for e in s.errors if e.code]


def test_a_duplicate_call_is_answered_from_the_running_one(wait_server) -> None:
    runs = []

    def lookup(q: str) -> str:
        """Look up."""
        runs.append(q)
        time.sleep(0.3)
        return f"found {q}"

    with open_session(wait_server, [lookup], output_modalities=["text"]) as s:
        reply = s.ask("Look it up twice.")
        df = s.df
    assert runs == ["x"]
    assert df["output"].dropna().tolist() == ["found x", "found x"]
    assert reply == "The tool returned found x; found x."


def test_progress_from_an_async_generator_and_rows_in_flight(wait_server) -> None:
    gate = asyncio.Event()
    loop_holder: list[asyncio.AbstractEventLoop] = []

    async def steps() -> AsyncIterator[Any]:
        """Steps."""
        loop_holder.append(asyncio.get_running_loop())
        yield "reading"
        yield 0.5
        await gate.wait()
        yield {"rows": 3}

    with open_session(wait_server, [steps], output_modalities=["text"],
                      filler_after=None) as s:
        s.say("stream it")
        eventually(lambda: s.df["tool_progress"].dropna().tolist() == ["reading 50%"])
        assert s.df["tool_status"].dropna().tolist() == ["running"]
        loop_holder[0].call_soon_threadsafe(gate.set)
        eventually(lambda: s.df["tool_status"].dropna().tolist() == ["done"])
        reply = eventually(lambda: [i.text for i in s.conversation if i.role == "assistant"
                                    and i.type == "message" and i.status == "completed"])
    assert reply == ['The tool returned {"rows":3}.']


def test_a_recorded_session_with_a_filler_and_a_background_result_replays(
        wait_server, tmp_path) -> None:
    def get_weather(city: str) -> str:
        """Weather."""
        time.sleep(1.5)
        return f"sunny in {city}"

    def make_report(topic: str) -> str:
        """Report."""
        time.sleep(0.2)
        return f"{topic}: 12 pages"

    tools = [rt.build_tool(get_weather), rt.build_tool(make_report, background=True)]
    with open_session(wait_server, tools, record=tmp_path / "rec") as s:
        s.ask("What is the weather in Paris?")
        s.ask("Make a report on sales.")
        eventually(lambda: said(s, "An update") and all(
            r.status != "in_progress" for r in responses(s)))
        first = s.df
    recording = rt.load_recording(tmp_path / "rec")
    replay = recording.replay(provider="local", url=wait_server.url, tools=tools)
    try:
        eventually(lambda: len(said(replay.session, "An update")) == 1, timeout=20)
        eventually(lambda: all(r.status != "in_progress"
                               for r in replay.session.conversation.responses.values()))
        again = replay.df
        assert not replay.problems
        # the new run's own filler and background result, once each: none sent again
        for df in (first, again):
            assert (df["text"] == "One moment, let me check that.").sum() == 1
            assert (df["role"] == "system").sum() == 1
        assert replay.diff(only_changed=True).query("aspect == 'tool calls'").empty
    finally:
        replay.close()
