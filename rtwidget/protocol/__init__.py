"""The Realtime protocol with no I/O: the session configuration, client event builders
(:mod:`~rtwidget.protocol.client_events`) and the conversation state machine."""

from . import client_events
from .audio import SAMPLE_RATE, AudioFormatError, decode_audio, encode_audio, to_pcm16
from .configuration import NOT_GIVEN, merge_session, session_config
from .conversation import Conversation
from .items import BETA_ALIASES, Item, LogEntry, Response, Update

__all__ = [
    "BETA_ALIASES",
    "NOT_GIVEN",
    "SAMPLE_RATE",
    "AudioFormatError",
    "Conversation",
    "Item",
    "LogEntry",
    "Response",
    "Update",
    "client_events",
    "decode_audio",
    "encode_audio",
    "merge_session",
    "session_config",
    "to_pcm16",
]
