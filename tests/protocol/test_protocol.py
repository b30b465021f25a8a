"""The pure protocol core: client event builders and the Conversation state machine."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidget.protocol import (
    AudioFormatError,
    Conversation,
    client_events,
    configuration,
    decode_audio,
    encode_audio,
    session_config,
    to_pcm16,
)

# --- builders ---------------------------------------------------------------------------------


def test_session_config_puts_every_field_where_the_api_expects_it() -> None:
    cfg = session_config(
        model="inworld/my-router", instructions="Be kind.", output_modalities=["audio", "text"],
        temperature=0.7, max_output_tokens="inf", voice="Dennis", tts_model="inworld-tts-1.5-max",
        speed=1.2, input_format="pcm16", output_format="pcm16",
        turn_detection=configuration.turn_detection(silence_duration_ms=400,
                                                    interrupt_response=False),
        transcription="whisper-1", tools=[{"type": "function", "name": "f"}], tool_choice="f",
    )
    assert cfg["type"] == "realtime" and cfg["model"] == "inworld/my-router"
    assert cfg["max_output_tokens"] == "inf"
    assert cfg["tool_choice"] == {"type": "function", "name": "f"}
    out = cfg["audio"]["output"]
    assert out == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "Dennis",
                   "model": "inworld-tts-1.5-max", "speed": 1.2}
    td = cfg["audio"]["input"]["turn_detection"]
    assert td == {"type": "server_vad", "silence_duration_ms": 400, "interrupt_response": False}
    assert cfg["audio"]["input"]["transcription"] == {"model": "whisper-1"}


def test_partial_update_holds_only_what_changes() -> None:
    assert session_config(voice="Clive") == {"type": "realtime",
                                             "audio": {"output": {"voice": "Clive"}}}
    assert session_config(turn_detection=None)["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize("bad", [
    {"max_output_tokens": 0}, {"max_output_tokens": "lots"}, {"output_modalities": ["video"]},
    {"speed": 0}, {"tool_choice": 3}, {"model": ""}, {"input_format": "mp3"},
])
def test_session_config_refuses_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        session_config(**bad)


def test_every_client_event_has_a_unique_event_id() -> None:
    built = [
        client_events.session_update(session_config(voice="x")),
        client_events.input_audio_append(b"\0\0"),
        client_events.input_audio_commit(), client_events.input_audio_clear(),
        client_events.item_create(client_events.text_message("hi")),
        client_events.item_create(client_events.audio_message(b"\0\0" * 10, "hm")),
        client_events.item_create(client_events.function_call_output("c", "{}")),
        client_events.item_retrieve("i"), client_events.item_delete("i"),
        client_events.item_truncate("i", 10),
        client_events.response_create(instructions="x", conversation="none", metadata={"k": "v"}),
        client_events.response_cancel(),
    ]
    ids = [e["event_id"] for e in built]
    assert len(set(ids)) == len(ids)
    assert all(json.loads(json.dumps(e)) == e for e in built)


def test_item_create_places_items_with_previous_item_id() -> None:
    assert "previous_item_id" not in client_events.item_create(client_events.text_message("a"))
    placed_first = client_events.item_create(client_events.text_message("a"), None)
    assert placed_first["previous_item_id"] is None
    assert client_events.text_message("a", "assistant")["content"][0]["type"] == "output_text"


def test_items_after_gives_the_newest_items_or_none_when_one_went_before() -> None:
    conv = Conversation()

    def add(item_id: str, **previous: Any) -> None:
        conv.apply({"type": "conversation.item.added", **previous, "item": {
            "id": item_id, "type": "message", "role": "user", "content": []}})

    add("a")
    add("b")
    assert [i.id for i in conv.items_after(0, None) or []] == ["a", "b"]
    add("c", previous_item_id="b")
    add("d")
    assert [i.id for i in conv.items_after(2, "b") or []] == ["c", "d"]
    assert conv.items_after(4, "d") == []
    conv.apply({"type": "conversation.item.deleted", "item_id": "d"})
    assert [i.id for i in conv.items_after(3, "c") or []] == ["d"]  # deleted ones too
    add("e", previous_item_id="a")  # placed before the newest: a layout starts again
    assert conv.items_after(4, "d") is None and conv.items_after(5, "d") is not None
    add("f", previous_item_id=None)
    assert conv.items_after(5, "d") is None
    assert conv.items_after(7, "d") is None  # more than it holds


# --- audio ------------------------------------------------------------------------------------


def test_float_audio_becomes_pcm16_with_nan_as_silence() -> None:
    pcm = to_pcm16(np.array([0.0, 1.0, -1.0, np.nan, 2.0], dtype=np.float32))
    assert np.frombuffer(pcm, "<i2").tolist() == [0, 32767, -32767, 0, 32767]


def test_broken_audio_is_refused_with_a_clear_error() -> None:
    with pytest.raises(AudioFormatError, match="even"):
        to_pcm16(b"\x00\x01\x02")
    with pytest.raises(AudioFormatError):
        decode_audio("not base64!")
    assert decode_audio(encode_audio(b"\x01\x02")) == b"\x01\x02"


# --- the conversation ---------------------------------------------------------------------------


def _audio(ms: int) -> str:
    return base64.b64encode(b"\x01\x00" * (24 * ms)).decode()


TEXT_TURN = [
    {"type": "session.created", "session": {"id": "sess_1", "model": "m"}},
    {"type": "conversation.item.added", "previous_item_id": None,
     "item": {"id": "u1", "type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "Hi"}]}},
    {"type": "response.created", "response": {"id": "r1", "status": "in_progress"}},
    {"type": "response.output_item.added", "response_id": "r1", "output_index": 0,
     "item": {"id": "a1", "type": "message", "role": "assistant", "status": "in_progress"}},
    {"type": "response.audio_transcript.delta", "response_id": "r1", "item_id": "a1",
     "delta": "Hel"},
    {"type": "response.audio.delta", "response_id": "r1", "item_id": "a1", "delta": _audio(100)},
    {"type": "response.output_audio_transcript.delta", "response_id": "r1", "item_id": "a1",
     "delta": "lo!"},
    {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "a1",
     "delta": _audio(50)},
    {"type": "response.output_item.done", "response_id": "r1", "output_index": 0,
     "item": {"id": "a1", "type": "message", "role": "assistant", "status": "completed"}},
    {"type": "response.done", "response": {"id": "r1", "status": "completed",
                                           "usage": {"total_tokens": 9}}},
]


def test_ga_and_beta_event_names_build_the_same_conversation() -> None:
    conv = Conversation()
    for event in TEXT_TURN:
        conv.apply(event)
    user, assistant = list(conv)
    assert user.text == "Hi" and assistant.transcript == "Hello!"
    assert assistant.audio_out_bytes == 150 * 48
    assert conv.responses["r1"].usage == {"total_tokens": 9}
    assert conv.responses["r1"].item_ids == ["a1"]
    assert conv.unknown_events == 0 and not conv.problems


def test_unknown_events_are_logged_not_fatal() -> None:
    conv = Conversation()
    update = conv.apply({"type": "response.start", "something": 1})
    assert not update.known and conv.unknown_events == 1
    assert conv.log[-1].type == "response.start"


def test_function_call_arguments_stream_into_the_item() -> None:
    conv = Conversation()
    conv.apply({"type": "response.output_item.added", "response_id": "r", "item": {
        "id": "f1", "type": "function_call", "call_id": "c1", "name": "get", "arguments": ""}})
    conv.apply({"type": "response.function_call_arguments.delta", "item_id": "f1",
                "call_id": "c1", "delta": '{"a":'})
    conv.apply({"type": "response.function_call_arguments.delta", "item_id": "f1",
                "call_id": "c1", "delta": " 1}"})
    assert conv.get("f1").arguments == '{"a": 1}'
    conv.apply({"type": "response.function_call_arguments.done", "item_id": "f1",
                "call_id": "c1", "name": "get", "arguments": '{"a":1}'})
    assert conv.by_call_id("c1").arguments == '{"a":1}'


def test_errors_are_tied_to_the_event_that_caused_them() -> None:
    conv = Conversation()
    sent = client_events.item_delete("x")
    conv.record_sent(sent, 10)
    conv.apply({"type": "error", "error": {"type": "invalid_request_error", "code": "c",
                                           "message": "m", "event_id": sent["event_id"]}})
    assert conv.errors[-1].caused_by == "conversation.item.delete"
    assert "conversation.item.delete" in str(conv.errors[-1])


def test_delete_and_truncate_update_items() -> None:
    conv = Conversation()
    for event in TEXT_TURN:
        conv.apply(event)
    conv.apply({"type": "conversation.item.truncated", "item_id": "a1", "content_index": 0,
                "audio_end_ms": 40})
    assert conv.get("a1").truncated_ms == 40
    conv.apply({"type": "conversation.item.deleted", "item_id": "u1"})
    assert [i.id for i in conv] == ["a1"]


# --- property: nothing the server sends makes the conversation raise -----------------------------

KNOWN_TYPES = sorted({e["type"] for e in TEXT_TURN} | {
    "session.updated", "conversation.item.done", "conversation.item.created",
    "conversation.item.retrieved", "conversation.item.deleted", "conversation.item.truncated",
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed", "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed", "response.content_part.done",
    "response.output_text.delta", "response.text.delta", "response.output_text.done",
    "response.output_audio.done", "response.output_audio_transcript.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "rate_limits.updated", "error", "response.start", "no.such.event",
})

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)
ids = st.sampled_from(["u1", "a1", "f1", "r1", "c1", "", "zz"])
field_values = ids | json_values | st.just(_audio(5)) | st.just("not base64 ~")
fields = st.dictionaries(
    st.sampled_from(["item_id", "response_id", "call_id", "delta", "item", "response", "id",
                     "status", "error", "audio_end_ms", "audio_start_ms", "transcript",
                     "arguments", "name", "previous_item_id", "output_index", "session"]),
    field_values | st.fixed_dictionaries({"id": ids, "type": st.sampled_from(
        ["message", "function_call", "function_call_output", "x"])}, optional={
        "role": st.sampled_from(["user", "assistant", 3]), "content": json_values,
        "status": json_values, "call_id": ids, "usage": json_values}),
    max_size=6,
)
well_formed = st.builds(lambda kind, extra: {"type": kind, **extra},
                        st.sampled_from(KNOWN_TYPES), fields)
anything = json_values | st.builds(lambda t, extra: {"type": t, **extra}, json_values, fields)


@settings(max_examples=400, deadline=None)
@given(st.lists(well_formed | anything | st.sampled_from(TEXT_TURN), max_size=40))
def test_no_sequence_of_server_events_makes_the_conversation_raise(seq: list[Any]) -> None:
    conv = Conversation()
    for event in seq:
        conv.apply(event, 0)
    list(conv)
    conv.abandon_in_progress("test")
    for item in conv.all_items():
        assert isinstance(item.display_text, str)
        assert item.audio_in_seconds >= 0 and item.audio_out_seconds >= 0


# --- audio conversion, property-based --------------------------------------------------------

from hypothesis.extra import numpy as hnp  # noqa: E402

from rtwidget.protocol.audio import resample  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 2000),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=64)))
def test_any_float_array_becomes_pcm16_of_the_same_length(samples: np.ndarray) -> None:
    pcm = np.frombuffer(to_pcm16(samples), dtype="<i2")
    assert pcm.size == samples.size
    bad = ~np.isfinite(samples)
    assert (pcm[bad] == 0).all()  # NaN and infinities are silence, not noise or a crash
    ok = np.isfinite(samples)
    assert (np.sign(pcm[ok]) == np.sign((np.clip(samples[ok], -1, 1) * 32767).astype(int))).all()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_bytes_are_pcm16_only_with_an_even_length(data: bytes) -> None:
    if len(data) % 2:
        with pytest.raises(AudioFormatError, match="even number of bytes"):
            to_pcm16(data)
    else:
        assert to_pcm16(data) == data
        assert decode_audio(encode_audio(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50), st.integers(), st.none()))
def test_decoding_wire_audio_either_works_or_says_why(value: Any) -> None:
    try:
        pcm = decode_audio(value)
    except AudioFormatError as exc:
        assert str(exc)
    else:
        assert isinstance(pcm, bytes) and len(pcm) % 2 == 0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000]),
       st.integers(0, 3000), st.integers(-20000, 20000))
def test_resampling_keeps_the_duration_and_the_level(rate: int, n: int, level: int) -> None:
    pcm = np.full(n, level, dtype="<i2").tobytes()
    out = np.frombuffer(resample(pcm, rate), dtype="<i2")
    assert abs(out.size - n * 24000 / rate) <= 1
    middle = out[out.size // 4: 3 * out.size // 4]
    if middle.size and n > 200:  # away from the filter's edges a constant stays constant
        assert np.abs(middle.astype(int) - level).max() <= max(2, abs(level) // 100)


def test_resampling_refuses_rates_that_are_not_rates() -> None:
    for bad in (0, -8000, 1.5, 10**7, "48k"):
        with pytest.raises(AudioFormatError, match="rate"):
            resample(b"\x00\x00" * 10, bad)  # type: ignore[arg-type]


def test_words_heard_before_their_item_is_added_are_the_user_s() -> None:
    # a server streams the user's words while they speak, and adds the item when the turn ends
    conversation = Conversation()
    conversation.apply({"type": "input_audio_buffer.speech_started", "item_id": "u1",
                        "audio_start_ms": 0})
    update = conversation.apply({"type": "conversation.item.input_audio_transcription.delta",
                                 "item_id": "u1", "content_index": 0, "delta": "how many"})
    assert update.item is not None and update.item.role == "user"
    assert update.item.transcript == "how many"
    conversation.apply({"type": "conversation.item.added", "item": {
        "id": "u1", "type": "message", "role": "user",
        "content": [{"type": "input_audio", "transcript": None}]}})
    item = conversation.get("u1")
    assert item is not None and item.role == "user" and item.transcript == "how many"
