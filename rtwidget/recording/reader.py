"""Recorded sessions loaded back (the format: :mod:`rtwidget.protocol.record_format`)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..client.sync import RealtimeSession
from ..data.frame import conversation_frame, events_frame
from ..protocol.audio import BYTES_PER_MS
from ..protocol.conversation import Conversation
from ..protocol.errors import NotFound
from ..protocol.record_format import (
    FORMAT,
    TRACKS,
    VERSION,
    RecordingError,
    join_audio,
    wav_bytes,
)
from . import files
from .files import member, open_regular, read_json, read_lines, read_track
from .replay import Replay, replay

log = logging.getLogger("rtwidget.recording")

_DIRECTIONS = ("in", "out", "local")
_NESTED_AUDIO = re.compile(r"item\.content\.(\d{1,6})\.audio")


def _number(value: Any, name: str, minimum: float = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name!r} is {value!r:.60}; expected a number of at least {minimum}")


def check_entry(entry: Any) -> dict[str, Any]:
    """``entry`` (one parsed line of ``events.jsonl``) if it has the shape the format gives
    every line; else :class:`ValueError` saying what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError("not an event record (a JSON object)")
    event = entry.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ValueError("'event' is not an event (an object with a 'type')")
    _number(entry.get("t"), "t")
    if entry.get("dir") not in _DIRECTIONS:
        raise ValueError(f"'dir' is {entry.get('dir')!r:.60}; expected in, out or local")
    if "size" in entry and (not isinstance(entry["size"], int) or entry["size"] < 0
                            or isinstance(entry["size"], bool)):
        raise ValueError(f"'size' is {entry['size']!r:.60}; expected a whole number of bytes")
    refs = entry.get("audio", [])
    if not isinstance(refs, list):
        raise ValueError("'audio' is not a list of places in the tracks")
    for ref in refs:
        if not isinstance(ref, dict) or ref.get("track") not in TRACKS:
            raise ValueError(f"an audio reference {ref!r:.80} names no track of {TRACKS}")
        for key in ("offset", "bytes"):
            if isinstance(ref.get(key), bool) or not isinstance(ref.get(key), int) \
                    or ref[key] < 0:
                raise ValueError(f"an audio reference's {key!r} is {ref.get(key)!r:.40}")
        where = ref.get("field")
        nested = _NESTED_AUDIO.fullmatch(where) if isinstance(where, str) else None
        if where not in ("audio", "delta") and nested is None:
            raise ValueError(f"an audio reference's field {where!r:.60} is not a place for "
                             "audio")
        if nested is not None:
            content = event.get("item", {}).get("content") \
                if isinstance(event.get("item"), dict) else None
            index = int(nested.group(1))
            if not isinstance(content, list) or index >= len(content) \
                    or not isinstance(content[index], dict):
                raise ValueError(f"an audio reference's field {where!r} names no content part")
    return entry


def _check_meta(meta: Any, file: Path) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise RecordingError(f"{file} holds {type(meta).__name__}, not a JSON object")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise RecordingError(f"{file.parent} is {str(meta.get('format'))[:60]} version "
                             f"{str(meta.get('version'))[:20]}; this rtwidget reads {FORMAT} "
                             f"version {VERSION}")
    for key in ("tracks", "config", "endpoint"):
        if key in meta and not isinstance(meta[key], dict):
            raise RecordingError(f"{file}: {key!r} is not a JSON object")
    for name, track in meta.get("tracks", {}).items():
        if name in TRACKS and not isinstance(track, dict):
            raise RecordingError(f"{file}: the {name!r} track is not a JSON object")
        if name in TRACKS:
            member(file.parent, track.get("file", f"{name}.wav"), f"the {name} track's file")
    return meta


def _pcm(value: Any) -> bytes:
    """Base64 audio as bytes; nothing for what is not base64 audio."""
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _ms(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 0 else 0


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
    _lines: list[int] = field(default_factory=list, repr=False)  # each entry's line number

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read the folder at ``path``: its ``meta.json``, ``events.jsonl`` and (when asked
        for audio) the tracks ``meta.json`` names, only as regular files directly inside the
        folder and of bounded size (:mod:`rtwidget.recording.files`). A torn last line (a
        recording cut off mid-write) is skipped and listed in :attr:`problems`; anything else
        that is not a recording raises :class:`~rtwidget.RecordingError` naming the file and
        line."""
        folder = Path(path)
        if not folder.is_dir():
            raise RecordingError(f"{folder} is not a folder; is it a recording?")
        meta_file = folder / "meta.json"
        if not meta_file.exists() and not meta_file.is_symlink():
            raise RecordingError(f"{folder} has no meta.json; is it a recording?")
        meta = _check_meta(read_json(meta_file), meta_file)
        for name in TRACKS:  # refused now, not when the audio is first asked for
            with open_regular(cls._track_file(folder, meta, name), files.MAX_TRACK_BYTES,
                              missing_ok=True):
                pass
        events_file = folder / "events.jsonl"
        entries, numbers, problems = [], [], []
        torn: tuple[int, str] | None = None
        with contextlib.closing(read_lines(events_file)) as lines:  # closed when one is refused
            for number, line in lines:
                if not line.strip():
                    continue
                if torn is not None:  # a line that cannot be parsed, and not the last one
                    raise RecordingError(f"{events_file} line {torn[0]}: {torn[1]}")
                try:
                    entry = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    torn = (number, f"not valid JSON ({exc})"[:200])
                    continue
                try:
                    entries.append(check_entry(entry))
                except ValueError as exc:
                    raise RecordingError(f"{events_file} line {number}: {exc}") from None
                numbers.append(number)
        if torn is not None:
            problems.append(f"events.jsonl line {torn[0]}: {torn[1]}; a recording cut off "
                            "mid-write, skipped")
        return cls(folder, meta, entries, problems, _lines=numbers)

    @staticmethod
    def _track_file(folder: Path, meta: dict[str, Any], name: str) -> Path:
        track = meta.get("tracks", {}).get(name, {})
        return member(folder, track.get("file", f"{name}.wav"), f"the {name} track's file")

    def track(self, name: str) -> bytes:
        """All the PCM16 audio of the ``sent`` or ``received`` track."""
        if name not in TRACKS:
            raise RecordingError(f"a recording has the tracks {TRACKS}, not {name!r}")
        if name not in self._tracks:
            self._tracks[name] = read_track(self._track_file(self.path, self.meta, name))
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
        for index, (entry, event) in enumerate(self.events_with_audio()):
            try:
                now[0] = float(entry.get("t", 0.0))
                self._replay_entry(conversation, entry, event, buffer, spans)
            except RecordingError:
                raise
            except Exception as exc:  # a line this version cannot make sense of
                line = self._lines[index] if index < len(self._lines) else index + 1
                raise RecordingError(f"{self.path / 'events.jsonl'} line {line}: "
                                     f"{type(exc).__name__}: {exc}"[:500]) from None
        return conversation

    def _replay_entry(self, conversation: Conversation, entry: dict[str, Any],
                      event: dict[str, Any], buffer: bytearray, spans: dict[str, int]) -> None:
        direction, kind = entry.get("dir"), event.get("type")
        size = entry.get("size", 0) if isinstance(entry.get("size"), int) else 0
        if direction == "out":
            conversation.record_sent(event, size)
            if kind == "input_audio_buffer.append":
                buffer += _pcm(event.get("audio"))
            elif kind == "conversation.item.create":
                self._keep_item_audio(event)
        elif direction == "in":
            conversation.apply(event, size)
            item_id = str(event.get("item_id", ""))
            if kind == "session.created":
                buffer.clear()
            elif kind == "input_audio_buffer.speech_started":
                spans[item_id] = _ms(event.get("audio_start_ms")) * BYTES_PER_MS
            elif kind == "input_audio_buffer.speech_stopped" and item_id in spans:
                end = _ms(event.get("audio_end_ms")) * BYTES_PER_MS
                self._user_audio[item_id] = bytes(buffer[spans.pop(item_id):end])
        else:
            conversation.note(event)

    def _keep_item_audio(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("content"), list):
            return
        audio = b"".join(_pcm(p.get("audio")) for p in item["content"] if isinstance(p, dict))
        if audio and isinstance(item.get("id"), str):
            self._user_audio[item["id"]] = audio

    @property
    def df(self) -> pd.DataFrame:
        """The conversation as the same DataFrame a live session gives (``rtwidget.COLUMNS``),
        priced for the provider it was recorded with."""
        endpoint = self.meta.get("endpoint")
        provider = endpoint.get("provider") if isinstance(endpoint, dict) else None
        return conversation_frame(self.conversation,
                                  provider=provider if isinstance(provider, str) else None)

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
            raise RecordingError(f"item {item!r} has no audio in this recording")
        return Audio(data=wav_bytes(pcm), autoplay=False)

    def replay(self, session: RealtimeSession | None = None, **options: Any) -> Replay:
        """Send the user's side of this recording again, with today's tools and configuration;
        see :func:`rtwidget.recording.replay.replay` for the options (``speed``, ``provider``,
        ``tools``, configuration keywords...)."""
        return replay(self, session, **options)

    def _item(self, item: str | int) -> str:
        if isinstance(item, str):
            if self.conversation.get(item) is None:
                raise NotFound(f"no item {item!r} in this recording")
            return item
        items = list(self.conversation)
        if not -len(items) <= item < len(items):
            raise NotFound(f"position {item} is outside the conversation's "
                             f"{len(items)} items")
        return items[item].id

    def __repr__(self) -> str:
        return (f"<Recording {self.path.name}: {len(self.entries)} events, "
                f"{len(self.conversation)} items>")


def load_recording(path: str | Path) -> Recording:
    """Load a session recorded with ``record=`` (see :mod:`rtwidget.protocol.record_format`)."""
    return Recording.load(path)
