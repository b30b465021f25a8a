"""Checks, branches, the judge's parsing and the statistics, on DataFrames and tables made by
hand (no server)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import rtwidget as rt
from rtwidget.data.frame import COLUMNS, coerce
from rtwidget.evaluation.checks import Transcript
from rtwidget.evaluation.compare import fisher_exact, wilson
from rtwidget.evaluation.judge import parse_verdict


def conversation(*rows: dict) -> pd.DataFrame:
    return coerce(pd.DataFrame(list(rows)).reindex(columns=list(COLUMNS)))


CALL = conversation(
    {"role": "user", "type": "message", "text": "weather in Paris?"},
    {"role": "assistant", "type": "function_call", "tool_name": "get_weather",
     "arguments": '{"city": "paris", "days": 2}'},
    {"role": "tool", "type": "function_call_output", "tool_name": "get_weather",
     "output": '{"sky": "sunny"}'},
    {"role": "assistant", "type": "message", "text": "It is sunny in Paris."},
)


def test_tool_called_matches_a_dict_a_predicate_and_a_json_schema() -> None:
    t = Transcript(CALL, user_turns=1, latencies=[0.5])
    assert rt.checks.tool_called("get_weather", {"city": "Paris"})(t)[0]
    assert not rt.checks.tool_called("get_weather", {"city": "London"})(t)[0]
    assert rt.checks.tool_called("get_weather", lambda a: a["days"] == 2)(t)[0]
    schema = {"type": "object", "properties": {"days": {"type": "integer", "maximum": 3}},
              "required": ["days"]}
    assert rt.checks.tool_called("get_weather", schema)(t)[0]
    assert not rt.checks.tool_called("get_weather", dict(schema, properties={
        "days": {"type": "integer", "maximum": 1}}))(t)[0]
    passed, reason = rt.checks.tool_called("book_flight")(t)
    assert not passed and "not called" in reason
    assert rt.checks.tool_called("get_weather", times=1)(t)[0]


def test_words_errors_turns_latency_and_a_function_of_the_frame() -> None:
    t = Transcript(CALL, user_turns=3, latencies=[0.5, 2.5, math.nan])
    assert rt.checks.said("sunny", "paris")(t)[0]
    assert not rt.checks.said("rain")(t)[0]
    assert rt.checks.never_said("rain")(t)[0]
    assert not rt.checks.never_said("Sunny")(t)[0]
    assert rt.checks.no_errors()(t)[0]
    assert not rt.checks.no_errors()(Transcript(CALL, errors=[{"message": "boom"}]))[0]
    assert not rt.checks.max_turns(2)(t)[0] and rt.checks.max_turns(3)(t)[0]
    passed, reason = rt.checks.latency_budget(2.0)(t)
    assert not passed and "2.5" in reason and "nan" in reason  # a turn with no reply fails
    mine = rt.checks.check(lambda df: (len(df) == 4, "four rows"), name="four")
    assert mine.name == "four" and mine(t) == (True, "four rows")
    broken = rt.checks.check(lambda df: df["nope"].any())
    passed, reason = broken(t)
    assert not passed and "KeyError" in reason


def test_scenarios_refuse_what_they_cannot_play() -> None:
    with pytest.raises(rt.ConfigError, match="name"):
        rt.Scenario("", user=["hi"])
    with pytest.raises(rt.ConfigError, match="max_turns"):
        rt.Scenario("x", user=["hi"], max_turns=0)
    with pytest.raises(rt.ConfigError, match="turn must be"):
        rt.Scenario("x", user=["hi", 3])
    with pytest.raises(rt.ConfigError, match="not a check"):
        rt.Scenario("x", user=["hi"], checks=[lambda df: True])
    with pytest.raises(rt.ConfigError, match="differ"):
        rt.EvalSuite([rt.Scenario("x", user=["a"]), rt.Scenario("x", user=["b"])])
    suite = rt.EvalSuite([rt.Scenario("x", user="hi")])
    with pytest.raises(rt.ConfigError, match="mode"):
        suite.run(agent={}, mode="video")


def test_a_branch_follows_what_the_agent_said() -> None:
    branch = rt.Branch({r"\bsunny\b": "Great.", "rain": ["Umbrella?", "Thanks."]},
                       default="Sorry?")
    assert branch.choose("It is SUNNY") == ["Great."]
    assert branch.choose("rain later") == ["Umbrella?", "Thanks."]
    assert branch.choose("no idea") == ["Sorry?"]
    assert rt.Branch({"x": "y"}).choose("nothing") == []


def test_the_judge_verdict_is_the_first_pass_or_fail() -> None:
    assert parse_verdict("PASS: the agent called the tool.") == rt.evaluation.Verdict(
        True, "the agent called the tool")
    assert parse_verdict("Verdict - fail. It never answered.").passed is False
    undecided = parse_verdict("I think it was fine.")
    assert undecided.passed is None and "fine" in undecided.reason
    with pytest.raises(rt.ConfigError):
        rt.Judge("  ")


def test_fisher_and_wilson_give_the_textbook_values() -> None:
    # the lady tasting tea: [[3, 1], [1, 3]], two-sided p = 0.4857
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(0.485714, abs=1e-5)
    assert fisher_exact(10, 0, 0, 10) == pytest.approx(1.0825e-05, rel=1e-3)
    assert fisher_exact(5, 5, 5, 5) == pytest.approx(1.0)
    assert fisher_exact(0, 0, 0, 0) == 1.0
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 10)[0] == pytest.approx(0.0)
    assert all(math.isnan(x) for x in wilson(0, 0))
