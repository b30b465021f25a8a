"""The best offline engines installed here, for the embedded server's defaults."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

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
        voice = "eSpeak NG" if type(self.synthesizer).__name__ == "EspeakSynthesizer" \
            else "tones (no speech engine)"
        ear = "PocketSphinx" if self.transcriber is not None else "no speech-to-text"
        return f"{names.get(self.model, self.model)}, {voice}, {ear}, {self.vad} VAD"


def _try(factory: Any, what: str, missing: list[str]) -> Any:
    try:
        return factory()
    except EngineUnavailable as exc:
        missing.append(f"{what}: {exc}")
    except Exception as exc:  # a broken install must not stop the server
        missing.append(f"{what}: {type(exc).__name__}: {exc}")
        log.warning("offline engine %s failed to load", what, exc_info=True)
    return None


def best_available() -> EngineSet:
    """SmolLM2 + eSpeak NG + PocketSphinx + Silero when installed (``rtwidget[local]``);
    otherwise the scripted engine, tones and the energy VAD, with ``missing`` saying why."""
    from .llm import LlamaReplyEngine
    from .speech import EspeakSynthesizer, PocketsphinxTranscriber
    from .vad import SileroVad, WebRtcVad

    missing: list[str] = []
    engines: dict[str, ReplyEngine] = {"local/scripted": ScriptedReplyEngine()}
    llama = _try(LlamaReplyEngine, "replies", missing)
    if llama is not None:
        engines["local/smollm2"] = llama
    synthesizer = _try(EspeakSynthesizer, "text to speech", missing) or ToneSynthesizer()
    transcriber = _try(PocketsphinxTranscriber, "speech to text", missing)
    vad = "energy"
    for name, cls in (("silero", SileroVad), ("webrtc", WebRtcVad)):
        if _try(cls, f"{name} VAD", missing) is not None:
            vad = name
            break
    model = "local/smollm2" if llama is not None else "local/scripted"
    return EngineSet(engines, model, synthesizer, transcriber, vad, missing)
