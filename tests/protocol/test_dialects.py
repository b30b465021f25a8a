"""GA client events in the beta protocol's shape."""

from __future__ import annotations

from rtwidget.protocol import client_events, session_config
from rtwidget.protocol.dialects import to_beta


def test_session_update_in_beta_shape() -> None:
    ga = client_events.session_update(session_config(
        model="gpt-4o-realtime-preview", instructions="Hi.", output_modalities=["text", "audio"],
        max_output_tokens="inf", voice="alloy", speed=1.1, input_format="pcm16",
        output_format="g711_ulaw", turn_detection="server_vad", transcription="whisper-1",
        tools=[{"type": "function", "name": "f"}], tool_choice="auto"))
    beta = to_beta(ga)["session"]
    assert beta == {"model": "gpt-4o-realtime-preview", "instructions": "Hi.",
                    "modalities": ["text", "audio"], "max_response_output_tokens": "inf",
                    "tools": [{"type": "function", "name": "f"}], "tool_choice": "auto",
                    "turn_detection": {"type": "server_vad"},
                    "input_audio_transcription": {"model": "whisper-1"},
                    "input_audio_format": "pcm16", "output_audio_format": "g711_ulaw",
                    "voice": "alloy", "speed": 1.1}
    assert "audio" in ga["session"]  # the GA event is untouched


def test_response_create_and_assistant_items_in_beta_shape() -> None:
    beta = to_beta(client_events.response_create(output_modalities=["text"], max_output_tokens=50,
                                                 voice="ash"))
    assert beta["response"] == {"modalities": ["text"], "max_response_output_tokens": 50,
                                "voice": "ash"}
    item = to_beta(
        client_events.item_create(client_events.text_message("earlier answer", "assistant")))
    assert item["item"]["content"] == [{"type": "text", "text": "earlier answer"}]
    append = client_events.input_audio_append(b"\x00\x00")
    assert to_beta(append) == append


def test_encode_writes_appends_directly_and_everything_else_with_json() -> None:
    import json

    from rtwidget.protocol.dialects import encode

    append = client_events.input_audio_append(b"\x01\x02" * 480)
    assert encode(append) == json.dumps(append, separators=(",", ":"))
    assert encode(append, "beta") == encode(append)
    odd = {**append, "event_id": 'quote"inside'}
    assert json.loads(encode(odd)) == odd  # not plain: falls back to json.dumps
    update = client_events.session_update(session_config(voice="ash"))
    assert json.loads(encode(update, "beta"))["session"] == {"voice": "ash"}
