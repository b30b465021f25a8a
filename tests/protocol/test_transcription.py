"""The transcription settings keywords, languages and delay: built as the GA reference shapes
them (fixtures from OpenAI's examples, with their sources), refused with the field and what it
takes when malformed, sent to a model that does not document them, or sent to Inworld."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import AudioTranscription, RealtimeSessionCreateRequest

from rtwidget.protocol.configuration import check_session_for, session_config
from rtwidget.protocol.errors import ConfigError
from rtwidget.protocol.transcription import TranscriptionError, check_transcription

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" /
                      "openai_transcription_settings.json").read_text())


@pytest.mark.parametrize("entry", FIXTURE["accepted"],
                         ids=[e["transcription"]["model"] for e in FIXTURE["accepted"]])
def test_each_documented_setting_is_built_as_the_reference_shapes_it(entry: dict[str, Any]
                                                                      ) -> None:
    session = session_config(transcription=entry["transcription"])
    assert session == {"type": "realtime",
                       "audio": {"input": {"transcription": entry["transcription"]}}}
    model = RealtimeSessionCreateRequest.model_validate(session, strict=True)
    assert model.model_dump(exclude_unset=True, mode="json") == session
    AudioTranscription.model_validate(entry["transcription"], strict=True)
    for provider in ("openai", "azure", "local", "url"):
        check_session_for(provider, session)  # accepted


@pytest.mark.parametrize("entry", FIXTURE["accepted"], ids=str)
def test_inworld_is_refused_the_settings_it_does_not_document(entry: dict[str, Any]) -> None:
    session = session_config(transcription=entry["transcription"])
    with pytest.raises(ConfigError, match="Inworld's Realtime API documents no transcription"):
        check_session_for("inworld", session)
    check_session_for("inworld", session_config(transcription={"model": "inworld/inworld-stt-1",
                                                               "prompt": "AC-42"}))


@pytest.mark.parametrize("entry", FIXTURE["refused"], ids=[e["param"] + "-" + str(i) for i, e in
                                                           enumerate(FIXTURE["refused"])])
def test_a_setting_that_breaks_a_documented_rule_is_refused_naming_the_field(
        entry: dict[str, Any]) -> None:
    with pytest.raises(TranscriptionError) as caught:
        check_session_for("openai", session_config(transcription=entry["transcription"]))
    assert (caught.value.param, caught.value.code) == (entry["param"], entry["code"])
    assert entry["param"] in str(caught.value) or "keyword" in str(caught.value)


@pytest.mark.parametrize(("transcription", "words"), [
    ({"model": "gpt-transcribe", "keywords": ["line one\nline two"]}, "one line without"),
    ({"model": "gpt-transcribe", "keywords": [3]}, "list of strings"),
    ({"model": "gpt-transcribe", "languages": ["EN"]}, "ISO-639-1 codes"),
    ({"model": "gpt-realtime-whisper", "delay": 1}, "delay must be a string"),
    ({"model": "gpt-realtime-whisper", "delay": "slow"}, "minimal, low, medium, high, xhigh"),
    ({"model": 4}, "model must be a string"),
])
def test_the_shape_is_checked_when_the_keywords_are_built(transcription: dict[str, Any],
                                                          words: str) -> None:
    with pytest.raises(TranscriptionError, match=words):
        session_config(transcription=transcription)


def test_which_models_take_which_setting() -> None:
    for model in ("gpt-transcribe", "gpt-live-transcribe", "gpt-live-transcribe-2026-07-28"):
        check_transcription({"model": model, "keywords": ["AC-42"], "languages": ["en"]},
                            "openai")
    for model in ("gpt-realtime-whisper", "gpt-live-transcribe"):
        check_transcription({"model": model, "delay": "minimal"}, "azure")
    for model in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-transcribe-diarize",
                  "gpt-transcribe-x"):
        with pytest.raises(TranscriptionError, match="documented for gpt-transcribe and "
                                                     "gpt-live-transcribe only"):
            check_transcription({"model": model, "languages": ["en"]}, "local")
    with pytest.raises(TranscriptionError, match="gpt-realtime-whisper and gpt-live-transcribe"):
        check_transcription({"model": "gpt-transcribe", "delay": "low"}, "openai")
    # a server of unknown models, or no model named, is left to check for itself
    check_transcription({"model": "my-asr", "keywords": ["x"], "delay": "low"}, "url")
    check_transcription({"keywords": ["x"]}, "openai")
    check_transcription(None, "inworld")
