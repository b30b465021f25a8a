"""Transcript rows as the page gets them, from a conversation fed the server's events: a
diarised turn with two speakers carries who said what; one speaker, nothing extra."""

from __future__ import annotations

import random
from typing import Any

from rtwidget.notebook.rows import RowFeed, row
from rtwidget.protocol.conversation import Conversation
from rtwidget.protocol.turns import layout, reply_heard_after


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


def test_rows_laid_out_as_items_come_match_a_layout_of_the_whole_conversation() -> None:
    # items appended, placed first or in the middle, deleted, heard before the server adds
    # them (no role yet), and re-described: every rows message carries the positions and
    # turns a layout of the whole conversation gives, without one per item added
    rng = random.Random(7)
    conversation, feed = Conversation(), RowFeed()
    known: list[str] = []
    for n in range(600):
        new = f"item_{n}"
        roll = rng.random()
        if roll < 0.08 and known:  # the transcriber speaks of an item before it is added
            event: dict[str, Any] = {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": new, "content_index": 0, "delta": "hi"}
        elif roll < 0.14 and known:
            event = {"type": "conversation.item.deleted", "item_id": rng.choice(known)}
        elif roll < 0.20 and known:  # an item described again, as the other role
            event = {"type": "conversation.item.done", "item": {
                "id": rng.choice(known), "type": "message",
                "role": rng.choice(["user", "assistant"]), "content": []}}
        else:
            previous: dict[str, Any] = {}
            if roll < 0.24:
                previous = {"previous_item_id": None}
            elif roll < 0.30 and known:
                previous = {"previous_item_id": rng.choice(known)}
            elif roll < 0.40 and known:  # the server adds one heard before
                new = rng.choice(known)
            event = {"type": "conversation.item.added", **previous, "item": {
                "id": new, "type": "message", "role": rng.choice(["user", "assistant"]),
                "content": [{"type": "input_text", "text": f"line {n}"}]}}
        update = conversation.apply(event)
        assert not conversation.problems, conversation.problems
        if event.get("item_id", event.get("item", {}).get("id")) not in known:
            known.append(new)
        feed.mark(update)
        if rng.random() < 0.5:
            message = feed.message(conversation, reset=False)
            whole = layout(conversation)
            for shown in message["rows"] if message else []:
                user = whole.turn_of.get(shown["id"])
                assert shown["pos"] == whole.position[shown["id"]], n
                assert shown["latency"] == reply_heard_after(conversation.get(shown["id"]), user)
            laid = feed._laid_out(conversation, fresh=False)
            assert laid.position == whole.position, n
            assert {k: v.id for k, v in laid.turn_of.items()} == \
                {k: v.id for k, v in whole.turn_of.items()}, n
    assert feed.relayouts < 150  # once per deletion, reordering or change of role at most


def test_a_conversation_that_only_grows_is_laid_out_once() -> None:
    conversation, feed = Conversation(), RowFeed()
    for n in range(300):
        conversation.apply({"type": "conversation.item.added", "item": {
            "id": f"item_{n}", "type": "message", "role": "assistant" if n % 2 else "user",
            "content": []}})
        feed.mark(conversation.apply({"type": "conversation.item.done", "item": {
            "id": f"item_{n}"}}))
        message = feed.message(conversation, reset=False)
        assert message is not None and message["rows"][0]["pos"] == n
    assert feed.relayouts == 1
