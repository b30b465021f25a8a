"""The local server keeps only the session fields OpenAI and Inworld document, and a session
object of bounded size: a ``session.update`` with a field it does not know, or one that would
make the session too big, is refused whole (an ``error`` naming the field) and changes nothing.
Over real sockets to a real local server on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import RawClient

import rtwidget as rt
from rtwidget.client.options import NO_RECONNECT
from rtwidget.server import LocalServer
from rtwidget.server.validation import MAX_SESSION_BYTES

pytestmark = pytest.mark.timeout(120)


def update(raw: RawClient, session: dict[str, Any]) -> dict[str, Any]:
    """Send a ``session.update``; its answer (``session.updated`` or ``error``)."""
    raw.send({"type": "session.update", "event_id": "evt_upd", "session": session})
    while True:
        event = raw.next()
        if event["type"] in ("session.updated", "error"):
            return event


def current(raw: RawClient) -> dict[str, Any]:
    answer = update(raw, {})
    assert answer["type"] == "session.updated"
    session: dict[str, Any] = answer["session"]
    return session


@pytest.mark.parametrize(("patch", "param"), [
    ({"made_up": 1}, "session.made_up"),
    ({"instructions": "Be brief.", "voice_of_god": True}, "session.voice_of_god"),
    ({"audio": {"video": {}}}, "session.audio.video"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "gain": 3}}},
     "session.audio.input.gain"),
    ({"audio": {"output": {"voice": "Dennis", "pitch": 2}}}, "session.audio.output.pitch"),
    ({"input_audio_format": "pcm16", "video_format": "h264"}, "session.video_format"),
    ({"x" * 500: 1}, "session." + "x" * 80),
])
def test_an_unknown_field_is_refused_by_name_and_changes_nothing(
        raw: RawClient, patch: dict[str, Any], param: str) -> None:
    before = current(raw)
    answer = update(raw, patch)
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "unknown_parameter"
    assert answer["error"]["param"] == param and answer["error"]["event_id"] == "evt_upd"
    assert current(raw) == before


def test_a_session_cannot_grow_without_bound(raw: RawClient) -> None:
    big = "p" * (5 * 1024 * 1024)
    for i in range(20):  # the 20 updates of 5 MB, under a made-up name and a real one
        assert update(raw, {f"junk_{i}": big})["error"]["code"] == "unknown_parameter"
        answer = update(raw, {"providerData": {f"note_{i}": big}})
        assert answer["type"] == "error" and answer["error"]["param"] == "session"
        assert "limit is" in answer["error"]["message"]
    piece = "q" * (400 * 1024)  # documented fields that grow step by step stop at the bound
    answers = [update(raw, {"providerData": {f"memo_{i}": piece}}) for i in range(10)]
    kinds = [a["type"] for a in answers]
    assert "session.updated" in kinds and kinds[-1] == "error"
    assert kinds == sorted(kinds, key=lambda k: k == "error")  # refused from the bound on
    echoes = [json.dumps(a["session"]) for a in answers if a["type"] == "session.updated"]
    assert max(len(e.encode()) for e in echoes) <= MAX_SESSION_BYTES + 1024
    assert len(json.dumps(current(raw)).encode()) <= MAX_SESSION_BYTES + 1024


def test_the_documented_fields_are_kept_and_inworlds_provider_data_is_merged(
        raw: RawClient) -> None:
    before = current(raw)
    first = update(raw, {
        "type": "realtime", "modelId": "openai/gpt-4.1-nano", "temperature": 0.6,
        "include": ["item.input_audio_transcription.logprobs"],
        "prompt": {"id": "pmpt_1", "variables": {"city": "Oslo"}},
        "tracing": "auto", "truncation": "auto",
        "providerData": {"stt": {"language": "en"}, "memory": {"enabled": True}},
        "audio": {"output": {"voice": "Dennis", "model": "inworld-tts-1.5-mini",
                             "speed": 1.1}},
    })
    assert first["type"] == "session.updated", first
    second = update(raw, {"providerData": {"tts": {"segmentation": "sentence"}}})
    session = second["session"]
    assert session["model"] == "openai/gpt-4.1-nano" and session["temperature"] == 0.6
    assert session["prompt"]["variables"] == {"city": "Oslo"}
    assert session["providerData"] == {"stt": {"language": "en"}, "memory": {"enabled": True},
                                       "tts": {"segmentation": "sentence"}}
    assert session["audio"]["output"]["voice"] == "Dennis"
    echoed = update(raw, {"id": "sess_mine", "object": "realtime.session", "expires_at": 0})
    assert echoed["type"] == "session.updated"  # the server's own fields, sent back: ignored
    assert echoed["session"]["id"] == before["id"]


def test_the_beta_protocols_names_are_kept_in_their_ga_places(raw: RawClient) -> None:
    answer = update(raw, {
        "modalities": ["text"], "voice": "Clive", "speed": 1.2, "max_response_output_tokens": 50,
        "input_audio_format": "pcm16", "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1"}, "turn_detection": None,
        "audio": {"output": {"voice": "Dennis"}},  # the GA field, given as well, wins
    })
    assert answer["type"] == "session.updated", answer
    session = answer["session"]
    assert session["output_modalities"] == ["text"] and session["max_output_tokens"] == 50
    assert session["audio"]["output"]["voice"] == "Dennis"
    assert session["audio"]["output"]["speed"] == 1.2
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert session["audio"]["input"]["turn_detection"] is None
    assert not {"modalities", "voice", "speed", "turn_detection"} & set(session)
    refused = update(raw, {"speed": 99})  # checked like the GA field
    assert refused["error"]["param"] == "session.audio.output.speed"


@pytest.mark.parametrize(("patch", "param"), [
    ({"providerData": "stt=on"}, "session.providerData"),
    ({"include": "logprobs"}, "session.include"),
    ({"include": [7]}, "session.include[0]"),
    ({"prompt": ["pmpt_1"]}, "session.prompt"),
    ({"truncation": 5}, "session.truncation"),
    ({"parallel_tool_calls": "no"}, "session.parallel_tool_calls"),
    ({"reasoning": "low"}, "session.reasoning"),
])
def test_documented_fields_of_the_wrong_type_are_refused(
        raw: RawClient, patch: dict[str, Any], param: str) -> None:
    answer = update(raw, patch)
    assert answer["type"] == "error" and answer["error"]["code"] == "invalid_type"
    assert answer["error"]["param"] == param


def test_a_client_that_adds_unknown_fields_hears_about_it(server: LocalServer) -> None:
    with pytest.raises(rt.ServerRejected, match=r"Unknown parameter: 'session\.made_up'"):
        rt.RealtimeSession("local", url=server.url, reconnect=NO_RECONNECT,
                           extra={"made_up": {"x": 1}})
    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"],
                            provider_data={"stt": {"language": "en"}}) as s:
        with pytest.raises(rt.ServerError, match="Unknown parameter"):
            s.update(extra={"also_made_up": "y" * 1_000_000})
        assert s.ask("hello", timeout=20) == "You said: hello"
        (conn,) = server.connections
        assert "also_made_up" not in conn.session
        assert conn.session["providerData"] == {"stt": {"language": "en"}}
