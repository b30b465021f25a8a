"""The embedded local Realtime server (see :class:`LocalServer`)."""

from .app import PATHS, Handshake, LocalServer, shared_local_server
from .engines import (
    DropConnection,
    ReplyContext,
    ReplyEngine,
    Rule,
    ScriptedReplyEngine,
    Synthesizer,
    TextDelta,
    ToneSynthesizer,
    ToolCall,
    Transcriber,
    Turn,
)
from .vad import EnergyVad, Vad, VadEvent, VadSettings

__all__ = [
    "PATHS",
    "DropConnection",
    "EnergyVad",
    "Handshake",
    "LocalServer",
    "ReplyContext",
    "ReplyEngine",
    "Rule",
    "ScriptedReplyEngine",
    "Synthesizer",
    "TextDelta",
    "ToneSynthesizer",
    "ToolCall",
    "Transcriber",
    "Turn",
    "Vad",
    "VadEvent",
    "VadSettings",
    "shared_local_server",
]
