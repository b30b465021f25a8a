"""What the parts of one local-server connection share: the server's options, the session's
settings, and the way out to the client.

:class:`ServerSession` is handed to the input audio buffer, the conversation items and the
responses; it sends through two callables (``send`` a text frame, ``abort`` the connection), so
every part can be driven without sockets.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.audio import SAMPLE_RATE
from ..protocol.configuration import merge_session
from ..protocol.transcription import TranscriptionError, check_transcription
from .engines import ReplyEngine, Synthesizer, Transcriber
from .vad import EnergyVad, Vad, VadSettings
from .validation import (
    MAX_SESSION_BYTES,
    READ_ONLY_SESSION_KEYS,
    Problem,
    check_session,
    session_from_beta,
)


def new_id(prefix: str) -> str:
    """A fresh id for a session, item, response or event (``item_0f3a...``)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass
class ServerOptions:
    """What every connection of a local server shares: engines, limits and defaults."""

    engine: ReplyEngine
    synthesizer: Synthesizer
    transcriber: Transcriber | None = None
    vad_factory: Callable[[VadSettings], Vad] = EnergyVad
    engines: dict[str, ReplyEngine] = field(default_factory=dict)
    vads: dict[str, Callable[[VadSettings], Vad]] = field(default_factory=dict)
    model: str = "local/scripted"
    voice: str = "default"
    turn_detection: str = "server_vad"
    max_message_bytes: int = 15 * 1024 * 1024
    max_buffer_ms: int = 15 * 60 * 1000
    max_items: int = 10_000
    max_session_bytes: int = 256 * 1024 * 1024
    max_out_of_band: int = 4  # out-of-band responses (conversation "none") running at once
    pace: float = 0.0


# audio.input settings a client turns off with null; the session then leaves them out (the GA
# types have no null for them), unlike turn_detection, whose null the GA reference documents
_LEFT_OUT_WHEN_OFF = ("transcription", "noise_reduction")


def _default_turn_detection(kind: str) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                "interrupt_response": True}
    return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "create_response": True,
            "interrupt_response": True}


def default_session(options: ServerOptions, model: str | None = None) -> dict[str, Any]:
    """The session a new connection starts with (the hosted APIs' defaults; the turn detection
    the server was given; ``model``: the one the client asked for in its URL, echoed as the
    hosted APIs do, else the server's)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model or options.model,
        "instructions": "",
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "tools": [],
        "tool_choice": "auto",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "turn_detection": _default_turn_detection(options.turn_detection),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "voice": options.voice,
                "speed": 1.0,
            },
        },
    }


class ServerSession:
    """One connection's session: its ``settings`` (the protocol's ``session`` object), the
    server's ``options``, and the way out to the client (``emit``, ``error``, ``abort``)."""

    def __init__(
        self,
        options: ServerOptions,
        send: Callable[[str], Awaitable[None]],
        abort: Callable[[], None],
        model: str | None = None,
    ) -> None:
        self.options = options
        self.settings = default_session(options, model)
        self.abort = abort
        self._send = send

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one server event."""
        event = {"type": event["type"], "event_id": new_id("event"),
                 **{k: v for k, v in event.items() if k != "type"}}
        await self._send(json.dumps(event, separators=(",", ":")))

    async def error(self, problem: Problem, event_id: str | None) -> None:
        """Answer a client event with an ``error`` event; the session goes on."""
        await self._send(json.dumps(problem.event(event_id, new_id("event"))))

    def update(self, patch: dict[str, Any]) -> Problem | None:
        """Apply a ``session.update`` patch (the settings are unchanged if it is refused)."""
        patch = session_from_beta(patch)
        if "modelId" in patch and "model" not in patch:
            patch["model"] = patch.pop("modelId")
        problem = check_session(patch)
        if problem is not None:
            return problem
        for key in ("type", *READ_ONLY_SESSION_KEYS):  # the server's own, never the client's
            patch.pop(key, None)
        merged = merge_session(self.settings, patch)
        size = len(json.dumps(merged, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_SESSION_BYTES:
            return Problem("invalid_value", f"The session object would be {size} bytes; the "
                           f"limit is {MAX_SESSION_BYTES} bytes.", "session")
        audio_in = merged["audio"]["input"]
        try:  # on the merged object: a patch may name the model or the keywords alone
            check_transcription(audio_in.get("transcription"), "local")
        except TranscriptionError as exc:
            param = "session.audio.input.transcription" + (f".{exc.param}" if exc.param else "")
            kind = "type" if exc.code == "invalid_type" else "value"
            return Problem(exc.code, f"Invalid {kind} for '{param}': {exc}.", param)
        for key in _LEFT_OUT_WHEN_OFF:  # off: the GA session object leaves them out
            if audio_in.get(key, "") is None:
                del audio_in[key]
        td = audio_in.get("turn_detection")
        if isinstance(td, dict):
            defaults = _default_turn_detection(str(td.get("type") or "server_vad"))
            audio_in["turn_detection"] = {
                k: v for k, v in {**defaults, **td}.items() if v is not None}
        self.settings = merged
        return None

    def turn_detection(self) -> dict[str, Any] | None:
        """The session's ``turn_detection``; ``None`` when it is off."""
        td = self.settings["audio"]["input"].get("turn_detection")
        return td if isinstance(td, dict) else None

    @property
    def transcribing(self) -> bool:
        """Whether the client asked for transcripts of its audio."""
        return self.settings["audio"]["input"].get("transcription") is not None

    @property
    def diarising(self) -> bool:
        """Whether the client asked for a diarising transcription model (``...-diarize``),
        which answers with ``...input_audio_transcription.segment`` events."""
        transcription = self.settings["audio"]["input"].get("transcription")
        model = transcription.get("model") if isinstance(transcription, dict) else None
        return isinstance(model, str) and "diarize" in model
