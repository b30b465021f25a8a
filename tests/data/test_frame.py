"""The conversation as a DataFrame, live from a session on the local server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import eventually, utterance

import rtwidget as rt
from rtwidget.data.frame import COLUMNS, FrameCache, LiveView, conversation_frame
from rtwidget.protocol import Conversation, client_events
from rtwidget.server import LocalServer, ScriptedReplyEngine


def test_columns_and_dtypes_are_the_documented_ones(session: rt.RealtimeSession) -> None:
    empty = session.df
    assert list(empty.columns) == list(COLUMNS)
    session.ask("Hello!")
    df = session.df
    assert list(df.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == {c: d for c, (d, _) in COLUMNS.items()}
    assert {c: str(t) for c, t in empty.dtypes.items()} == {c: d for c, (d, _) in COLUMNS.items()}
    user, bot = df.iloc[0], df.iloc[1]
    assert (user["role"], user["text"], user["position"]) == ("user", "Hello!", 0)
    assert bot["role"] == "assistant" and bot["text"] == "You said: Hello!"
    assert bot["output_tokens"] > 0 and bot["ttft_s"] >= 0
    assert bot["completed_at"] >= bot["created_at"]


def test_order_follows_previous_item_id(session: rt.RealtimeSession) -> None:
    def added(item_id: str) -> Any:
        return session.expect(lambda ev: ev.get("type") == "conversation.item.done"
                              and ev["item"]["id"] == item_id)

    waits = [added("item_first"), added("item_third")]
    for text in ("first", "third"):
        session.send(
            client_events.item_create(client_events.text_message(text, item_id=f"item_{text}")))
    for wait in waits:
        wait.wait()
    second = added("item_second")
    session.send(client_events.item_create(
        client_events.text_message("second", item_id="item_second"),
        previous_item_id="item_first"))
    second.wait()
    assert list(session.df["text"]) == ["first", "second", "third"]


def test_rows_grow_while_the_reply_streams() -> None:
    engine = ScriptedReplyEngine(fallback="one two three four five six seven eight nine ten")
    with LocalServer(engine=engine, pace=0.02) as srv, rt.RealtimeSession(
        "local", url=srv.url, output_modalities=["text"]
    ) as s:
        third = s.expect(lambda ev: ev.get("type") == "response.output_text.delta"
                         and ev.get("delta") == "three ")
        done = s.expect("response.done")
        s.say("count")
        third.wait()
        row = s.df.iloc[-1]
        assert row["status"] == "in_progress" and row["text"].startswith("one two three")
        assert len(row["text"].split()) < 10
        done.wait()
        assert s.df.iloc[-1]["text"] == "one two three four five six seven eight nine ten"


def test_delete_and_truncate_show_in_the_frame(server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=server.url) as s:
        s.ask("Say something rather long so that there is audio to cut.")
        user_id, bot_id = s.df["item_id"]
        assert s.df.iloc[1]["audio_out_s"] > 1.0
        s.truncate(bot_id, audio_end_ms=500)
        bot = s.df.iloc[1]
        assert bot["truncated_ms"] == 500 and bot["audio_out_s"] == pytest.approx(0.5)
        s.delete(user_id)
        assert list(s.df["item_id"]) == [bot_id] and s.df.iloc[0]["position"] == 0


def test_audio_seconds_in_for_vad_and_prerecorded_turns(server: LocalServer) -> None:
    pcm = utterance()
    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"]) as s:
        done = s.expect("response.done")
        s.send_audio_item(pcm, transcript="hello")
        done.wait()
        assert s.df.iloc[0]["audio_in_s"] == pytest.approx(len(pcm) / 48000)
        done = s.expect("response.done")
        for i in range(0, len(pcm), 960):
            s.send_audio(pcm[i : i + 960])
        done.wait()
        vad_row = s.df.iloc[2]
        assert vad_row["role"] == "user" and 1.0 < vad_row["audio_in_s"] < 3.0


def test_frame_is_cached_until_the_conversation_changes(session: rt.RealtimeSession) -> None:
    session.ask("one")
    cache = session.aio.frames
    _ = session.df
    builds = cache.builds
    for _ in range(5):
        _ = session.df
    assert cache.builds == builds
    session.ask("two")
    _ = session.df
    assert cache.builds == builds + 1


def test_event_log_frame_summarises_audio(server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=server.url) as s:
        s.send_audio(utterance()[:9600])
        s.ask("Speak.")
        log = s.events
    assert {"in", "out"} == set(log["direction"])
    assert str(log["at"].dtype) == "datetime64[us, UTC]"
    deltas = log[log["type"] == "response.output_audio.delta"]
    appends = log[log["type"] == "input_audio_buffer.append"]
    assert len(deltas) and len(appends)
    biggest = max(len(json.dumps(p)) for p in [*deltas["payload"], *appends["payload"]])
    assert biggest < 400 and deltas["size"].min() > 1000


@pytest.mark.parametrize("suffix", [".parquet", ".json", ".jsonl"])
def test_export_and_load_round_trip(session: rt.RealtimeSession, tmp_path: Path,
                                    suffix: str) -> None:
    @rt.tool
    def get_weather(city: str) -> str:
        raise RuntimeError("offline")

    session.update(tools=rt.tools)
    session.ask("Hi there")
    session.ask("weather in Oslo")
    df = session.df
    path = session.export(tmp_path / f"talk{suffix}")
    back = rt.load_conversation(path)
    pd.testing.assert_frame_equal(back, df, check_exact=False, atol=1e-6)


def test_live_view_redraws_at_a_bounded_rate() -> None:
    conv = Conversation()
    shown: list[Any] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(obj)

    listeners: list[Any] = []

    def subscribe(cb: Any) -> Any:
        listeners.append(cb)
        return lambda: listeners.remove(cb)

    view = LiveView(FrameCache(conv), subscribe, rows=5, max_rate=4.0,
                    display=lambda obj, display_id: Handle())
    started = time.monotonic()
    for i in range(300):
        conv.apply({"type": "conversation.item.added", "item": {
            "id": f"i{i}", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": str(i)}]}})
        listeners[0]({})
        time.sleep(0.002)  # the updates arrive over time: that is what is rate-limited
    elapsed = time.monotonic() - started
    # the last update is drawn by a timer, after the interval
    eventually(lambda: shown and list(shown[-1]["text"]) == ["295", "296", "297", "298", "299"], 5,
               "the last rows drawn")
    view.stop()
    assert 1 <= view.redraws <= elapsed * 4 + 2
    assert not listeners


def test_deleted_items_can_be_included_on_request() -> None:
    conv = Conversation()
    conv.apply({"type": "conversation.item.added", "item": {"id": "a", "type": "message",
                                                            "role": "user", "content": []}})
    conv.apply({"type": "conversation.item.deleted", "item_id": "a"})
    assert conversation_frame(conv).empty
    assert list(conversation_frame(conv, include_deleted=True)["status"]) == ["deleted"]


def test_the_live_view_shows_the_columns_a_person_reads_unless_asked_for_more() -> None:
    from rtwidget.data.frame import READABLE

    conv = Conversation()
    conv.apply({"type": "conversation.item.added", "item": {
        "id": "i0", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}})
    shown: list[Any] = []

    def show(obj: Any, display_id: bool) -> None:
        shown.append(obj)

    def subscribe(cb: Any) -> Any:
        return lambda: None

    LiveView(FrameCache(conv), subscribe, display=show)
    LiveView(FrameCache(conv), subscribe, display=show, columns="all")
    LiveView(FrameCache(conv), subscribe, display=show, columns=["text"])
    assert [list(f.columns) for f in shown] == [list(READABLE), list(COLUMNS), ["text"]]
    assert shown[0]["text"].iloc[0] == "hello"
    with pytest.raises(rt.InvalidInput):
        LiveView(FrameCache(conv), subscribe, display=show, columns=["nope"])


class _Words:
    """A speech-to-text engine that hears the same words in any audio."""

    def transcribe(self, pcm: bytes) -> str:
        return "hello there"


def test_a_diarised_turn_shows_its_speaker_and_segment() -> None:
    pcm = utterance()
    with LocalServer(engine=ScriptedReplyEngine(), transcriber=_Words(), pace=0.005) as server, \
            rt.RealtimeSession("local", url=server.url, output_modalities=["text"],
                               transcription="gpt-4o-transcribe-diarize") as s:
        for i in range(0, len(pcm), 960):
            s.send_audio(pcm[i : i + 960])
        eventually(lambda: s.segments.shape[0] == 1)
        user = s.df.iloc[0]
        assert (user["role"], user["speakers"]) == ("user", "A")
        [segment] = json.loads(user["segments"])
        assert segment["speaker"] == "A" and segment["text"] == "hello there"
        assert 0 == segment["start_ms"] < segment["end_ms"]
        assert s.segments.iloc[0]["item_id"] == user["item_id"]
