"""OpenAI's GA session fields as typed keywords: built field by field into the GA reference's
shapes (fixtures with their sources), refused with a clear error when malformed or sent to a
provider that does not document them (Inworld)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeSessionCreateRequest

from rtwidget.protocol.configuration import check_session_for, session_config
from rtwidget.protocol.errors import ConfigError

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" /
                      "openai_ga_session_fields.json").read_text())["fields"]


@pytest.mark.parametrize("entry", FIXTURE, ids=[next(iter(e["session"])) + "-" +
                                                str(i) for i, e in enumerate(FIXTURE)])
def test_each_ga_field_is_built_as_the_reference_shapes_it(entry: dict[str, Any]) -> None:
    session = session_config(**entry["keywords"])
    assert session == {"type": "realtime", **entry["session"]}
    model = RealtimeSessionCreateRequest.model_validate(session, strict=True)
    assert not model.model_extra
    assert model.model_dump(exclude_unset=True, mode="json") == session
    for provider in ("openai", "azure", "local", "url"):
        check_session_for(provider, session)  # accepted


@pytest.mark.parametrize("entry", FIXTURE, ids=[str(i) for i in range(len(FIXTURE))])
def test_inworld_is_refused_each_ga_field_before_anything_is_sent(entry: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="Inworld's Realtime API documents no session"):
        check_session_for("inworld", session_config(**entry["keywords"]))


def test_the_shorthands_and_the_full_objects_agree() -> None:
    full = {"type": "retention_ratio", "retention_ratio": 0.5,
            "token_limits": {"post_instructions": 800}}
    assert session_config(truncation=full) == session_config(truncation=0.5,
                                                             post_instructions=800)
    assert session_config(reasoning={"effort": "high"}) == session_config(reasoning="high")
    assert session_config(prompt="pmpt_1") == {"type": "realtime", "prompt": {"id": "pmpt_1"}}
    assert session_config(include="item.input_audio_transcription.logprobs")["include"] == [
        "item.input_audio_transcription.logprobs"]
    assert session_config(tracing=None) == {"type": "realtime", "tracing": None}


@pytest.mark.parametrize(("keywords", "words"), [
    ({"truncation": 1.5}, "from 0 to 1"),
    ({"truncation": "sometimes"}, "'auto', 'disabled'"),
    ({"truncation": "auto", "post_instructions": 10}, "retention ratio"),
    ({"post_instructions": 10}, "retention ratio"),
    ({"truncation": 0.5, "post_instructions": 0}, "positive"),
    ({"truncation": {"type": "retention_ratio", "retention_ratio": 0.5, "x": 1}}, "no field"),
    ({"reasoning": "extreme"}, "minimal, low, medium, high, xhigh"),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, "effort only"),
    ({"prompt": {"version": "1"}}, "needs an id"),
    ({"prompt": {"id": "p", "vars": {}}}, "no field 'vars'"),
    ({"prompt": {"id": "p", "variables": {"a": 1}}}, "strings"),
    ({"parallel_tool_calls": "yes"}, "True or False"),
    ({"tracing": "on"}, "'auto', None"),
    ({"tracing": {"workflow": "x"}}, "no field 'workflow'"),
    ({"include": ["logprobs"]}, "item.input_audio_transcription.logprobs"),
])
def test_malformed_values_are_refused_with_what_is_expected(keywords: dict[str, Any],
                                                            words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        session_config(**keywords)
