"""Text to speech for the local server: Flite (natural English voices, from the system's
``flite`` library or command), eSpeak NG (many languages, from the ``espeakng-loader`` wheel,
which ships the library and its data), and several engines as one voice list. Both are
optional: a missing one raises :class:`~rtwidget.EngineUnavailable` naming what to install.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import shutil
import subprocess
import tempfile
import threading
import unicodedata
import wave
from pathlib import Path
from typing import Any

from ..protocol.audio import SAMPLE_RATE, resample
from ..protocol.errors import ConfigError, EngineUnavailable
from .engines import require


def _to_protocol_rate(pcm: bytes, rate: int) -> bytes:
    """Synthesized speech at the protocol's 24 kHz, through soxr's band-limited resampler: the
    engine cannot run without it (the error names what to install), rather than speak through
    the rougher fallback."""
    if pcm and rate != SAMPLE_RATE:
        require("soxr", "soxr")
    return resample(pcm, rate)


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

    def knows(self, voice: str | None) -> bool:
        """Whether ``voice`` names one of its voices or languages."""
        return bool(voice) and str(voice).lower() in self._known

    def _voice(self, voice: str | None) -> str:
        return voice if voice and self.knows(voice) else self.default_voice

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
        return _to_protocol_rate(b"".join(chunks), self._rate)


# --- Flite -------------------------------------------------------------------------------------

FLITE_VOICES = {
    "slt": ("en-us", "US English, female"),
    "rms": ("en-us", "US English, male"),
    "awb": ("en-gb", "Scottish English, male"),
    "kal": ("en-us", "US English, male, 8 kHz diphone voice"),
}
_FLITE_INSTALL = "apt-get install flite (Debian, Ubuntu) or brew install flite (macOS)"
_FLITE_MISSING = f"Flite is not installed; install it with {_FLITE_INSTALL}"
_TO_ASCII = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                           "\u2013": "-", "\u2014": ", ", "\u2026": "..."})


def _plain_text(text: str) -> str:
    """``text`` as the ASCII Flite reads: typographic quotes and dashes mapped, accents
    dropped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TO_ASCII))
    return decomposed.encode("ascii", "ignore").decode("ascii")


class _FliteWave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int),
                ("num_samples", ctypes.c_int), ("num_channels", ctypes.c_int),
                ("samples", ctypes.POINTER(ctypes.c_short))]


class _FliteVoice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p),
                ("ffunctions", ctypes.c_void_p)]


class _FliteLibrary:
    """Flite through its shared library (``libflite`` and one library per voice): each voice
    is registered once per process, a sentence is one call."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("flite")
        if path is None:
            raise EngineUnavailable(_FLITE_MISSING, "flite", _FLITE_INSTALL)
        lib = ctypes.CDLL(path)
        lib.flite_text_to_wave.restype = ctypes.POINTER(_FliteWave)
        lib.flite_text_to_wave.argtypes = [ctypes.c_char_p, ctypes.POINTER(_FliteVoice)]
        lib.feat_set_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_float]
        lib.delete_wave.argtypes = [ctypes.POINTER(_FliteWave)]
        lib.flite_init()
        self._lib = lib
        self.voices: dict[str, Any] = {}
        for name in FLITE_VOICES:
            found = ctypes.util.find_library(f"flite_cmu_us_{name}")
            if found is None:
                continue
            register = getattr(ctypes.CDLL(found), f"register_cmu_us_{name}")
            register.restype = ctypes.POINTER(_FliteVoice)
            register.argtypes = [ctypes.c_char_p]
            voice = register(None)
            if voice:
                self.voices[name] = voice
        if not self.voices:
            raise EngineUnavailable(_FLITE_MISSING + " (no voice library was found)", "flite",
                                    _FLITE_INSTALL)

    def synthesize(self, text: str, name: str, stretch: float) -> tuple[bytes, int]:
        voice = self.voices[name]
        self._lib.feat_set_float(voice.contents.features, b"duration_stretch", stretch)
        wav = self._lib.flite_text_to_wave(text.encode("ascii"), voice)
        if not wav:
            return b"", SAMPLE_RATE
        try:
            w = wav.contents
            return ctypes.string_at(w.samples, w.num_samples * w.num_channels * 2), w.sample_rate
        finally:
            self._lib.delete_wave(wav)


class _FliteCommand:
    """Flite through its ``flite`` command (where only the program is installed): one process
    per sentence."""

    def __init__(self) -> None:
        exe = shutil.which("flite")
        if exe is None:
            raise EngineUnavailable(_FLITE_MISSING, "flite", _FLITE_INSTALL)
        self._exe = exe
        listed = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30,
                                check=False).stdout
        offered = set(listed.partition(":")[2].split())
        self.voices = {name: name for name in FLITE_VOICES if name in offered}
        if not self.voices:
            raise EngineUnavailable(f"the flite command offers none of {list(FLITE_VOICES)}")

    def synthesize(self, text: str, name: str, stretch: float) -> tuple[bytes, int]:
        with tempfile.TemporaryDirectory(prefix="rtwidget-flite-") as tmp:
            source, target = f"{tmp}/text.txt", f"{tmp}/speech.wav"
            Path(source).write_text(text, encoding="ascii")
            subprocess.run([self._exe, "-voice", name, "--setf", f"duration_stretch={stretch:.4f}",
                            "-f", source, "-o", target], capture_output=True, timeout=60,
                           check=True)
            with wave.open(io.BytesIO(Path(target).read_bytes())) as w:
                return w.readframes(w.getnframes()), w.getframerate()


_flite_library: _FliteLibrary | None = None
_flite_lock = threading.Lock()  # the library keeps voices in global state: one call at a time


def _load_flite(use_command: bool) -> _FliteLibrary | _FliteCommand:
    global _flite_library
    if use_command:
        return _FliteCommand()
    with _flite_lock:
        if _flite_library is None:
            try:
                _flite_library = _FliteLibrary()
            except (OSError, AttributeError, EngineUnavailable):
                if shutil.which("flite") is None:
                    raise EngineUnavailable(_FLITE_MISSING, "flite", _FLITE_INSTALL) from None
                return _FliteCommand()
        return _flite_library


class FliteSynthesizer:
    """Flite's English voices (``slt``, ``rms``, ``awb``, ``kal``: far closer to a person than
    eSpeak's formant voices), through the system's Flite library, or its ``flite`` command
    when only that is installed (``use_command=True`` forces it). Unknown voice names fall back
    to ``default_voice``; ``speed`` scales the speaking rate. Output is PCM16 mono at 24 kHz,
    resampled with soxr from the voice's 16 kHz (8 kHz for ``kal``).
    """

    def __init__(self, default_voice: str = "slt", *, use_command: bool = False) -> None:
        self._engine = _load_flite(use_command)
        names = list(self._engine.voices)
        self.default_voice = default_voice if default_voice in names else names[0]

    def knows(self, voice: str | None) -> bool:
        """Whether ``voice`` names one of its voices."""
        return bool(voice) and str(voice).lower() in self._engine.voices

    def voices(self) -> list[dict[str, Any]]:
        """Flite's voices installed here: name, language, description, tags."""
        return [{"name": name, "language": FLITE_VOICES[name][0],
                 "description": f"Flite voice ({FLITE_VOICES[name][1]})",
                 "tags": ["flite", "offline"]} for name in self._engine.voices]

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        """Speak ``text``; returns PCM16 24 kHz mono."""
        words = _plain_text(text)
        if not any(c.isalnum() for c in words):
            return b""
        name = str(voice).lower() if voice and self.knows(voice) else self.default_voice
        stretch = 1.0 / min(max(speed, 0.25), 4.0)
        with _flite_lock:
            pcm, rate = self._engine.synthesize(words, name, stretch)
        return _to_protocol_rate(pcm, rate)


# --- several engines as one ----------------------------------------------------------------------


class CombinedSynthesizer:
    """The voices of several engines as one list: ``voices()`` puts the English voices first
    (the first engine's ahead of the others'), then the rest; a voice is spoken by the first
    engine that knows its name (or, for eSpeak, its language code), and any other name by the
    first engine's ``default_voice``."""

    def __init__(self, *engines: Any) -> None:
        if not engines:
            raise ConfigError("CombinedSynthesizer needs at least one engine")
        self.engines = engines
        self.default_voice: str = engines[0].default_voice

    def knows(self, voice: str | None) -> bool:
        """Whether one of the engines knows ``voice``."""
        return any(engine.knows(voice) for engine in self.engines)

    def voices(self) -> list[dict[str, Any]]:
        """Every engine's voices, English first, each name once."""
        rows: dict[str, dict[str, Any]] = {}
        for engine in self.engines:
            for row in engine.voices():
                rows.setdefault(str(row["name"]).lower(), row)
        return sorted(rows.values(),
                      key=lambda r: not str(r.get("language", "")).lower().startswith("en"))

    def engine_for(self, voice: str | None) -> Any:
        """The engine that speaks ``voice``: the first that knows it, else the first."""
        return next((e for e in self.engines if e.knows(voice)), self.engines[0])

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        """Speak ``text`` with the engine that has ``voice``; returns PCM16 24 kHz mono."""
        engine = self.engine_for(voice)
        return bytes(engine.synthesize(text, voice if engine.knows(voice) else None, speed))


def default_voice_name(synthesizer: Any) -> str:
    """The listed name of a synthesizer's default voice (what a new session starts with, and
    what a voice picker shows): its ``default_voice`` matched by name, then by language, else
    the first voice it lists."""
    rows = synthesizer.voices()
    wanted = str(getattr(synthesizer, "default_voice", "") or "").lower()
    for key in ("name", "language"):
        for row in rows:
            if str(row.get(key, "")).lower() == wanted:
                return str(row["name"])
    return str(rows[0]["name"]) if rows else "default"
