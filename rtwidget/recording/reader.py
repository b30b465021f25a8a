"""Recorded sessions loaded back (the format: :mod:`rtwidget.protocol.record_format`)."""

from __future__ import annotations

import base64
import json
import logging
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..client.sync import RealtimeSession
from ..data.frame import conversation_frame, events_frame
from ..protocol.conversation import Conversation
from ..protocol.record_format import FORMAT, VERSION, RecordingError, join_audio, wav_bytes
from .replay import Replay, replay

log = logging.getLogger("rtwidget.recording")


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
        return conversation_frame(self.conversation)

    @property
    def events(self) -> pd.DataFrame:
        """The event log as the same DataFrame a live session gives."""
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
        return Audio(data=wav_bytes(pcm), autoplay=False)

    def replay(self, session: RealtimeSession | None = None, **options: Any) -> Replay:
        """Send the user's side of this recording again, with today's tools and configuration;
        see :func:`rtwidget.recording.replay.replay` for the options (``speed``, ``provider``,
        ``tools``, configuration keywords...)."""
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
    """Load a session recorded with ``record=`` (see :mod:`rtwidget.protocol.record_format`)."""
    return Recording.load(path)
