"""Voice activity detection for the local server's ``server_vad`` turn detection.

:class:`EnergyVad` is a plain, honest detector: 10 ms frames, level in dBFS against an adaptive
noise floor, a start that needs a short run of loud frames, and an end after
``silence_duration_ms`` of quiet. Model-based detectors plug in through :class:`Vad`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ..protocol.audio import SAMPLE_RATE

FRAME_MS = 10
_FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


@dataclass(frozen=True)
class VadEvent:
    """Speech started or stopped, at ``ms`` since the detector's first sample."""

    kind: Literal["start", "stop"]
    ms: int


@dataclass(frozen=True)
class VadSettings:
    """The ``turn_detection`` settings a client can send (OpenAI defaults)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


class Vad(Protocol):
    """A streaming detector: feed PCM16 24 kHz audio, get start/stop events back."""

    settings: VadSettings

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Consume audio and return the events it completes."""
        ...

    @property
    def in_speech(self) -> bool:
        """Whether the detector is inside a turn."""
        ...


class EnergyVad:
    """Energy detector with an adaptive noise floor (see the module docstring)."""

    def __init__(self, settings: VadSettings | None = None, start_ms: int = 60) -> None:
        self.settings = settings or VadSettings()
        self.start_frames = max(1, start_ms // FRAME_MS)
        self._pending = b""
        self._frames = 0
        self._floor_db = -60.0
        self._loud_run = 0
        self._quiet_run = 0
        self._speaking = False
        self._last_loud_end = 0

    @property
    def in_speech(self) -> bool:
        return self._speaking

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio consumed so far."""
        return self._frames * FRAME_MS

    def _threshold_db(self) -> float:
        absolute = -55.0 + 30.0 * self.settings.threshold
        return max(absolute, self._floor_db + 10.0)

    def feed(self, pcm: bytes) -> list[VadEvent]:
        data = self._pending + pcm
        n_frames = len(data) // (2 * _FRAME_SAMPLES)
        self._pending = data[n_frames * 2 * _FRAME_SAMPLES :]
        if n_frames == 0:
            return []
        samples = np.frombuffer(data[: n_frames * 2 * _FRAME_SAMPLES], dtype="<i2")
        frames = samples.reshape(n_frames, _FRAME_SAMPLES).astype(np.float32) / 32768.0
        rms = np.sqrt(np.mean(frames * frames, axis=1)) + 1e-9
        levels = 20.0 * np.log10(rms)
        out: list[VadEvent] = []
        silence_frames = max(1, self.settings.silence_duration_ms // FRAME_MS)
        for level in levels:
            self._frames += 1
            loud = level > self._threshold_db()
            if not loud and not self._speaking:
                # the floor follows quiet audio down fast and up slowly
                rate = 0.2 if level < self._floor_db else 0.01
                self._floor_db += rate * (float(level) - self._floor_db)
                self._floor_db = min(max(self._floor_db, -90.0), -25.0)
            if loud:
                self._loud_run += 1
                self._quiet_run = 0
                self._last_loud_end = self.position_ms
                if not self._speaking and self._loud_run >= self.start_frames:
                    self._speaking = True
                    start = self.position_ms - self._loud_run * FRAME_MS
                    out.append(VadEvent("start", max(0, start)))
            else:
                self._loud_run = 0
                if self._speaking:
                    self._quiet_run += 1
                    if self._quiet_run >= silence_frames:
                        self._speaking = False
                        self._quiet_run = 0
                        out.append(VadEvent("stop", self._last_loud_end))
        return out
