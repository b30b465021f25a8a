"""A recording's files, read as things someone else may have made: only regular files directly
inside the recording's own folder (no absolute or ``..`` names, no symbolic links, no devices or
pipes), each of bounded size, lines of bounded length, and every failure one
:class:`~rtwidget.RecordingError` naming the file (and the line)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import wave
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

from ..protocol.audio import SAMPLE_RATE
from ..protocol.record_format import RecordingError

MAX_META_BYTES = 16 * 1024 * 1024
MAX_EVENTS_BYTES = 256 * 1024 * 1024  # about six hours of a spoken session's events
MAX_LINE_BYTES = 16 * 1024 * 1024  # one event (audio is in the tracks, not the lines)
MAX_TRACK_BYTES = 2 * 1024 * 1024 * 1024  # about twelve hours of 24 kHz PCM16


def member(folder: Path, name: Any, what: str) -> Path:
    """The file called ``name`` directly inside ``folder``; a name that is not a plain file
    name (absolute, ``..``, with a separator) is refused: it could point anywhere."""
    plain = isinstance(name, str) and name not in ("", ".", "..") and "\x00" not in name \
        and "/" not in name and "\\" not in name and ":" not in name
    if not plain:
        raise RecordingError(f"{folder / 'meta.json'}: {what} is {name!r:.120}, which is not "
                             "the name of a file in the recording's folder")
    return folder / name


@contextlib.contextmanager
def open_regular(path: Path, limit: int, missing_ok: bool = False) -> Iterator[IO[bytes] | None]:
    """``path`` open for reading if it is a regular file (not a link, device, pipe or folder)
    of at most ``limit`` bytes; ``None`` if it does not exist and ``missing_ok``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            yield None
            return
        raise RecordingError(f"{path} is missing; is this a recording?") from None
    except OSError as exc:
        raise RecordingError(f"{path} cannot be read: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise RecordingError(f"{path} is a symbolic link; a recording is read only from the "
                             "files in its own folder")
    if not stat.S_ISREG(info.st_mode):
        raise RecordingError(f"{path} is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise RecordingError(f"{path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) \
                or not stat.S_ISREG(opened.st_mode):
            raise RecordingError(f"{path} changed while it was opened")
        if opened.st_size > limit:
            raise RecordingError(f"{path} is {opened.st_size} bytes; it may be at most "
                                 f"{limit} bytes")
        yield file


def read_json(path: Path, limit: int | None = None) -> Any:
    """The JSON value in the file at ``path`` (at most ``MAX_META_BYTES``)."""
    limit = MAX_META_BYTES if limit is None else limit
    with open_regular(path, limit) as file:
        assert file is not None
        data = file.read(limit + 1)
    if len(data) > limit:
        raise RecordingError(f"{path} is larger than {limit} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise RecordingError(f"{path} is nested too deeply") from None


def read_lines(path: Path, limit: int | None = None,
               line_limit: int | None = None) -> Generator[tuple[int, str], None, None]:
    """``(number, text)`` of each line of the file at ``path``, counted from 1 (at most
    ``MAX_EVENTS_BYTES`` in all, ``MAX_LINE_BYTES`` a line)."""
    limit = MAX_EVENTS_BYTES if limit is None else limit
    line_limit = MAX_LINE_BYTES if line_limit is None else line_limit
    with open_regular(path, limit) as file:
        assert file is not None
        total = 0
        for number in range(1, limit + 2):
            raw = file.readline(line_limit + 1)
            if not raw:
                return
            total += len(raw)
            if len(raw) > line_limit:
                raise RecordingError(f"{path} line {number} is longer than {line_limit} bytes")
            if total > limit:  # it grew while being read
                raise RecordingError(f"{path} is larger than {limit} bytes")
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordingError(f"{path} line {number}: not UTF-8 text (byte "
                                     f"{exc.start} of the line)") from None


def read_track(path: Path, limit: int | None = None) -> bytes:
    """The PCM16 24 kHz mono samples of the WAV file at ``path`` (none if it is missing; at
    most ``MAX_TRACK_BYTES``)."""
    limit = MAX_TRACK_BYTES if limit is None else limit
    with open_regular(path, limit, missing_ok=True) as file:
        if file is None:
            return b""
        try:
            with wave.open(file, "rb") as w:
                shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                if shape != (1, 2, SAMPLE_RATE):
                    raise RecordingError(
                        f"{path} has {shape[0]} channel(s) of {shape[1] * 8}-bit samples at "
                        f"{shape[2]} Hz; a recording's tracks are mono 16-bit {SAMPLE_RATE} Hz")
                return w.readframes(min(w.getnframes(), limit // 2))
        except (wave.Error, EOFError) as exc:
            raise RecordingError(f"{path} is not a readable WAV file ({exc})") from None
