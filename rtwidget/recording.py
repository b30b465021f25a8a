"""Sessions recorded to a folder in an open format, and loaded back.

A recording is a folder with three files::

    meta.json       what was recorded: format version, when, the provider (no secrets), the
                    session configuration and tool definitions, the audio tracks' format
    events.jsonl    one JSON object per line, in order: every event sent ("out"), received
                    ("in") and noted by the client itself ("local": tool results, playback
                    starting in the browser, reconnects), with its time ``t`` (Unix seconds)
                    and size on the wire. Audio is not inlined: ``audio`` lists where each
                    payload's bytes are in a track.
    sent.wav        PCM16 24 kHz mono: every byte of audio sent (mic frames, audio items)
    received.wav    PCM16 24 kHz mono: every byte of audio received

Any tool reads it (``pandas.read_json(..., lines=True)``, ``soundfile``, ``wave``). The writer
runs on its own thread, so recording adds a queue put to the session's event path; it writes in
batches and keeps the WAV headers valid after each (every 0.1 s at most), so a kernel that dies
leaves a readable recording.
API keys are never written: the endpoint's URL is stored without its query, headers are not
stored, and any line containing the key is redacted.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
import logging
import queue
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from .protocol.audio import SAMPLE_RATE
from .protocol.conversation import Conversation

if TYPE_CHECKING:
    from .replay import Replay
    from .session import RealtimeSession

log = logging.getLogger("rtwidget.recording")

FORMAT = "rtwidget-recording"
VERSION = 1
TRACKS = ("sent", "received")
_AUDIO_DELTAS = {"response.output_audio.delta", "response.audio.delta"}
_REDACTED = "[redacted]"
_APPEND_KEYS = {"type", "event_id", "audio"}
_FLUSH_EVERY = 0.1  # seconds; what a crash can lose at most


class RecordingError(ValueError):
    """A folder that is not a readable recording (missing files, wrong format version)."""


def split_audio(event: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """``event`` without its base64 audio, and that audio decoded: ``[(field, pcm)]`` where
    ``field`` is ``audio``, ``delta`` or ``item.content.<i>.audio``. Payloads that are not valid
    base64 stay in the event as they were."""
    found: list[tuple[str, bytes]] = []
    out = event

    def take(value: Any, where: str) -> bool:
        if not isinstance(value, str) or not value:
            return False
        try:
            found.append((where, base64.b64decode(value, validate=True)))
        except (binascii.Error, ValueError):
            return False
        return True

    kind = event.get("type")
    if kind == "input_audio_buffer.append" and take(event.get("audio"), "audio"):
        out = {k: v for k, v in event.items() if k != "audio"}
    elif kind in _AUDIO_DELTAS and take(event.get("delta"), "delta"):
        out = {k: v for k, v in event.items() if k != "delta"}
    item = event.get("item")
    if isinstance(item, dict) and isinstance(item.get("content"), list):
        parts, nested = [], False
        for i, part in enumerate(item["content"]):
            if isinstance(part, dict) and take(part.get("audio"), f"item.content.{i}.audio"):
                part, nested = {k: v for k, v in part.items() if k != "audio"}, True
            parts.append(part)
        if nested:
            out = dict(out, item=dict(item, content=parts))
    return out, found


def join_audio(event: dict[str, Any], pieces: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """The inverse of :func:`split_audio`: put each piece back as base64 where it was."""
    out = dict(event)
    for where, pcm in pieces:
        text = base64.b64encode(pcm).decode("ascii")
        if where in ("audio", "delta"):
            out[where] = text
            continue
        index = int(where.split(".")[2])
        item = dict(out["item"])
        content = list(item["content"])
        content[index] = dict(content[index], audio=text)
        item["content"] = content
        out["item"] = item
    return out


def _wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buffer.getvalue()


class _Track:
    """An append-only PCM16 WAV file whose header is patched after every flush."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.file.write(_wav_bytes(b""))
        self.bytes = 0
        self._dirty = False

    def append(self, pcm: bytes) -> int:
        offset = self.bytes
        self.file.write(pcm)
        self.bytes += len(pcm)
        self._dirty = True
        return offset

    def flush(self) -> None:
        if not self._dirty:
            return
        header = _wav_bytes(b"")
        riff = (36 + self.bytes).to_bytes(4, "little")
        data = self.bytes.to_bytes(4, "little")
        self.file.seek(4)
        self.file.write(riff)
        self.file.seek(len(header) - 4)
        self.file.write(data)
        self.file.seek(0, io.SEEK_END)
        self.file.flush()
        self._dirty = False

    def close(self) -> None:
        self.flush()
        self.file.close()


class Recorder:
    """Writes a session to ``folder`` as it happens (see the module docstring).

    :meth:`write` is called from the session's loop and only queues; a thread does the I/O.
    ``secrets`` are strings that must never reach the disk (the API key); a line containing
    one is written with it replaced by ``[redacted]``.
    """

    def __init__(self, folder: str | Path, meta: dict[str, Any],
                 secrets: Sequence[str] = ()) -> None:
        self.folder = Path(folder)
        if (self.folder / "events.jsonl").exists():
            raise FileExistsError(f"{self.folder} already holds a recording; pick a new folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._secrets = [s for s in secrets if s and len(s) >= 4]
        self.meta = {"format": FORMAT, "version": VERSION,
                     "started": dt.datetime.now(dt.timezone.utc).isoformat(),
                     "tracks": {name: {"file": f"{name}.wav", "format": "audio/pcm",
                                       "rate": SAMPLE_RATE, "channels": 1, "sample": "int16"}
                                for name in TRACKS},
                     **meta}
        self._write_meta()
        self._events = (self.folder / "events.jsonl").open("w", encoding="utf-8")
        self._tracks = {name: _Track(self.folder / f"{name}.wav") for name in TRACKS}
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any], float, int] | None] = \
            queue.SimpleQueue()
        self.events = 0
        self.failed: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="rtwidget-recorder",
                                        daemon=True)
        self._thread.start()

    def write(self, direction: str, event: dict[str, Any], at: float, size: int) -> None:
        """Queue one event (``direction`` is ``in``, ``out`` or ``local``); nothing once the
        recording has failed (a full disk), so the queue cannot grow without end."""
        if self.failed is None:
            self._queue.put((direction, event, at, size))

    def close(self) -> None:
        """Write what is queued, finish the files and ``meta.json`` (which says if and why
        the recording stopped early)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self.meta.update(ended=dt.datetime.now(dt.timezone.utc).isoformat(), events=self.events,
                         **({"failed": self.failed} if self.failed else {}))
        for name, track in self._tracks.items():
            self.meta["tracks"][name]["bytes"] = track.bytes
        self._write_meta()

    def _write_meta(self) -> None:
        text = json.dumps(self.meta, indent=2, default=str)
        (self.folder / "meta.json").write_text(self._scrub(text) + "\n", encoding="utf-8")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def _drain(self) -> None:
        try:
            while True:
                record = self._queue.get()
                while record is not None:
                    self._line(*record)
                    try:
                        record = self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._events.flush()
                for track in self._tracks.values():
                    track.flush()
                if record is None:
                    break
                time.sleep(_FLUSH_EVERY)  # let a batch gather: one flush for many events
        except Exception as exc:  # a full disk must not take the session down
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("recording to %s stopped: %s; the session goes on", self.folder,
                        self.failed)
        finally:
            self._events.close()
            for track in self._tracks.values():
                track.close()

    def _line(self, direction: str, event: dict[str, Any], at: float, size: int) -> None:
        if direction == "out" and event.get("type") == "input_audio_buffer.append" and \
                event.keys() <= _APPEND_KEYS and isinstance(event.get("audio"), str):
            self._append_line(event, at, size)
            return
        stripped, pieces = split_audio(event)
        track = self._tracks["sent" if direction == "out" else "received"]
        refs = [{"field": where, "track": track.path.stem, "offset": track.append(pcm),
                 "bytes": len(pcm)} for where, pcm in pieces]
        line: dict[str, Any] = {"t": at, "dir": direction, "size": size, "event": stripped}
        if refs:
            line["audio"] = refs
        self._events.write(self._scrub(json.dumps(line, default=str)) + "\n")
        self.events += 1

    def _append_line(self, event: dict[str, Any], at: float, size: int) -> None:
        """The line for a mic frame (50 a second), written without the general machinery;
        :func:`split_audio` would give the same."""
        try:
            pcm = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError):
            pcm = None
        if pcm is None:
            line = json.dumps({"t": at, "dir": "out", "size": size, "event": event})
        else:
            offset = self._tracks["sent"].append(pcm)
            event_id = f', "event_id": {json.dumps(event["event_id"])}' \
                if "event_id" in event else ""
            line = (f'{{"t": {at!r}, "dir": "out", "size": {size}, "event": {{"type": '
                    f'"input_audio_buffer.append"{event_id}}}, "audio": [{{"field": "audio", '
                    f'"track": "sent", "offset": {offset}, "bytes": {len(pcm)}}}]}}')
        self._events.write(self._scrub(line) + "\n")
        self.events += 1


def _read_track(path: Path) -> bytes:
    if not path.exists():
        return b""
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


@dataclass
class Recording:
    """A recorded session, loaded (see :func:`load_recording`)."""

    path: Path
    meta: dict[str, Any]
    entries: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    _tracks: dict[str, bytes] = field(default_factory=dict, repr=False)
    _conversation: Conversation | None = field(default=None, repr=False)
    _user_audio: dict[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read the folder at ``path``; lines that cannot be parsed are skipped and listed in
        :attr:`problems`."""
        folder = Path(path)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordingError(f"{folder} has no meta.json; is it a recording?") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise RecordingError(f"{folder} is {meta.get('format')} version "
                                 f"{meta.get('version')}; this rtwidget reads {FORMAT} "
                                 f"version {VERSION}")
        entries, problems = [], []
        events = folder / "events.jsonl"
        for number, line in enumerate(events.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not isinstance(entry.get("event"), dict):
                    raise ValueError("not an event record")
                entries.append(entry)
            except ValueError as exc:  # a torn last line after a crash, say
                problems.append(f"events.jsonl line {number}: {exc}")
        return cls(folder, meta, entries, problems)

    def track(self, name: str) -> bytes:
        """All the PCM16 audio of the ``sent`` or ``received`` track."""
        if name not in self._tracks:
            file = self.meta.get("tracks", {}).get(name, {}).get("file", f"{name}.wav")
            self._tracks[name] = _read_track(self.path / file)
        return self._tracks[name]

    def events_with_audio(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """``(entry, event)`` in order, each event with its audio put back as sent."""
        for entry in self.entries:
            refs = entry.get("audio") or []
            pieces = [(r["field"], self.track(r["track"])[r["offset"]:r["offset"] + r["bytes"]])
                      for r in refs]
            yield entry, join_audio(entry["event"], pieces) if pieces else entry["event"]

    @property
    def conversation(self) -> Conversation:
        """The conversation rebuilt from the events, with the times they happened."""
        if self._conversation is None:
            self._conversation = self._rebuild()
        return self._conversation

    def _rebuild(self) -> Conversation:
        now = [0.0]
        conversation = Conversation(clock=lambda: now[0])
        buffer = bytearray()  # this connection's streamed mic audio, to cut VAD turns from
        spans: dict[str, int] = {}
        for entry, event in self.events_with_audio():
            now[0] = float(entry.get("t", 0.0))
            direction, kind = entry.get("dir"), event.get("type")
            if direction == "out":
                conversation.record_sent(event, int(entry.get("size", 0)))
                if kind == "input_audio_buffer.append":
                    buffer += base64.b64decode(event.get("audio", ""))
                elif kind == "conversation.item.create":
                    self._keep_item_audio(event)
            elif direction == "in":
                conversation.apply(event, int(entry.get("size", 0)))
                item_id = str(event.get("item_id", ""))
                if kind == "session.created":
                    buffer = bytearray()
                elif kind == "input_audio_buffer.speech_started":
                    spans[item_id] = int(event.get("audio_start_ms") or 0) * 48
                elif kind == "input_audio_buffer.speech_stopped" and item_id in spans:
                    end = int(event.get("audio_end_ms") or 0) * 48
                    self._user_audio[item_id] = bytes(buffer[spans.pop(item_id):end])
            else:
                conversation.note(event)
        return conversation

    def _keep_item_audio(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        audio = b"".join(base64.b64decode(p["audio"]) for p in item.get("content") or []
                         if isinstance(p, dict) and isinstance(p.get("audio"), str))
        if audio and isinstance(item.get("id"), str):
            self._user_audio[item["id"]] = audio

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as the same DataFrame a live session gives (``rtwidget.COLUMNS``)."""
        from .frame import conversation_frame

        return conversation_frame(self.conversation)

    @property
    def events(self) -> pd.DataFrame:
        """The event log as the same DataFrame a live session gives."""
        from .frame import events_frame

        return events_frame(self.conversation)

    def audio(self, item: str | int) -> bytes:
        """PCM16 24 kHz audio of one item, by id or by ``position`` in :attr:`df`: what the
        user said (their turn as the server's VAD cut it, or the audio item sent) or what the
        assistant said (as received; see ``truncated_ms`` for what was heard)."""
        found = self._item(item)
        conversation = self.conversation
        if found in self._user_audio:
            return self._user_audio[found]
        entry = conversation.get(found)
        return bytes(entry.audio) if entry is not None and entry.audio else b""

    def play(self, item: str | int) -> Any:
        """An inline audio player (``IPython.display.Audio``) for one item's audio."""
        from IPython.display import Audio

        pcm = self.audio(item)
        if not pcm:
            raise ValueError(f"item {item!r} has no audio in this recording")
        return Audio(data=_wav_bytes(pcm), autoplay=False)

    def replay(self, session: RealtimeSession | None = None, **options: Any) -> Replay:
        """Send the user's side of this recording again, with today's tools and configuration;
        see :func:`rtwidget.replay.replay` for the options (``speed``, ``provider``,
        ``tools``, configuration keywords...)."""
        from .replay import replay

        return replay(self, session, **options)

    def _item(self, item: str | int) -> str:
        if isinstance(item, str):
            if self.conversation.get(item) is None:
                raise KeyError(f"no item {item!r} in this recording")
            return item
        items = list(self.conversation)
        if not -len(items) <= item < len(items):
            raise IndexError(f"position {item} is outside the conversation's "
                             f"{len(items)} items")
        return items[item].id

    def __repr__(self) -> str:
        return (f"<Recording {self.path.name}: {len(self.entries)} events, "
                f"{len(self.conversation)} items>")


def load_recording(path: str | Path) -> Recording:
    """Load a session recorded with ``record=`` (see :mod:`rtwidget.recording`)."""
    return Recording.load(path)
