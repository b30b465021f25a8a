"""A broken tool flagged by ``compare`` at the issue's scale: 20 scenarios x 5 repeats per run.

Two hundred conversations with SmolLM2 would take minutes on CI's two cores, so this test runs
them in ``mode="text"`` against a local server whose replies come from a scripted engine (the
same sessions, tools, recordings and statistics; only the model's words are fixed). The
smaller ``test_compare_flags_a_broken_tool_as_significant`` in ``test_runs.py`` does the same
with SmolLM2 and 5 x 3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer
from rtwidget.server.engines import Rule, ScriptedReplyEngine

CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Dublin",
          "Oslo", "Prague", "Warsaw", "Athens", "Cairo", "Delhi", "Lima", "Sydney", "Toronto",
          "Boston", "Chicago"]


@pytest.fixture(scope="module")
def scripted() -> Iterator[LocalServer]:
    engine = ScriptedReplyEngine(
        rules=[Rule(r"weather in (\w+)", calls=[("get_weather", {"city": "{0}"})])],
        after_tool="It is {output}.")
    with LocalServer(engine=engine) as server:
        yield server


def tool(broken: bool) -> Any:
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        if broken:
            raise RuntimeError("the weather service is down")
        return {"city": city, "sky": "sunny"}

    return rt.build_tool(get_weather)


def test_a_broken_tool_is_flagged_with_20_scenarios_by_5_repeats(
        scripted: LocalServer, tmp_path: Any) -> None:
    suite = rt.EvalSuite([
        rt.Scenario(f"weather-{city}", user=[f"What is the weather in {city}?"],
                    checks=[rt.checks.tool_called("get_weather", {"city": city}),
                            rt.checks.said("sunny"), rt.checks.no_errors()])
        for city in CITIES])
    agent = {"instructions": "Be brief.", "tools": [tool(False)], "provider": "local",
             "url": scripted.url, "output_modalities": ["text"]}
    good = suite.run(agent=agent, repeats=5, mode="text", record=tmp_path / "good",
                     concurrency=8, progress=False)
    bad = suite.run(agent=dict(agent, tools=[tool(True)]), repeats=5, mode="text",
                    record=tmp_path / "bad", concurrency=8, progress=False)
    assert len(good.df) == len(bad.df) == 100
    assert good.pass_rate() == 1.0 and bad.pass_rate() == 0.0, bad.checks.head().to_string()
    cmp = rt.compare(good, bad)
    checks = cmp.checks.set_index("name")
    assert checks.loc["tool:get_weather", "delta"] == 0  # still called, with the right city
    assert not checks.loc["tool:get_weather", "significant"]
    said = checks.loc["said:sunny"]
    assert said["significant"] and said["p_value"] < 1e-50
    assert said["ci_b_high"] < 0.05 < 0.95 < said["ci_a_low"]
    assert len(cmp.flipped) == 100
    assert cmp.scenarios["significant"].all()  # 5 vs 0 of 5 each: p = 1/126
    assert "significantly worse" in repr(cmp)
