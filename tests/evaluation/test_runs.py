"""Suites run against the local server with the real offline engines (SmolLM2-135M, Flite,
PocketSphinx, Silero VAD; the spoken barge-in with scripted words): spoken callers reach the
tools and barge in, runs repeat exactly,
a broken tool is flagged by ``compare``, and a Dask cluster gives the in-process results."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer

CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid"]


def weather(sky: str = "sunny") -> Any:
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        return {"city": city, "sky": sky, "celsius": 21}

    return rt.build_tool(get_weather)


def broken_weather() -> Any:
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        raise RuntimeError("the weather service is down")

    return rt.build_tool(get_weather)


def ask_weather(city: str) -> rt.Scenario:
    return rt.Scenario(f"weather-{city}", user=[f"What is the weather in {city}?"],
                       checks=[rt.checks.tool_called("get_weather", {"city": city}),
                               rt.checks.no_errors()])


@pytest.fixture(scope="module")
def agent(rt_server: LocalServer) -> Iterator[dict[str, Any]]:
    yield {"instructions": "Be brief.", "tools": [weather()], "provider": "local",
           "url": rt_server.url, "output_modalities": ["text"]}


def test_spoken_callers_reach_the_tools_and_a_barge_in_cuts_the_reply(
        voiced_server: LocalServer, tmp_path: Any) -> None:
    # real voice, ears and VAD; scripted words, so the story is long enough on every CPU
    suite = rt.EvalSuite([
        rt.Scenario("weather", user=["What is the weather in Paris?", "Thank you, goodbye."],
                    checks=[rt.checks.tool_called("get_weather", {"city": "Paris"}),
                            rt.checks.said("sunny"), rt.checks.no_errors()]),
        rt.Scenario("barge-in", user=["Tell me a long story about a dragon.",
                                      rt.Interrupt("Stop. What is the weather in London?",
                                                   after_ms=800)],
                    checks=[rt.checks.tool_called("get_weather", {"city": "London"})]),
    ])
    agent = {"instructions": "Be brief.", "tools": [weather()], "provider": "local",
             "url": voiced_server.url}
    run = suite.run(agent=agent, record=tmp_path / "run", progress=False)
    assert run.df["problems"].tolist() == ["", ""]
    assert run.df["passed"].tolist() == [True, True], run.checks.to_string()
    heard = run.turns["heard"].tolist()
    assert heard[0] == "what is the weather in paris"   # through VAD and the transcriber
    assert "london" in heard[3]
    assert run.df["interrupted"].tolist() == [0, 1]
    cut = run.conversation(1)
    story = cut[(cut["role"] == "assistant") & (cut["type"] == "message")].iloc[0]
    assert story["truncated_ms"] >= 800 and story["audio_out_s"] * 1000 == story["truncated_ms"]
    assert run.audio(0) and run.play(0) is not None
    assert run.recording(1).df["truncated_ms"].notna().any()


def test_three_runs_of_a_suite_give_the_same_results(agent: dict[str, Any]) -> None:
    suite = rt.EvalSuite([
        ask_weather("Paris"),
        rt.Scenario("small-talk", user=["Hello, who are you?", "Tell me a joke.",
                                        rt.Branch({"joke|funny": "Ha. Bye."}, default="Bye.")],
                    checks=[rt.checks.no_errors(), rt.checks.max_turns(3)]),
    ])
    runs = [suite.run(agent=agent, repeats=2, mode="text", progress=False) for _ in range(3)]
    first = runs[0].repeatable()
    assert first["passed"].all(), first.to_string()
    for run in runs[1:]:
        assert run.repeatable().equals(first)
        assert [o.df["text"].tolist() for o in run.outcomes] == \
               [o.df["text"].tolist() for o in runs[0].outcomes]


def test_compare_flags_a_broken_tool_as_significant(agent: dict[str, Any]) -> None:
    # 5 x 3 with SmolLM2 here; 20 x 5 with scripted replies in test_compare_at_scale.py
    suite = rt.EvalSuite([ask_weather(city) for city in CITIES])
    good = suite.run(agent=agent, repeats=3, mode="text", progress=False)
    bad = suite.run(agent=dict(agent, tools=[broken_weather()]), repeats=3, mode="text",
                    progress=False)
    assert good.pass_rate() >= 0.6  # SmolLM2 gets some cities' arguments wrong, every time
    assert bad.pass_rate("weather-Paris") == 0.0
    cmp = rt.compare(good, bad)
    errors = cmp.checks.set_index("name").loc["no_errors"]
    assert errors["significant"] and errors["delta"] < -0.9 and errors["p_value"] < 1e-4
    assert errors["ci_b_high"] < errors["ci_a_low"]
    assert len(cmp.flipped) == int(good.df["passed"].sum())
    assert cmp.flipped["passed_a"].all() and not cmp.flipped["passed_b"].any()
    diff = cmp.diff(0)
    assert len(diff) and "significantly worse" in repr(cmp)


def test_an_executor_and_a_dask_cluster_give_the_in_process_results(
        agent: dict[str, Any]) -> None:
    distributed = pytest.importorskip("distributed")
    suite = rt.EvalSuite([ask_weather("Paris"), ask_weather("Tokyo")])
    here = suite.run(agent=agent, repeats=2, mode="text", progress=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threads = suite.run(agent=agent, repeats=2, mode="text", executor=pool,
                            progress=False)
    assert threads.repeatable().equals(here.repeatable())
    # each worker process starts its own local server: no url in the agent
    own = {k: v for k, v in agent.items() if k not in ("url", "provider")}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        spread = suite.run(agent=own, repeats=2, mode="text", executor=client, progress=False)
        pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2
    assert spread.repeatable().equals(here.repeatable()), (spread.df, here.df)


def test_a_users_pytest_asserts_on_the_pass_rate(agent: dict[str, Any]) -> None:
    run = rt.EvalSuite([ask_weather("Berlin")]).run(agent=agent, repeats=2, mode="text",
                                                      progress=False)
    assert run.pass_rate("weather-Berlin") >= 0.9
    assert run.pass_rate(check="tool:get_weather") == 1.0


def test_a_simulated_caller_and_a_judge_on_the_local_server(
        rt_server: LocalServer, agent: dict[str, Any]) -> None:
    caller = rt.SimulatedUser(persona="a traveller who wants the weather in Madrid",
                              provider="local", url=rt_server.url,
                              opening="What is the weather in Madrid?")
    judge = rt.Judge("The agent tells the caller the weather.", provider="local",
                     url=rt_server.url)
    suite = rt.EvalSuite([rt.Scenario("simulated", user=caller, goal="the weather in Madrid",
                                      max_turns=2, checks=[rt.checks.max_turns(2)])],
                         judge=judge)
    run = suite.run(agent=agent, mode="text", progress=False)
    row = run.df.iloc[0]
    assert 1 <= row["turns"] <= 2 and row["tool_calls"] >= 1
    assert run.turns["user"].iloc[0] == "What is the weather in Madrid?"
    assert "judge" in run.df and isinstance(row["judge_reason"], str) and row["judge_reason"]
