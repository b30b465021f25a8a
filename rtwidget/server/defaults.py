"""The best offline engines installed here, for the embedded server's defaults."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import ConfigError
from .engines import ReplyEngine, ScriptedReplyEngine, Synthesizer, ToneSynthesizer, Transcriber
from .speech import EngineUnavailable

log = logging.getLogger("rtwidget.server")


@dataclass
class EngineSet:
    """Reply engines by model name, a voice, an ear and a VAD, with what they are."""

    engines: dict[str, ReplyEngine]
    model: str
    synthesizer: Synthesizer
    transcriber: Transcriber | None
    vad: str
    missing: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for people: which engines answer."""
        names = {"local/smollm2": "SmolLM2-135M on llama.cpp", "local/scripted":
                 "scripted replies"}
        engines = getattr(self.synthesizer, "engines", (self.synthesizer,))
        speech = {"FliteSynthesizer": "Flite", "EspeakSynthesizer": "eSpeak NG"}
        voice = " + ".join(speech[type(e).__name__] for e in engines
                           if type(e).__name__ in speech) or "tones (no speech engine)"
        ear = "PocketSphinx" if self.transcriber is not None else "no speech-to-text"
        return f"{names.get(self.model, self.model)}, {voice}, {ear}, {self.vad} VAD"


ENGINES = ("replies", "flite", "espeak", "speech to text", "silero", "webrtc")
"""Names of the offline engines :func:`best_available` can be told to leave out."""


def _try(factory: Any, what: str, missing: list[str], left_out: bool = False) -> Any:
    if left_out:
        missing.append(f"{what}: left out")
        return None
    try:
        return factory()
    except EngineUnavailable as exc:
        missing.append(f"{what}: {exc}")
    except Exception as exc:  # a broken install must not stop the server
        missing.append(f"{what}: {type(exc).__name__}: {exc}")
        log.warning("offline engine %s failed to load", what, exc_info=True)
    return None


def _voices(missing: list[str], skip: Collection[str]) -> Synthesizer:
    """Flite's natural English voices first (slt by default) where Flite is installed, eSpeak
    NG for other languages and as the fallback; tones when neither is there."""
    from .speech import CombinedSynthesizer, EspeakSynthesizer, FliteSynthesizer

    found = [engine for engine in (
        _try(FliteSynthesizer, "text to speech (Flite)", missing, "flite" in skip),
        _try(EspeakSynthesizer, "text to speech (eSpeak NG)", missing, "espeak" in skip),
    ) if engine is not None]
    return CombinedSynthesizer(*found) if found else ToneSynthesizer()


def best_available(without: Iterable[str] = ()) -> EngineSet:
    """SmolLM2 + Flite (eSpeak NG for other languages) + PocketSphinx + Silero when installed
    (``rtwidget[local]`` and the system's ``flite``); otherwise the scripted engine, eSpeak NG or
    tones and the energy VAD, with ``missing`` saying why. Engines named in ``without`` (see
    :data:`ENGINES`) are left out."""
    from .llm import LlamaReplyEngine
    from .speech import PocketsphinxTranscriber
    from .vad import SileroVad, WebRtcVad

    skip = frozenset(without)
    unknown = skip - set(ENGINES)
    if unknown:
        raise ConfigError(f"unknown engine(s) {sorted(unknown)}; expected some of {ENGINES}")
    missing: list[str] = []
    engines: dict[str, ReplyEngine] = {"local/scripted": ScriptedReplyEngine()}
    llama = _try(LlamaReplyEngine, "replies", missing, "replies" in skip)
    if llama is not None:
        engines["local/smollm2"] = llama
    synthesizer = _voices(missing, skip)
    transcriber = _try(PocketsphinxTranscriber, "speech to text", missing,
                       "speech to text" in skip)
    vad = "energy"
    for name, cls in (("silero", SileroVad), ("webrtc", WebRtcVad)):
        if _try(cls, f"{name} VAD", missing, name in skip) is not None:
            vad = name
            break
    model = "local/smollm2" if llama is not None else "local/scripted"
    return EngineSet(engines, model, synthesizer, transcriber, vad, missing)
