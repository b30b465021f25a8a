"""Writes a session to a folder as it happens.

The format is :mod:`rtwidget.protocol.record_format`; load it back with
:func:`rtwidget.load_recording`.
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
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..protocol.audio import SAMPLE_RATE
from ..protocol.errors import WaitTimeout
from ..protocol.record_format import (
    APPEND_KEYS,
    FORMAT,
    REDACTED,
    TRACKS,
    VERSION,
    RecordingExists,
    split_audio,
    wav_bytes,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("rtwidget.recording")


_FLUSH_EVERY = 0.1  # seconds; what a crash can lose at most
_Record = tuple[str, dict[str, Any], float, int]  # direction, event, time, size on the wire


class _Track:
    """An append-only PCM16 WAV file whose header is patched after every flush."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.file.write(wav_bytes(b""))
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
        header = wav_bytes(b"")
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

    :meth:`write` is called from the session's loop and only queues; a thread does the I/O,
    flushing to disk every ``0.1`` s at most; :meth:`flush` waits for what is queued so far.
    ``secrets`` are strings that must never reach the disk (the API key); a line containing
    one is written with it replaced by ``[redacted]``.
    """

    def __init__(self, folder: str | Path, meta: dict[str, Any],
                 secrets: Sequence[str] = ()) -> None:
        self.folder = Path(folder)
        if (self.folder / "events.jsonl").exists():
            raise RecordingExists(f"{self.folder} already holds a recording; pick a new folder")
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
        self._queue: queue.SimpleQueue[_Record | threading.Event | None] = queue.SimpleQueue()
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

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every event queued so far is written and flushed to disk, so a reader
        of the folder sees them (a recording is also readable while it is being made).
        Returns ``False`` if the recording stopped on a failure first (see :attr:`failed`);
        raises :class:`~rtwidget.WaitTimeout` if the writer takes longer than ``timeout``."""
        done = threading.Event()
        self._queue.put(done)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(_FLUSH_EVERY):
            if not self._thread.is_alive():  # closed (all written) or failed
                return self.failed is None
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"the recording to {self.folder} was not flushed within "
                                  f"{timeout:g} s")
        return True

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
                text = text.replace(secret, REDACTED)
        return text

    def _drain(self) -> None:
        try:
            while True:
                record = self._queue.get()
                flushed: list[threading.Event] = []
                while record is not None:
                    if isinstance(record, threading.Event):
                        flushed.append(record)
                    else:
                        self._line(*record)
                    try:
                        record = self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._events.flush()
                for track in self._tracks.values():
                    track.flush()
                for waiter in flushed:
                    waiter.set()
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
                event.keys() <= APPEND_KEYS and isinstance(event.get("audio"), str):
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

def next_free_folder(folder: Path) -> Path:
    """``folder``, or if it already holds a recording the first free ``folder-2``, ``-3``..."""
    candidate, n = folder, 1
    while (candidate / "events.jsonl").exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate
