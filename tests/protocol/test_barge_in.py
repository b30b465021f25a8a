"""A reply cut off by a barge-in keeps the words that were heard: in the client's conversation
(and so the DataFrame and the widget), and on the local server, whose reply engine sees them."""

from __future__ import annotations

import base64

import rtwidget as rt
from rtwidget.protocol import Conversation
from rtwidget.protocol.heard import heard_text
from rtwidget.server import LocalServer, ScriptedReplyEngine, ToneSynthesizer

TEXT = "Hello there. The sea is wide and deep. It holds many fish."
MARKS = [(0, 0), (13, 1000), (39, 3000)]  # each sentence's start in the audio, in bytes


def test_heard_text_follows_the_audio_sentence_by_sentence_and_ends_on_a_whole_word() -> None:
    assert heard_text(TEXT, MARKS, 4000, 0) == ""
    assert heard_text(TEXT, MARKS, 4000, 1000) == "Hello there."
    assert heard_text(TEXT, MARKS, 4000, 2000) == "Hello there. The sea is"  # half of "wide..."
    assert heard_text(TEXT, MARKS, 4000, 3000) == "Hello there. The sea is wide and deep."
    assert heard_text(TEXT, MARKS, 4000, 4000) == TEXT
    assert heard_text(TEXT, MARKS, 4000, 9000) == TEXT


def test_without_marks_the_text_is_taken_in_proportion_to_the_audio() -> None:
    assert heard_text("one two three four", [], 400, 200) == "one two"
    assert heard_text("one two three four", [], 400, 210) == "one two"  # "t" of three: not heard
    assert heard_text("", [], 400, 200) == ""


def _reply_events(conv: Conversation, sentences: list[str], chunk: bytes) -> None:
    conv.apply({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}})
    conv.apply({"type": "response.output_item.added", "response_id": "r1", "output_index": 0,
                "item": {"id": "a1", "type": "message", "role": "assistant",
                         "status": "in_progress", "content": []}})
    where = {"response_id": "r1", "item_id": "a1", "output_index": 0, "content_index": 0}
    for i, sentence in enumerate(sentences):
        conv.apply({"type": "response.output_audio_transcript.delta", **where,
                    "delta": (" " if i else "") + sentence})
        conv.apply({"type": "response.output_audio.delta", **where,
                    "delta": base64.b64encode(chunk).decode()})


def test_the_conversation_shows_what_was_heard_and_keeps_all_that_was_said() -> None:
    conv = Conversation()
    _reply_events(conv, ["Hello there.", "The sea is wide and deep.", "It holds many fish."],
                  b"\0" * 48_000)  # one second of audio per sentence
    conv.apply({"type": "conversation.item.truncated", "item_id": "a1", "content_index": 0,
                "audio_end_ms": 1500})
    item = conv.get("a1")
    assert item is not None
    assert item.display_text == "Hello there. The sea is"
    assert item.transcript == TEXT  # what the agent said is not lost
    row = conv_frame_row(conv, "a1")
    assert row["text"] == "Hello there. The sea is" and row["truncated_ms"] == 1500


def conv_frame_row(conv: Conversation, item_id: str) -> dict:
    from rtwidget.data.frame import conversation_frame

    frame = conversation_frame(conv)
    return frame[frame["item_id"] == item_id].iloc[0].to_dict()


def test_the_local_server_keeps_the_heard_words_for_its_reply_engine() -> None:
    engine = ScriptedReplyEngine(fallback="Hello there. The sea is wide and deep. It holds "
                                 "many fish.")
    with LocalServer(engine=engine, synthesizer=ToneSynthesizer()) as srv, \
            rt.RealtimeSession("local", url=srv.url) as s:
        s.ask("tell me about the sea")
        reply = [i for i in s.conversation if i.role == "assistant"][-1]
        full_ms = reply.audio_out_bytes // 48
        cut = s.expect("conversation.item.truncated")
        s.truncate(reply.id, full_ms // 2)
        cut.wait()
        server_side = s.retrieve(reply.id)["content"][0]["transcript"]
        s.ask("and then?")
        seen = engine.calls_seen[-1].history
    heard = reply.display_text
    assert heard and heard != reply.transcript and reply.transcript.startswith(heard)
    assert server_side == heard  # the same words on both sides
    assistant_turn = next(t for t in seen if t.role == "assistant")
    assert assistant_turn.text == heard  # the engine is shown what the user heard, no placeholder
