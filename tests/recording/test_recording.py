"""Recording a session to a folder, loading it back, replaying it, and the per-turn latency."""

from __future__ import annotations

import json
import math
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import RULES, frames, utterance

import rtwidget as rt
from rtwidget.protocol.record_format import RecordingError, join_audio, split_audio
from rtwidget.recording.replay import answer_times, plan
from rtwidget.server import LocalServer, ScriptedReplyEngine

SECRET = "sk-test-0123456789abcdefSECRET"


@pytest.fixture(scope="module")
def rt_server() -> Iterator[LocalServer]:
    """The replay fixture's server, scripted so the outcomes are exact (a user's conftest can
    override ``rt_server`` the same way)."""
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        yield srv


def weather_v1(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def weather_v2(city: str) -> str:
    """Current weather in a city."""
    return f"raining in {city}"


def record_session(server: LocalServer, folder: Path, **options: object) -> pd.DataFrame:
    """A typed turn with a tool call, a pause, a spoken turn (server VAD), an audio item."""
    rt.tool(weather_v1, name="get_weather")
    with rt.RealtimeSession("local", url=server.url, record=folder, **options) as s:
        s.ask("what is the weather in Paris")
        time.sleep(0.6)  # the user thinks before speaking
        spoken = s.expect(lambda e: e["type"] == "response.done" and any(
            o.get("type") == "message" for o in e["response"]["output"]), timeout=30)
        for frame in frames(utterance()):
            s.send_audio(frame)
        spoken.wait()
        item = s.expect("response.done", timeout=30)
        s.send_audio_item(utterance("a short recorded note", lead_ms=50, tail_ms=50))
        item.wait()
        s.close()
        return s.df


@pytest.fixture(scope="module")
def recorded(rt_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("rec") / "session"
    rt.tools.clear()
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES), token=SECRET) as guarded:
        df = record_session(guarded, folder, api_key=SECRET,
                            instructions=f"Be brief. (pasted by mistake: {SECRET})")
    rt.tools.clear()
    events = rt.load_recording(folder).events  # the live events frame is compared below
    return folder, df, events


def test_a_loaded_recording_gives_the_live_dataframes(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame], rt_server: LocalServer) -> None:
    folder, live, _ = recorded
    rec = rt.load_recording(folder)
    pd.testing.assert_frame_equal(rec.df, live)
    assert list(live["role"]) == ["user", "assistant", "tool", "assistant", "user", "assistant",
                                  "user", "assistant"]
    assert rec.problems == []
    # and the event log too, for a session recorded and compared while still open
    rt.tool(weather_v1, name="get_weather")
    with rt.RealtimeSession("local", url=rt_server.url, record=folder.parent / "open") as s:
        s.ask("what is the weather in Rome")
        assert s.aio.recorder is not None and s.aio.recorder.flush()  # still recording
        live_events, live_df = s.events, s.df
        reopened = rt.load_recording(folder.parent / "open")
        pd.testing.assert_frame_equal(reopened.events, live_events)
        pd.testing.assert_frame_equal(reopened.df, live_df)


def test_the_files_are_open_formats_with_every_byte_of_audio(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    folder, live, _ = recorded
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == "rtwidget-recording" and meta["version"] == 1
    assert meta["config"]["tools"][0]["name"] == "get_weather"
    lines = pd.read_json(folder / "events.jsonl", lines=True)
    assert set(lines["dir"]) == {"in", "out", "local"}
    for name in ("sent", "received"):
        with wave.open(str(folder / f"{name}.wav")) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
            assert w.getnframes() * 2 == meta["tracks"][name]["bytes"] > 0
    rec = rt.load_recording(folder)
    received = sum(len(rec.audio(i)) for i in live.index[live["role"] == "assistant"])
    assert received == meta["tracks"]["received"]["bytes"]
    spoken = live.index[(live["role"] == "user") & (live["audio_in_s"] > 1)][0]
    assert len(rec.audio(int(spoken))) / 48000 == pytest.approx(live.loc[spoken, "audio_in_s"])
    player = rec.play(int(spoken))
    assert player.data[:4] == b"RIFF"


def test_no_secret_is_written_anywhere(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    folder, _, _ = recorded
    for file in folder.iterdir():
        assert SECRET.encode() not in file.read_bytes(), file.name
    assert "[redacted]" in (folder / "events.jsonl").read_text()


def test_a_torn_last_line_or_a_foreign_folder_is_reported(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    folder, live, _ = recorded
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    with (copy / "events.jsonl").open("a") as f:
        f.write('{"t": 1, "dir": "in", "ev')  # the kernel died mid-write
    rec = rt.load_recording(copy)
    assert len(rec.problems) == 1 and "line" in rec.problems[0]
    pd.testing.assert_frame_equal(rec.df, live)
    with pytest.raises(RecordingError, match=r"no meta\.json"):
        rt.load_recording(tmp_path)
    (tmp_path / "meta.json").write_text('{"format": "something-else", "version": 9}')
    with pytest.raises(RecordingError, match="something-else version 9"):
        rt.load_recording(tmp_path)
    with pytest.raises(FileExistsError):
        rt.RealtimeSession(record=folder, connect=False).aio._open_recorder()


def test_audio_moves_out_of_events_and_back_unchanged() -> None:
    pcm = bytes(range(256)) * 10
    import base64

    b64 = base64.b64encode(pcm).decode()
    for event in [{"type": "input_audio_buffer.append", "audio": b64},
                  {"type": "response.output_audio.delta", "item_id": "i", "delta": b64},
                  {"type": "conversation.item.create", "item": {"type": "message", "content": [
                      {"type": "input_text", "text": "hi"}, {"type": "input_audio",
                                                             "audio": b64}]}}]:
        stripped, pieces = split_audio(event)
        assert b64 not in json.dumps(stripped) and [p for _, p in pieces] == [pcm]
        assert join_audio(stripped, pieces) == event
    text = {"type": "response.output_text.delta", "delta": "a" * 100}
    assert split_audio(text) == (text, [])  # a text delta is not audio
    bad = {"type": "input_audio_buffer.append", "audio": "not base64!"}
    assert split_audio(bad) == (bad, [])


def test_replay_with_a_changed_tool_shows_the_change(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame], rt_replay) -> None:
    folder, live, _ = recorded
    rt.tool(weather_v2, name="get_weather")
    run = rt_replay(folder)
    assert run.problems == []
    changed = run.diff(only_changed=True)
    assert list(changed["aspect"]) == ["tool outputs", "reply"]
    assert set(changed["turn"]) == {0}
    assert changed.iloc[0]["old"] == "sunny in Paris" and changed.iloc[0]["new"] == \
        "raining in Paris"
    assert "raining in Paris" in changed.iloc[1]["new"]
    whole = run.diff()
    assert len(whole) == 3 * 4  # three user turns, four aspects each
    same = whole[~whole["changed"]]
    assert "tool calls" in set(same["aspect"])  # the model still calls get_weather(Paris)
    # the spoken turn and the audio item were sent again: same audio, same lengths
    users = run.df[run.df["role"] == "user"]
    assert list(users["audio_in_s"].round(2)) == list(
        live[live["role"] == "user"]["audio_in_s"].round(2))


def test_replay_keeps_the_recorded_pauses_scaled_by_speed(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame], rt_server: LocalServer) -> None:
    folder, _, _ = recorded
    rec = rt.load_recording(folder)
    rt.tool(weather_v1, name="get_weather")
    gaps = {}
    for speed in (1.0, math.inf):
        with rt.RealtimeSession("local", url=rt_server.url) as s:
            run = rec.replay(s, speed=speed)
            assert run.problems == []
            # the pause between the first answer and the first mic frame after it
            answer = answer_times(s.conversation)[0]
            first_audio = next(e.at for e in s.conversation.log if e.direction == "out"
                               and e.type == "input_audio_buffer.append")
            gaps[speed] = first_audio - answer
    recorded_answer = answer_times(rec.conversation)[0]
    recorded_gap = next(a.at for a in plan(rec)
                        if a.event["type"] == "input_audio_buffer.append") - recorded_answer
    assert recorded_gap >= 0.5
    assert gaps[1.0] >= 0.9 * recorded_gap
    assert gaps[math.inf] < gaps[1.0]


def test_replay_sends_only_the_users_side(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    rec = rt.load_recording(recorded[0])
    kinds = [a.event["type"] for a in plan(rec)]
    assert "session.update" not in kinds
    assert kinds.count("response.create") == 2  # the typed turn and the audio item, not the
    creates = [a.event for a in plan(rec) if a.event["type"] == "conversation.item.create"]
    assert all(c["item"]["type"] == "message" for c in creates)  # tool's follow-up or output
    assert len(creates) == 2
    answers = [a.answers_before for a in plan(rec)]
    assert answers == sorted(answers) and answers[0] == 0 and answers[-1] == 2


def test_turn_latency_columns_are_ordered_from_the_end_of_speech(
        recorded: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    _, live, _ = recorded
    spoken = live[(live["role"] == "user") & live["vad_s"].notna()].iloc[0]
    stages = [spoken[c] for c in ("vad_s", "response_s", "audio_s")]
    assert all(s >= 0 for s in stages) and stages == sorted(stages)
    assert spoken["speech_end_at"] <= spoken["created_at"]  # speech ended before the item came
    typed = live[(live["role"] == "user") & live["vad_s"].isna()]
    assert typed["response_s"].notna().all() and typed["speech_end_at"].notna().all()
    assert live[live["role"] != "user"][["vad_s", "response_s", "played_s"]].isna().all().all()
    table = rt.turn_latency(live)
    assert list(table["kind"]) == ["typed", "spoken", "audio item"]
    assert (table[["reply_ms", "audio_ms"]].fillna(0) >= 0).all().all()
    import matplotlib

    matplotlib.use("Agg")
    ax = rt.plot_latency(live)
    assert len(ax.patches) >= 3 and ax.get_legend() is not None


def test_a_mic_frames_line_is_what_the_general_writer_would_write(tmp_path: Path) -> None:
    import base64

    from rtwidget.client.recorder import Recorder

    pcm = bytes(range(200)) * 5
    frame = {"type": "input_audio_buffer.append", "event_id": 'evt_"7"',
             "audio": base64.b64encode(pcm).decode()}
    recorder = Recorder(tmp_path / "r", {})
    recorder.write("out", frame, 1700000000.123456, 1400)
    recorder.write("out", {**frame, "audio": "not base64!"}, 1700000000.5, 30)
    recorder.close()
    first, second = (json.loads(line) for line in
                     (tmp_path / "r" / "events.jsonl").read_text().splitlines())
    stripped, _ = split_audio(frame)
    assert first == {"t": 1700000000.123456, "dir": "out", "size": 1400, "event": stripped,
                     "audio": [{"field": "audio", "track": "sent", "offset": 0, "bytes": 1000}]}
    assert second["event"]["audio"] == "not base64!" and "audio" not in second
    assert rt.load_recording(tmp_path / "r").track("sent") == pcm


def test_flush_returns_once_everything_queued_is_on_disk(tmp_path: Path) -> None:
    import base64

    from rtwidget.client.recorder import Recorder

    recorder = Recorder(tmp_path / "r", {})
    try:
        for n in range(200):
            recorder.write("in", {"type": "response.output_text.delta", "delta": str(n)},
                           float(n), 40)
        assert recorder.flush()
        lines = (tmp_path / "r" / "events.jsonl").read_text().splitlines()
        assert [json.loads(line)["event"]["delta"] for line in lines] == [
            str(n) for n in range(200)]
        pcm = bytes(range(256)) * 4
        recorder.write("out", {"type": "input_audio_buffer.append",
                               "audio": base64.b64encode(pcm).decode()}, 300.0, 1400)
        assert recorder.flush()  # the writer was pausing between batches: it waits for that
        assert rt.load_recording(tmp_path / "r").track("sent") == pcm  # the WAV header too
    finally:
        recorder.close()
    assert recorder.flush()  # closed: everything is written already


def test_history_restored_after_a_reconnect_is_not_replayed(tmp_path: Path) -> None:
    rt.tool(weather_v1, name="get_weather")
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        with rt.RealtimeSession("local", url=srv.url, record=tmp_path / "r",
                                output_modalities=["text"]) as s:
            s.ask("what is the weather in Oslo")
            reconnected = s.expect("rtwidget.reconnected", timeout=30)
            srv.close_connections(1001)
            reconnected.wait()
            s.ask("hello after the reconnect")
        rec = rt.load_recording(tmp_path / "r")
        actions = plan(rec)
        creates = [a.event["item"]["content"][0]["text"] for a in actions
                   if a.event["type"] == "conversation.item.create"]
        assert creates == ["what is the weather in Oslo", "hello after the reconnect"]
        assert [a.event["type"] for a in actions].count("response.create") == 2
        assert "rtwidget.reconnected" in set(rec.events["type"])
        run = rec.replay(url=srv.url, provider="local", speed=math.inf)
        try:
            assert run.problems == [] and not run.diff(only_changed=True).size
        finally:
            run.close()


def test_a_recording_that_cannot_write_stops_cleanly_and_says_why(tmp_path: Path) -> None:
    from rtwidget.client.recorder import Recorder

    recorder = Recorder(tmp_path / "r", {})
    recorder._events.close()  # as if the disk went away under it
    recorder.write("in", {"type": "session.created"}, 1.0, 10)
    recorder._thread.join(5)
    assert recorder.failed and "closed file" in recorder.failed
    recorder.write("in", {"type": "session.updated"}, 2.0, 10)
    assert recorder._queue.empty()  # nothing piles up once it has failed
    assert recorder.flush() is False  # at once: nothing will be written any more
    recorder.close()
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert "closed file" in meta["failed"]
