"""The recording format: sessions written to a folder in an open format.

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
import io
import wave
from collections.abc import Sequence
from typing import Any

from .audio import SAMPLE_RATE
from .errors import InvalidInput

FORMAT = "rtwidget-recording"
VERSION = 1
TRACKS = ("sent", "received")
AUDIO_DELTAS = {"response.output_audio.delta", "response.audio.delta"}
REDACTED = "[redacted]"
APPEND_KEYS = {"type", "event_id", "audio"}


class RecordingError(InvalidInput):
    """A recording that cannot give what was asked: a folder that is not a readable recording
    (missing files, wrong format version, a file that is a link or too big, a line that is not
    an event record: the message names the file and line), or an item with no audio."""


class RecordingExists(RecordingError, FileExistsError):
    """The folder given to record into already holds a recording (it is never overwritten)."""


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
    elif kind in AUDIO_DELTAS and take(event.get("delta"), "delta"):
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


def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buffer.getvalue()


