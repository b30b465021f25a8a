"""The best offline engines installed here, for the embedded server's defaults, by profile:
``natural`` (the default) hears with Whisper tiny.en and speaks with Piper's neural voice where
their packages are installed (``rtwidget[natural]``), else falls back engine by engine to the
``fast`` profile's PocketSphinx and Flite; ``fast`` uses those alone, for the lowest latency
and the smallest install. Both use the same reply engine and VAD.

Each candidate is built and then tried on a word or a moment of silence (a few milliseconds),
so an engine that loads but cannot run (Flite without the ``soxr`` resampler, a broken install)
is not chosen; :attr:`EngineSet.missing` keeps why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.audio import BYTES_PER_MS
from ..protocol.errors import ConfigError, EngineUnavailable
from .engines import ReplyEngine, ScriptedReplyEngine, Synthesizer, ToneSynthesizer, Transcriber
from .faults import what_it_said

log = logging.getLogger("rtwidget.server")

_SILENCE = bytes(200 * BYTES_PER_MS)


@dataclass(frozen=True)
class Skipped:
    """An engine not chosen: what it is, and why (``install``: the command that fixes it)."""

    part: str
    engine: str
    reason: str
    install: str | None = None

    def __str__(self) -> str:
        return f"{self.part} ({self.engine}): {self.reason}"

    def why(self) -> str:
        """Why, in a few words: the command that fixes it, else the reason."""
        if self.install:
            return f"needs {self.install}"
        return self.reason if len(self.reason) <= 100 else self.reason[:99] + "…"


@dataclass
class EngineSet:
    """Reply engines by model name, a voice, an ear and a VAD, with what they are; ``missing``
    says why each engine that is not there was not chosen (``skipped``: the same, by engine)."""

    engines: dict[str, ReplyEngine]
    model: str
    synthesizer: Synthesizer
    transcriber: Transcriber | None
    vad: str
    missing: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    profile: str = "fast"

    @classmethod
    def fallback(cls) -> EngineSet:
        """What needs no package: scripted replies, tones, no speech to text, the energy VAD."""
        return cls({"local/scripted": ScriptedReplyEngine()}, "local/scripted",
                   ToneSynthesizer(), None, "energy")

    def chosen(self) -> str:
        """Which engines answer, in a few words."""
        names = {"local/smollm2": "SmolLM2-135M on llama.cpp", "local/scripted":
                 "scripted replies"}
        engines = getattr(self.synthesizer, "engines", (self.synthesizer,))
        speech = {"PiperSynthesizer": "Piper", "FliteSynthesizer": "Flite",
                  "EspeakSynthesizer": "eSpeak NG"}
        voice = " + ".join(speech[type(e).__name__] for e in engines
                           if type(e).__name__ in speech) or "tones (no speech engine)"
        ears = {"WhisperTranscriber": "Whisper tiny.en (PocketSphinx for live words)",
                "PocketsphinxTranscriber": "PocketSphinx"}
        ear = ears.get(type(self.transcriber).__name__, "PocketSphinx") \
            if self.transcriber is not None else "no speech-to-text"
        return f"{names.get(self.model, self.model)}, {voice}, {ear}, {self.vad} VAD"

    def describe(self) -> str:
        """One line for people: which engines answer, and why the others do not."""
        groups: dict[str, list[str]] = {}  # engines skipped for the same reason, together
        for skipped in self.skipped:
            groups.setdefault(skipped.why(), []).append(skipped.engine)
        reasons = [f"{', '.join(engines)} ({why})" for why, engines in groups.items()]
        return self.chosen() + ("; not used: " + ", ".join(reasons) if reasons else "")

ENGINES = ("replies", "flite", "espeak", "speech to text", "silero", "webrtc", "whisper",
           "piper")
"""Names of the offline engines :func:`best_available` can be told to leave out."""

PROFILES = ("natural", "fast")
"""The offline profiles: ``natural`` (Whisper ears, Piper's voice) and ``fast`` (PocketSphinx,
Flite)."""


def _try(factory: Callable[[], Any], part: str, engine: str, found: EngineSet,
         probe: Callable[[Any], Any] | None = None, left_out: bool = False) -> Any:
    """``factory()`` once ``probe`` has run on it, else ``None`` with the reason kept;
    ``left_out``: not even tried."""
    if left_out:
        skipped = Skipped(part, engine, "left out")
        found.skipped.append(skipped)
        found.missing.append(str(skipped))
        return None
    try:
        made = factory()
        if probe is not None:
            probe(made)
        return made
    except Exception as exc:  # a broken install must not stop the server
        if not isinstance(exc, EngineUnavailable):
            log.warning("offline engine %s (%s) cannot run", part, engine, exc_info=True)
        install = getattr(exc, "install", None)
        skipped = Skipped(part, engine, what_it_said(exc), install)
        found.skipped.append(skipped)
        found.missing.append(str(skipped))
    return None


def _speaks(synthesizer: Any) -> None:
    synthesizer.synthesize("Hello.", None, 1.0)


def _voices(found: EngineSet, skip: frozenset[str] = frozenset(),
            natural: bool = False) -> Synthesizer:
    """Flite's natural English voices first (slt by default) where Flite is installed, eSpeak
    NG for other languages and as the fallback; tones when neither can run. ``natural``:
    Piper's neural voice ahead of them, where it is installed."""
    from .text_to_speech import CombinedSynthesizer, EspeakSynthesizer, FliteSynthesizer

    candidates: tuple[tuple[Callable[[], Any], str, str], ...] = (
        (FliteSynthesizer, "Flite", "flite"), (EspeakSynthesizer, "eSpeak NG", "espeak"))
    if natural:
        from .piper_voice import PiperSynthesizer

        candidates = ((PiperSynthesizer, "Piper", "piper"), *candidates)
    voices = [engine for engine in (_try(cls, "text to speech", name, found, _speaks, key in skip)
                                    for cls, name, key in candidates) if engine is not None]
    if natural and "piper" not in skip and not any(
            type(v).__name__ == "PiperSynthesizer" for v in voices):
        log.warning("offline engines: Piper's voice is not used (%s); Flite or eSpeak NG "
                    "speaks", next(s.why() for s in found.skipped if s.engine == "Piper"))
    return CombinedSynthesizer(*voices) if voices else ToneSynthesizer()


def _ears(found: EngineSet, skip: frozenset[str], natural: bool) -> Transcriber | None:
    """Whisper (PocketSphinx for the live words) for ``natural`` where it is installed, else
    PocketSphinx alone."""
    from .speech_to_text import PocketsphinxTranscriber

    if "speech to text" in skip:
        return _try(PocketsphinxTranscriber, "speech to text", "PocketSphinx", found,
                    left_out=True)
    if natural:
        from .whisper_ears import WhisperTranscriber

        ear = _try(WhisperTranscriber, "speech to text", "Whisper tiny.en", found,
                   lambda ear: ear.transcribe(_SILENCE), "whisper" in skip)
        if ear is not None:
            return ear
        log.warning("offline engines: Whisper is not used (%s); PocketSphinx hears the "
                    "turns", found.skipped[-1].why())
    return _try(PocketsphinxTranscriber, "speech to text", "PocketSphinx", found,
                lambda ear: ear.transcribe(_SILENCE))


def best_available(without: Iterable[str] = (), profile: str = "natural") -> EngineSet:
    """SmolLM2 + Flite (eSpeak NG for other languages) + PocketSphinx + Silero when installed
    and able to run (``rtwidget[local]`` and the system's ``flite``); otherwise the scripted
    engine, eSpeak NG or tones and the energy VAD, with ``missing`` saying why. ``profile``
    ``"natural"`` (see :data:`PROFILES`) puts Whisper and Piper ahead of PocketSphinx and
    Flite where ``rtwidget[natural]`` and ``rtwidget[voice]`` are installed. Engines named in
    ``without`` (see :data:`ENGINES`) are left out."""
    from .llm import LlamaReplyEngine
    from .vad import SileroVad, WebRtcVad

    skip = frozenset(without)
    if skip - set(ENGINES):
        raise ConfigError(f"unknown engine(s) {sorted(skip - set(ENGINES))}; expected some of "
                          f"{ENGINES}")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    natural = profile == "natural"
    found = EngineSet.fallback()
    found.profile = profile
    llama = _try(LlamaReplyEngine, "replies", "SmolLM2 on llama.cpp", found,
                 left_out="replies" in skip)
    if llama is not None:
        found.engines["local/smollm2"] = llama
        found.model = "local/smollm2"
    found.synthesizer = _voices(found, skip, natural)
    found.transcriber = _ears(found, skip, natural)
    for name, cls in (("silero", SileroVad), ("webrtc", WebRtcVad)):
        if _try(cls, "VAD", name.capitalize().replace("Webrtc", "WebRTC"), found,
                lambda vad: vad.feed(_SILENCE), name in skip) is not None:
            found.vad = name
            break
    return found
