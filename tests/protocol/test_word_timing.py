"""Word timings for the heard position after a barge-in: read from a ``timestampInfo`` object
as Inworld's TTS API documents it (fixture with its source), and used, when a reply has them,
instead of the share of the text in proportion to the audio (which the tests show differs)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import rtwidget as rt
from rtwidget.protocol import Conversation
from rtwidget.protocol.audio import BYTES_PER_MS
from rtwidget.protocol.heard import heard_from_timings, heard_text, word_timings
from rtwidget.server import LocalServer, ScriptedReplyEngine, ToneSynthesizer

DOC = json.loads((Path(__file__).parents[1] / "fixtures" /
                  "inworld_tts_timestamps.json").read_text())["word"]
TEXT = DOC["text"]
TIMINGS = word_timings(DOC["timestampInfo"])


def test_the_documented_word_alignment_is_read_field_by_field() -> None:
    alignment = DOC["timestampInfo"]["wordAlignment"]
    documented = zip(alignment["words"], map(float, alignment["wordStartTimeSeconds"]),
                     alignment["wordEndTimeSeconds"], strict=True)
    assert list(documented) == TIMINGS
    assert word_timings(DOC["timestampInfo"], offset=2.0)[1] == ("world,", 0.28 + 2.0, 0.8 + 2.0)
    chars = {"characterAlignment": {"characters": list("Hi"), "characterStartTimeSeconds":
                                    [0, 0.1], "characterEndTimeSeconds": [0.1, 0.2]}}
    assert word_timings(chars) == [("H", 0.0, 0.1), ("i", 0.1, 0.2)]


def test_malformed_timings_are_left_out_not_guessed() -> None:
    assert word_timings(None) == [] and word_timings({"wordAlignment": "x"}) == []
    odd = {"wordAlignment": {"words": ["a", 3, "c", "d"], "wordStartTimeSeconds": [0, 1, -1, 2],
                             "wordEndTimeSeconds": [0.5, 1.5, 1, float("nan")]}}
    assert word_timings(odd) == [("a", 0.0, 0.5)]
    assert heard_from_timings("other words entirely", TIMINGS, 1.0) is None


def test_heard_from_timings_keeps_the_words_said_before_the_cut() -> None:
    assert heard_from_timings(TEXT, TIMINGS, 0.1) == ""
    assert heard_from_timings(TEXT, TIMINGS, 0.28) == "Hello,"
    assert heard_from_timings(TEXT, TIMINGS, 1.4) == "Hello, world, this will"
    assert heard_from_timings(TEXT, TIMINGS, 5.0) == TEXT
    chars = [(c, i * 0.1, i * 0.1 + 0.1) for i, c in enumerate("one two")]
    assert heard_from_timings("one two", chars, 0.55) == "one"  # "tw" of two: not heard


def _reply(conv: Conversation, audio_ms: int) -> None:
    conv.apply({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}})
    conv.apply({"type": "response.output_item.added", "response_id": "r1", "output_index": 0,
                "item": {"id": "a1", "type": "message", "role": "assistant",
                         "status": "in_progress", "content": []}})
    where = {"response_id": "r1", "item_id": "a1", "output_index": 0, "content_index": 0}
    conv.apply({"type": "response.output_audio_transcript.delta", **where, "delta": TEXT})
    conv.apply({"type": "response.output_audio.delta", **where,
                "delta": base64.b64encode(b"\0" * (audio_ms * BYTES_PER_MS)).decode()})


def test_a_barge_in_keeps_the_words_the_timings_say_were_heard() -> None:
    conv = Conversation()
    _reply(conv, 1990)  # the example's audio: 1.99 s
    item = conv.get("a1")
    assert item is not None
    item.time_words(TIMINGS)
    conv.apply({"type": "conversation.item.truncated", "item_id": "a1", "content_index": 0,
                "audio_end_ms": 1400})
    proportional = heard_text(TEXT, item.transcript_marks, item.audio_out_bytes,
                              1400 * BYTES_PER_MS)
    assert item.display_text == "Hello, world, this will"  # "will" ends at 1.38 s
    assert proportional == "Hello, world, this"  # what the old estimate gives
    assert item.transcript == TEXT


def test_timings_given_after_the_cut_work_it_out_again() -> None:
    conv = Conversation()
    _reply(conv, 1990)
    conv.apply({"type": "conversation.item.truncated", "item_id": "a1", "content_index": 0,
                "audio_end_ms": 1400})
    item = conv.get("a1")
    assert item is not None and item.display_text == "Hello, world, this"
    item.time_words(TIMINGS)
    assert item.display_text == "Hello, world, this will"


def test_a_barge_in_over_the_local_server_uses_the_reply_word_timings() -> None:
    engine = ScriptedReplyEngine(fallback=TEXT)
    with LocalServer(engine=engine, synthesizer=ToneSynthesizer()) as srv, \
            rt.RealtimeSession("local", url=srv.url) as s:
        s.ask("say the example")
        reply = [i for i in s.conversation if i.role == "assistant"][-1]
        full_ms = reply.audio_out_bytes // BYTES_PER_MS
        scale = full_ms / 1000 / TIMINGS[-1][2]  # the documented timings, on this reply's audio
        reply.time_words([(w, a * scale, b * scale) for w, a, b in TIMINGS])
        cuts = [ms for ms in range(50, full_ms, 10)  # where timing and proportion disagree
                if heard_text(reply.transcript, reply.transcript_marks, reply.audio_out_bytes,
                              ms * BYTES_PER_MS)
                != heard_from_timings(reply.transcript, reply.word_timings, ms / 1000)]
        assert cuts, "the documented timings never disagree with the proportional estimate"
        cut_ms = cuts[len(cuts) // 2]
        truncated = s.expect("conversation.item.truncated")
        s.truncate(reply.id, cut_ms)
        truncated.wait()
    expected = heard_from_timings(TEXT, reply.word_timings, cut_ms / 1000)
    assert reply.display_text == expected and expected != TEXT
    assert reply.display_text != heard_text(reply.transcript, reply.transcript_marks,
                                            reply.audio_out_bytes, cut_ms * BYTES_PER_MS)
