"""The local server takes the transcription settings keywords, languages and delay as OpenAI
documents them: checked on the merged session (a patch may name the model or the settings
alone), kept and echoed in ``session.updated`` (strictly GA-shaped), refused naming the field
otherwise; and a session keeps them across reconnects and checks an update against the model
it already has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rtwidget import RealtimeSession
from rtwidget.protocol.transcription import TranscriptionError
from rtwidget.server import LocalServer
from tests.conftest import FAST_RETRY, eventually
from tests.support.ga_events import ga_problems

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" /
                      "openai_transcription_settings.json").read_text())
PARAM = "session.audio.input.transcription"


def _update(raw: Any, transcription: Any, event_id: str = "evt_tr") -> dict[str, Any]:
    raw.send({"type": "session.update", "event_id": event_id, "session": {
        "type": "realtime", "audio": {"input": {"transcription": transcription}}}})
    for _ in range(50):  # bounded: the answer comes among the first events
        event: dict[str, Any] = raw.next()
        if event["type"] in ("session.updated", "error"):
            return event
    raise AssertionError("no answer to the session.update")


@pytest.mark.parametrize("entry", FIXTURE["accepted"],
                         ids=[e["transcription"]["model"] for e in FIXTURE["accepted"]])
def test_the_server_echoes_each_documented_setting(raw: Any, entry: dict[str, Any]) -> None:
    updated = _update(raw, entry["transcription"])
    assert updated["type"] == "session.updated" and ga_problems(updated) == []
    assert updated["session"]["audio"]["input"]["transcription"] == entry["transcription"]


@pytest.mark.parametrize("entry", FIXTURE["refused"], ids=[e["param"] + "-" + str(i) for i, e in
                                                           enumerate(FIXTURE["refused"])])
def test_the_server_refuses_what_the_documents_rule_out(raw: Any, entry: dict[str, Any]) -> None:
    error = _update(raw, entry["transcription"])["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        entry["code"], f"{PARAM}.{entry['param']}", "evt_tr")


def test_a_patch_is_checked_against_the_model_the_session_has(raw: Any) -> None:
    first = _update(raw, {"model": "whisper-1"}, "evt_1")
    assert first["type"] == "session.updated"
    error = _update(raw, {"keywords": ["AC-42"]}, "evt_2")["error"]  # whisper-1 takes none
    assert (error["param"], error["event_id"]) == (f"{PARAM}.keywords", "evt_2")
    assert "gpt-transcribe and gpt-live-transcribe only, not 'whisper-1'" in error["message"]
    moved = _update(raw, {"model": "gpt-live-transcribe", "keywords": ["AC-42"]}, "evt_3")
    assert moved["session"]["audio"]["input"]["transcription"] == {
        "model": "gpt-live-transcribe", "keywords": ["AC-42"]}
    error = _update(raw, {"model": "whisper-1"}, "evt_4")["error"]  # the keywords stay
    assert error["param"] == f"{PARAM}.keywords"
    bad = _update(raw, "gpt-transcribe", "evt_5")["error"]
    assert (bad["code"], bad["param"]) == ("invalid_type", PARAM)


def test_a_session_keeps_its_transcription_settings_across_reconnects(server: LocalServer
                                                                      ) -> None:
    asked = FIXTURE["accepted"][0]["transcription"]
    with RealtimeSession("local", url=server.url, reconnect=FAST_RETRY,
                         output_modalities=["text"], transcription=asked) as session:
        def settings() -> dict[str, Any]:
            conns = list(server.connections)
            assert len(conns) == 1
            return conns[0].session

        def transcription() -> Any:
            return settings()["audio"]["input"].get("transcription")

        first = eventually(lambda: transcription() == asked and settings())
        with pytest.raises(TranscriptionError, match="not 'whisper-1'"):
            session.update(transcription={"model": "whisper-1"})  # its keywords would stay
        assert session.update(transcription={"delay": "xhigh"})[
            "audio"]["input"]["transcription"]["delay"] == "xhigh"
        server.close_connections(1012)
        eventually(lambda: settings() is not first and transcription() == {**asked,
                                                                           "delay": "xhigh"},
                   what="the transcription settings re-sent after the reconnect")
        assert session.config["audio"]["input"]["transcription"]["keywords"] == [
            "AC-42", "Premium Plus"]
