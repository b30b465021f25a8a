"""PCM16 helpers shared by the client, the widget and the local server (pure, no I/O)."""

from __future__ import annotations

import base64
import binascii
import importlib
from typing import Any

import numpy as np

from .errors import InvalidInput

SAMPLE_RATE = 24_000
"""The Realtime protocol's audio rate: PCM16 little-endian, mono, 24 kHz."""

BYTES_PER_SECOND = SAMPLE_RATE * 2
BYTES_PER_MS = BYTES_PER_SECOND // 1000


class AudioFormatError(InvalidInput):
    """Audio that cannot be PCM16 mono: odd byte count, wrong dtype or shape, bad base64."""


def to_pcm16(audio: Any) -> bytes:
    """Return ``audio`` as PCM16 little-endian bytes.

    Accepts bytes-like PCM16 (an even number of bytes), numpy int16 arrays, and float arrays in
    [-1, 1] (clipped; NaN and infinities become silence). Anything else raises
    :class:`AudioFormatError` naming what was found.
    """
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
        if len(data) % 2:
            raise AudioFormatError(
                f"PCM16 audio needs an even number of bytes, got {len(data)}"
            )
        return data
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise AudioFormatError(f"mono audio needs a 1-D array, got shape {audio.shape}")
        if audio.dtype == np.int16:
            return audio.astype("<i2", copy=False).tobytes()
        if np.issubdtype(audio.dtype, np.floating):
            clean = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
            # clipped before any narrowing: a huge float64 must not overflow into infinity
            return (np.clip(clean, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        raise AudioFormatError(f"audio arrays must be int16 or float, got {audio.dtype}")
    raise AudioFormatError(f"audio must be bytes or a numpy array, got {type(audio).__name__}")


def resample(pcm: bytes, rate: int, to_rate: int = SAMPLE_RATE) -> bytes:
    """PCM16 mono audio recorded at ``rate`` Hz, converted to ``to_rate``.

    With the ``soxr`` package installed (it comes with ``rtwidget[local]``) this is soxr's
    band-limited resampler at high quality; without it, a windowed-sinc low-pass when going down
    and then linear interpolation. For whole recordings: a stream cut into frames should be
    converted before it is cut."""
    for name, value in (("rate", rate), ("to_rate", to_rate)):
        if not isinstance(value, int) or not 4000 <= value <= 384_000:
            raise AudioFormatError(f"{name} must be a whole number of Hz between 4000 and "
                                   f"384000, got {value!r}")
    data = to_pcm16(pcm)
    if rate == to_rate or not data:
        return data
    try:
        soxr = importlib.import_module("soxr")  # optional
    except ImportError:
        return _interpolate(data, rate, to_rate)
    out = soxr.resample(np.frombuffer(data, dtype="<i2"), rate, to_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


def _interpolate(pcm: bytes, rate: int, to_rate: int) -> bytes:
    """The fallback of :func:`resample` that needs numpy alone."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if to_rate < rate:
        cutoff = 0.45 * to_rate / rate  # of the input rate: under the new Nyquist
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(taps.size)
        # "full" then the centred slice: mode="same" returns the kernel's length for short input
        samples = np.convolve(samples, kernel / kernel.sum())[32:32 + samples.size]
    count = round(samples.size * to_rate / rate)
    positions = np.arange(count) * (rate / to_rate)
    out = np.interp(positions, np.arange(samples.size), samples)
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


def encode_audio(pcm: bytes) -> str:
    """Base64 text of PCM16 bytes, as the wire carries it."""
    return base64.b64encode(pcm).decode("ascii")


def decode_audio(text: Any) -> bytes:
    """PCM16 bytes from the wire's base64 text; :class:`AudioFormatError` if it is not that."""
    if not isinstance(text, str):
        raise AudioFormatError(f"audio must be a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AudioFormatError(f"audio is not valid base64: {exc}") from None
    if len(data) % 2:
        raise AudioFormatError(f"PCM16 audio needs an even number of bytes, got {len(data)}")
    return data


def duration_ms(n_bytes: int, rate: int = SAMPLE_RATE) -> float:
    """Milliseconds of PCM16 mono audio in ``n_bytes`` bytes."""
    return n_bytes / 2 / rate * 1000.0


def bytes_for_ms(ms: float, rate: int = SAMPLE_RATE) -> int:
    """Byte count (even) of ``ms`` milliseconds of PCM16 mono audio."""
    return round(ms * rate / 1000.0) * 2
