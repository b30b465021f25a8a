"""Runs as recordings, against the local server with the real offline engines: a scenario made
from a recording plays its caller's turns again, ``run.replay(i)`` sends a conversation again
with the run's tools, an interruption typed over a spoken reply cuts it, and a spoken run
(Flite callers through server VAD and PocketSphinx) is repeatable run after run."""

from __future__ import annotations

from typing import Any

import rtwidget as rt
from rtwidget.server import LocalServer


def weather() -> Any:
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        return {"city": city, "sky": "sunny", "celsius": 21}

    return rt.build_tool(get_weather)


def test_a_scenario_from_a_recording_plays_its_callers_turns_again(
        rt_server: LocalServer, tmp_path: Any) -> None:
    agent = {"instructions": "Be brief.", "tools": [weather()], "provider": "local",
             "url": rt_server.url, "output_modalities": ["text"]}
    lines = ["Hello there.", "What is the weather in Paris?"]
    first = rt.EvalSuite([rt.Scenario("talk", user=lines)]).run(
        agent=agent, mode="text", record=tmp_path / "first", progress=False)
    path = first.df.loc[0, "recording"]
    scenario = rt.Scenario.from_recording(
        path, checks=[rt.checks.tool_called("get_weather", {"city": "Paris"})])
    assert scenario.user == lines and scenario.name == "0000-talk-r0"
    again = rt.EvalSuite([scenario]).run(agent=agent, mode="text",
                                         record=tmp_path / "again", progress=False)
    assert again.turns["user"].tolist() == lines
    assert again.df["passed"].tolist() == [True], again.checks.to_string()
    # the same caller and agent: the same conversation, word for word
    assert again.conversation(0)["text"].tolist() == first.conversation(0)["text"].tolist()

    replay = first.replay(0, instructions="Be brief.", output_modalities=["text"],
                          temperature=0.0)
    try:
        assert not replay.problems
        calls = replay.df[replay.df["type"] == "function_call"]
        assert calls["tool_name"].tolist() == ["get_weather"]
        assert replay.diff(only_changed=True).empty, replay.diff().to_string()
    finally:
        replay.close()


def test_an_interruption_typed_over_a_spoken_reply_cuts_it(voiced_server: LocalServer) -> None:
    # mode="text" types the caller's words, but the agent still speaks: the interruption comes
    # once 800 ms of the reply's audio has arrived, and the session's barge-in rule cuts it there
    agent = {"instructions": "Be brief.", "tools": [weather()], "provider": "local",
             "url": voiced_server.url}
    suite = rt.EvalSuite([rt.Scenario("barge-in", user=[
        "Tell me a long story about a dragon.",
        rt.Interrupt("Stop. What is the weather in London?", after_ms=800)],
        checks=[rt.checks.tool_called("get_weather", {"city": "London"})])])
    run = suite.run(agent=agent, mode="text", progress=False)
    assert run.df["problems"].tolist() == [""]
    assert run.df["interrupted"].tolist() == [1]
    assert run.df["passed"].tolist() == [True], run.checks.to_string()
    assert run.turns["kind"].tolist() == ["turn", "interrupt"]
    df = run.conversation(0)
    story = df[(df["role"] == "assistant") & (df["type"] == "message")].iloc[0]
    assert story["truncated_ms"] == 800 and story["audio_out_s"] * 1000 == 800


def test_a_spoken_run_is_repeatable(rt_server: LocalServer) -> None:
    agent = {"instructions": "Be brief.", "tools": [weather()], "provider": "local",
             "url": rt_server.url, "output_modalities": ["text"]}
    suite = rt.EvalSuite([
        rt.Scenario(f"weather-{city}", user=["Hello there.", f"What is the weather in {city}?"],
                    checks=[rt.checks.tool_called("get_weather", {"city": city})])
        for city in ("Paris", "Tokyo")])
    runs = [suite.run(agent=agent, mode="spoken", progress=False) for _ in range(2)]
    first = runs[0].repeatable()
    assert (runs[0].df["problems"] == "").all(), first.to_string()
    assert runs[1].repeatable().equals(first), (first, runs[1].repeatable())
    assert runs[1].turns["heard"].tolist() == runs[0].turns["heard"].tolist()
    assert [o.df["text"].tolist() for o in runs[1].outcomes] == \
           [o.df["text"].tolist() for o in runs[0].outcomes]
