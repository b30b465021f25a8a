"""Offline speech engines for the local server: eSpeak NG (text to speech, from the
``espeakng-loader`` wheel, which ships the library and its data) and PocketSphinx (speech to
text, whose wheel ships an English model). Both are optional: :func:`require` names the package
to install when one is missing.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
from typing import Any

import numpy as np

from ..protocol.audio import SAMPLE_RATE


class EngineUnavailable(RuntimeError):
    """An engine's package is not installed; the message says what to install."""


def require(module: str, package: str) -> Any:
    """Import ``module`` or raise :class:`EngineUnavailable` naming the package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailable(
            f"{module} is not available ({exc}); install it with "
            f"pip install '{package}' or pip install 'rtwidget[local]'"
        ) from None


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """PCM16 mono from one rate to another with soxr (a proper band-limited resampler)."""
    if from_rate == to_rate or not pcm:
        return pcm
    soxr = require("soxr", "soxr")
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


# --- eSpeak NG -------------------------------------------------------------------------------

_SYNC_OUTPUT = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth calls the callback before returning
_CHARS_UTF8 = 1
_END_PAUSE = 0x1000
_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class EspeakSynthesizer:
    """eSpeak NG voices: any name or language code eSpeak knows (``en-us``, ``de``, ``fr``...)
    through ``audio.output.voice``; unknown names (a hosted provider's voice such as ``Dennis``)
    fall back to ``default_voice``. ``speed`` scales the speaking rate (175 words a minute at 1).
    Output is PCM16 mono at 24 kHz.
    """

    _lock = threading.Lock()  # the library keeps global state: one synthesis at a time
    _lib: Any = None
    _rate = 22050

    def __init__(self, default_voice: str = "en-us") -> None:
        self.default_voice = default_voice
        self._load()
        self._known = {v["name"].lower() for v in self.voices()} | {
            v["language"].lower() for v in self.voices()}

    @classmethod
    def _load(cls) -> None:
        if cls._lib is not None:
            return
        loader = require("espeakng_loader", "espeakng-loader")
        lib = ctypes.CDLL(loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        rate = lib.espeak_Initialize(_SYNC_OUTPUT, 0, loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise EngineUnavailable("eSpeak NG did not initialise (no voice data?)")
        cls._rate = rate
        cls._lib = lib

    def voices(self) -> list[dict[str, Any]]:
        """eSpeak NG's voices: name, language, description, tags."""
        out = []
        with self._lock:
            table = self._lib.espeak_ListVoices(None)
            i = 0
            while table[i]:
                v = table[i].contents
                languages = (v.languages or b"")[1:].split(b"\0")[0].decode(errors="replace")
                out.append({"name": (v.name or b"").decode(errors="replace"),
                            "language": languages,
                            "description": f"eSpeak NG voice ({(v.identifier or b'').decode()})",
                            "tags": ["espeak-ng", "offline"]})
                i += 1
        return out

    def _voice(self, voice: str | None) -> str:
        if voice and voice.lower() in self._known:
            return voice
        return self.default_voice

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        """Speak ``text``; returns PCM16 24 kHz mono."""
        if not text.strip():
            return b""
        chunks: list[bytes] = []

        def collect(wav: Any, count: int, _events: Any) -> int:
            if count > 0:
                chunks.append(ctypes.string_at(wav, count * 2))
            return 0

        callback = _CALLBACK(collect)
        data = text.encode("utf-8")
        with self._lock:
            lib = self._lib
            lib.espeak_SetSynthCallback(callback)
            lib.espeak_SetVoiceByName(self._voice(voice).encode())
            lib.espeak_SetParameter(_RATE, int(175 * min(max(speed, 0.25), 4.0)), 0)
            lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8 | _END_PAUSE, None, None)
        return resample(b"".join(chunks), self._rate, SAMPLE_RATE)


# --- PocketSphinx --------------------------------------------------------------------------------


class PocketsphinxTranscriber:
    """Speech to text with PocketSphinx's bundled US English model. Audio is resampled from
    24 kHz to the model's 16 kHz with soxr first."""

    def __init__(self) -> None:
        ps = require("pocketsphinx", "pocketsphinx")
        self._decoder = ps.Decoder(samprate=16000, loglevel="FATAL")
        self._lock = threading.Lock()

    def transcribe(self, pcm: bytes) -> str:
        """The words heard in PCM16 24 kHz mono audio ("" for none)."""
        audio = resample(pcm, SAMPLE_RATE, 16000)
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(audio, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""
