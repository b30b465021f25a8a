"""Diarised transcript segments: the documented event parsed field by field into the item, in
time order, a resent segment replacing the first, and a malformed one changing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rtwidget.data.frame import conversation_frame, segments_frame
from rtwidget.protocol import Conversation
from rtwidget.protocol.items import Segment

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "openai_documented.json")
                     .read_text())
SEGMENT = next(e["message"] for e in FIXTURE["server"]
               if e["message"]["type"].endswith(".segment"))


def _user_turn(conv: Conversation, item_id: str = "item_3") -> None:
    conv.apply({"type": "conversation.item.added", "item": {
        "id": item_id, "type": "message", "role": "user", "status": "completed",
        "content": [{"type": "input_audio"}]}})


def _segment(**fields: Any) -> dict[str, Any]:
    return {**SEGMENT, **fields}


def test_the_documented_segment_is_kept_field_by_field() -> None:
    conv = Conversation()
    _user_turn(conv)
    update = conv.apply(SEGMENT)
    item = conv.get("item_3")
    assert item is not None and update.item is item and not conv.problems
    assert item.segments == [Segment(id="seg_1", speaker="A", start_ms=320, end_ms=1850,
                                     text="Hello there.", content_index=0)]
    assert item.speakers == ["A"]


def test_segments_keep_time_order_and_a_resent_one_replaces_the_first() -> None:
    conv = Conversation()
    _user_turn(conv)
    conv.apply(_segment(id="seg_2", speaker="B", start=2.0, end=3.5, text="Hi, A."))
    conv.apply(_segment(id="seg_1", speaker="A", start=0.0, end=1.5, text="Hello"))
    conv.apply(_segment(id="seg_1", speaker="A", start=0.0, end=1.6, text="Hello there."))
    conv.apply(_segment(id="seg_3", speaker="A", start=4.0, end=5.0, text="Bye."))
    item = conv.get("item_3")
    assert item is not None
    assert [(s.id, s.speaker, s.start_ms, s.end_ms, s.text) for s in item.segments] == [
        ("seg_1", "A", 0, 1600, "Hello there."), ("seg_2", "B", 2000, 3500, "Hi, A."),
        ("seg_3", "A", 4000, 5000, "Bye.")]
    assert item.speakers == ["A", "B"]


def test_a_segment_without_an_id_or_times_changes_nothing_and_never_raises() -> None:
    conv = Conversation()
    _user_turn(conv)
    for bad in (_segment(id=None), _segment(start="soon"), _segment(end=None),
                _segment(start=True), _segment(end=float("nan"))):
        conv.apply(bad)
    item = conv.get("item_3")
    assert item is not None and item.segments == []


def test_segments_show_in_the_frame_and_one_row_each() -> None:
    conv = Conversation()
    _user_turn(conv)
    _user_turn(conv, "item_4")  # a turn without diarisation
    conv.apply(_segment(id="seg_1", speaker="A", start=0.0, end=1.0, text="Hello."))
    conv.apply(_segment(id="seg_2", speaker="B", start=1.2, end=2.0, text="Hi."))
    df = conversation_frame(conv)
    row, plain = df.iloc[0], df.iloc[1]
    assert row["speakers"] == "A, B"
    assert json.loads(row["segments"]) == [
        {"speaker": "A", "start_ms": 0, "end_ms": 1000, "text": "Hello."},
        {"speaker": "B", "start_ms": 1200, "end_ms": 2000, "text": "Hi."}]
    assert plain[["speakers", "segments"]].isna().all()
    seg = segments_frame(conv)
    assert list(seg["speaker"]) == ["A", "B"] and list(seg["position"]) == [0, 0]
    assert list(seg["start_ms"]) == [0, 1200] and str(seg["start_ms"].dtype) == "Int64"
    assert segments_frame(Conversation()).empty
