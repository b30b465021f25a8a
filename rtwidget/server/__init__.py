"""The embedded local Realtime server (see :class:`LocalServer`)."""

from ..protocol.errors import EngineError, EngineUnavailable
from .app import PATHS, Handshake, LocalServer, offline_server
from .chat_api import ChatCompletionsReplyEngine
from .engines import (
    DropConnection,
    HistoryTurn,
    ReplyContext,
    ReplyEngine,
    Rule,
    ScriptedReplyEngine,
    Synthesizer,
    TextDelta,
    ToneSynthesizer,
    ToolCall,
    Transcriber,
)
from .speech_to_text import PocketsphinxTranscriber
from .text_to_speech import CombinedSynthesizer, EspeakSynthesizer, FliteSynthesizer
from .vad import VADS, EnergyVad, SileroVad, Vad, VadEvent, VadSettings, WebRtcVad

__all__ = [
    "PATHS",
    "VADS",
    "ChatCompletionsReplyEngine",
    "CombinedSynthesizer",
    "DropConnection",
    "EnergyVad",
    "EngineError",
    "EngineUnavailable",
    "EspeakSynthesizer",
    "FliteSynthesizer",
    "Handshake",
    "HistoryTurn",
    "LocalServer",
    "PocketsphinxTranscriber",
    "ReplyContext",
    "ReplyEngine",
    "Rule",
    "ScriptedReplyEngine",
    "SileroVad",
    "Synthesizer",
    "TextDelta",
    "ToneSynthesizer",
    "ToolCall",
    "Transcriber",
    "Vad",
    "VadEvent",
    "VadSettings",
    "WebRtcVad",
    "offline_server",
]
