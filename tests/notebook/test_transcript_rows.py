"""Transcript rows as the page gets them, from a conversation fed the server's events: a
diarised turn with two speakers carries who said what; one speaker, nothing extra."""

from __future__ import annotations

from typing import Any

from rtwidget.notebook.rows import row
from rtwidget.protocol.conversation import Conversation


def user_turn(conversation: Conversation, item_id: str) -> None:
    conversation.apply({"type": "conversation.item.added", "previous_item_id": None, "item": {
        "id": item_id, "type": "message", "role": "user", "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}]}})


def segment(item_id: str, n: int, speaker: str, text: str, start: float) -> dict[str, Any]:
    return {"type": "conversation.item.input_audio_transcription.segment", "item_id": item_id,
            "content_index": 0, "id": f"seg_{n}", "speaker": speaker, "start": start,
            "end": start + 1.0, "text": text}


def test_a_turn_with_two_speakers_shows_who_said_what() -> None:
    conversation = Conversation()
    user_turn(conversation, "item_1")
    conversation.apply(segment("item_1", 1, "A", "Is it raining?", 0.0))
    conversation.apply(segment("item_1", 2, "B", "Yes, a bit.", 1.2))
    shown = row(conversation.get("item_1"), 0, None, conversation)
    assert shown["speakers"] == [{"speaker": "A", "text": "Is it raining?"},
                                 {"speaker": "B", "text": "Yes, a bit."}]


def test_one_speaker_adds_nothing() -> None:
    conversation = Conversation()
    user_turn(conversation, "item_1")
    conversation.apply(segment("item_1", 1, "A", "Is it raining?", 0.0))
    assert row(conversation.get("item_1"), 0, None, conversation)["speakers"] is None
