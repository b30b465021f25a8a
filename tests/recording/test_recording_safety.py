"""A recording someone sent you is read as untrusted: only the regular files directly inside its
folder, of bounded size, and anything that is not a recording is one RecordingError naming the
file (and the line). The recording tampered with here was made by a real session against a real
local server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rtwidget as rt
from rtwidget.recording import files
from rtwidget.server import LocalServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording with audio both ways: a spoken reply, and an audio item sent."""
    folder = tmp_path_factory.mktemp("made") / "rec"
    with LocalServer() as srv, rt.RealtimeSession("local", url=srv.url, record=folder) as s:
        s.ask("hello there", timeout=30)
        s.send_audio_item(np.zeros(4800, dtype=np.int16), respond=False)
        s.ask("and again", timeout=30)
    rec = rt.load_recording(folder)
    assert rec.problems == [] and len(rec.track("received")) > 0
    assert any(r["field"].startswith("item.content.") for e in rec.entries
               for r in e.get("audio", []))
    return folder


@pytest.fixture
def copy(original: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "sent-to-you"
    shutil.copytree(original, folder)
    return folder


def lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def write_lines(folder: Path, entries: list[Any]) -> None:
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def refused(folder: Path, *fragments: str) -> str:
    with pytest.raises(rt.RecordingError) as caught:
        rec = rt.load_recording(folder)
        _ = (rec.track("sent"), rec.track("received"), rec.df)  # what a user does next
    message = str(caught.value)
    assert isinstance(caught.value, rt.RealtimeError)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- meta.json --------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "fragment"), [
    (b'{"format": "rtwidget-recording", "version": 1,', "meta.json line 1: not valid JSON"),
    (b'["rtwidget-recording", 1]', "not a JSON object"),
    (b"\xff\xfe\x00binary", "meta.json is not UTF-8 text"),
    (b'{"format": "rtwidget-recording", "version": 1, "tracks": []}', "'tracks'"),
    (b'{"format": "rtwidget-recording", "version": 1, "config": "x"}', "'config'"),
    (b'{"format": "rtwidget-recording", "version": 1, "tracks": {"sent": 5}}', "'sent' track"),
    (b'{"format": "rtwidget-recording", "version": "1"}', "version 1"),
    (b"[" * 100_000, "meta.json"),
])
def test_a_malformed_meta_json_is_one_clear_error(copy: Path, content: bytes,
                                                  fragment: str) -> None:
    (copy / "meta.json").write_bytes(content)
    refused(copy, fragment)


# --- events.jsonl -----------------------------------------------------------------------------


def test_a_missing_binary_or_oversized_events_file_is_one_clear_error(
        copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (copy / "events.jsonl").unlink()
    refused(copy, "events.jsonl is missing")
    (copy / "events.jsonl").write_bytes(b"\x80\x81" + os.urandom(4096))
    refused(copy, "events.jsonl line 1: not UTF-8 text")
    (copy / "events.jsonl").write_bytes(b"\0" * 5000)  # /dev/zero copied: no line ends
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 1000)
    refused(copy, "events.jsonl line 1 is longer than 1000 bytes")
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 10_000_000)
    write_lines(copy, [{"t": 1, "dir": "local", "event": {"type": "x"}}] * 100)
    monkeypatch.setattr(files, "MAX_EVENTS_BYTES", 1000)
    refused(copy, "events.jsonl is", "at most 1000 bytes")


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda e: "not json at all", "not an event record"),
    (lambda e: {**e, "event": ["type"]}, "'event' is not an event"),
    (lambda e: {**e, "event": {"no": "type"}}, "'event' is not an event"),
    (lambda e: {**e, "t": "soon"}, "'t' is 'soon'"),
    (lambda e: {**e, "t": -5}, "'t' is -5"),
    (lambda e: {**e, "dir": "sideways"}, "'dir' is 'sideways'"),
    (lambda e: {**e, "size": -1}, "'size' is -1"),
    (lambda e: {**e, "size": "big"}, "'size' is 'big'"),
    (lambda e: {**e, "audio": "sent.wav"}, "'audio' is not a list"),
    (lambda e: {**e, "audio": [{"field": "audio", "track": "../../etc/passwd", "offset": 0,
                                "bytes": 4}]}, "names no track"),
    (lambda e: {**e, "audio": [{"field": "audio", "track": "sent", "offset": "0",
                                "bytes": 4}]}, "'offset'"),
    (lambda e: {**e, "audio": [{"field": "audio", "track": "sent", "offset": 0,
                                "bytes": -4}]}, "'bytes'"),
    (lambda e: {**e, "audio": [{"field": "__class__", "track": "sent", "offset": 0,
                                "bytes": 4}]}, "not a place for audio"),
    (lambda e: {**e, "audio": [{"field": "item.content.9.audio", "track": "sent",
                                "offset": 0, "bytes": 4}]}, "names no content part"),
])
def test_a_field_of_the_wrong_type_is_an_error_naming_the_file_and_line(
        copy: Path, change: Callable[[dict[str, Any]], Any], fragment: str) -> None:
    entries = lines(copy)
    entries[2] = change(entries[2])
    write_lines(copy, entries)
    refused(copy, "events.jsonl line 3", fragment)


def test_only_a_torn_last_line_is_skipped(copy: Path) -> None:
    text = (copy / "events.jsonl").read_text().splitlines()
    (copy / "events.jsonl").write_text("\n".join([*text, '{"t": 1, "dir": "in", "ev']))
    assert len(rt.load_recording(copy).problems) == 1  # a crash mid-write
    text.insert(4, '{"t": 1, "dir": "in", "ev')
    (copy / "events.jsonl").write_text("\n".join(text) + "\n")
    refused(copy, "events.jsonl line 5: not valid JSON")  # tampering, not a crash


def test_odd_contents_of_well_formed_lines_still_load(copy: Path) -> None:
    entries = lines(copy)
    entries += [
        {"t": 99, "dir": "out", "event": {"type": "input_audio_buffer.append", "audio": "!!"}},
        {"t": 99, "dir": "out", "event": {"type": "conversation.item.create", "item": [1]}},
        {"t": 99, "dir": "out", "event": {"type": "conversation.item.create",
                                          "item": {"id": "i", "content": [{"audio": 5}]}}},
        {"t": 99, "dir": "in", "event": {"type": "input_audio_buffer.speech_started",
                                         "item_id": "u", "audio_start_ms": "soon"}},
        {"t": 99, "dir": "in", "event": {"type": "input_audio_buffer.speech_stopped",
                                         "item_id": "u", "audio_end_ms": float("inf")}},
        {"t": 99, "dir": "in", "event": {"type": "response.done", "response": "done"}},
        {"t": 99, "dir": "local", "event": {"type": "rtwidget.tool_result", "call_id": 7}},
    ]
    (copy / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    rec = rt.load_recording(copy)
    assert len(rec.df) > 0 and len(rec.events) > 0 and rec.problems == []


# --- what is read: only the folder's own regular files -------------------------------------


def outside_wav(tmp_path: Path, channels: int = 1) -> Path:
    wav = tmp_path / "outside.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(b"\x01\x02" * 4800 * channels)
    return wav


@pytest.mark.parametrize("name", ["ABSOLUTE", "../outside.wav", "../../outside.wav",
                                  "sub/sent.wav", "..", ".", "", 42, None, "a\\..\\b.wav",
                                  "C:outside.wav"])
def test_a_track_named_outside_the_folder_is_refused(copy: Path, tmp_path: Path,
                                                     name: Any) -> None:
    wav = outside_wav(tmp_path)
    meta = json.loads((copy / "meta.json").read_text())
    meta["tracks"]["sent"]["file"] = str(wav) if name == "ABSOLUTE" else name
    (copy / "meta.json").write_text(json.dumps(meta))
    refused(copy, "meta.json", "not the name of a file in the recording's folder")


def test_symbolic_links_devices_and_folders_are_not_read(copy: Path, tmp_path: Path) -> None:
    wav = outside_wav(tmp_path)
    (copy / "sent.wav").unlink()
    (copy / "sent.wav").symlink_to(wav)
    refused(copy, "sent.wav is a symbolic link")
    (copy / "sent.wav").unlink()
    (copy / "sent.wav").mkdir()
    refused(copy, "sent.wav is not a regular file")
    (copy / "sent.wav").rmdir()
    shutil.copy(wav, copy / "sent.wav")
    (copy / "events.jsonl").rename(tmp_path / "events.jsonl")
    (copy / "events.jsonl").symlink_to("/dev/zero")
    refused(copy, "events.jsonl is a symbolic link")
    (copy / "events.jsonl").unlink()
    (copy / "events.jsonl").symlink_to(tmp_path / "events.jsonl")  # a good file, elsewhere
    refused(copy, "events.jsonl is a symbolic link")
    (copy / "events.jsonl").unlink()
    os.mkfifo(copy / "events.jsonl")  # a reader would wait forever
    refused(copy, "events.jsonl is not a regular file")
    (copy / "events.jsonl").unlink()
    (tmp_path / "events.jsonl").rename(copy / "events.jsonl")
    meta = copy / "meta.json"
    meta.rename(tmp_path / "meta.json")
    meta.symlink_to(tmp_path / "meta.json")
    refused(copy, "meta.json is a symbolic link")


def test_a_track_that_is_not_a_recordings_wav_is_one_clear_error(copy: Path,
                                                                tmp_path: Path) -> None:
    (copy / "sent.wav").write_text("not a wav file")
    refused(copy, "sent.wav is not a readable WAV file")
    shutil.copy(outside_wav(tmp_path, channels=2), copy / "sent.wav")
    refused(copy, "sent.wav has 2 channel(s)")


def test_a_well_formed_copy_still_loads_with_its_audio(copy: Path, original: Path) -> None:
    rec, source = rt.load_recording(copy), rt.load_recording(original)
    assert rec.track("sent") == source.track("sent") and rec.track("received")
    assert rec.df.equals(source.df)
    with pytest.raises(rt.RecordingError):
        rec.track("../meta")
