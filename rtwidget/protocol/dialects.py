"""The older beta shape of client events (``OpenAI-Beta: realtime=v1``), from the GA shape the
builders produce. Server events need no translation: the Conversation reads both."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Literal

_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


def _format(fmt: Any) -> Any:
    if not isinstance(fmt, dict):
        return fmt
    kind = str(fmt.get("type"))
    return _FORMATS.get(kind, kind)


def _session(session: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in session.items() if k not in ("type", "audio", "output_modalities",
                                                          "max_output_tokens")}
    if "output_modalities" in session:
        out["modalities"] = session["output_modalities"]
    if "max_output_tokens" in session:
        out["max_response_output_tokens"] = session["max_output_tokens"]
    audio = session.get("audio") or {}
    audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
    renames = {"turn_detection": "turn_detection", "transcription": "input_audio_transcription",
               "noise_reduction": "input_audio_noise_reduction"}
    for ga, beta in renames.items():
        if ga in audio_in:
            out[beta] = audio_in[ga]
    if "format" in audio_in:
        out["input_audio_format"] = _format(audio_in["format"])
    if "format" in audio_out:
        out["output_audio_format"] = _format(audio_out["format"])
    for key in ("voice", "speed"):
        if key in audio_out:
            out[key] = audio_out[key]
    return out


def _item(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    if isinstance(item.get("content"), list):
        out["content"] = [dict(p, type="text") if isinstance(p, dict) and
                          p.get("type") == "output_text" else p for p in item["content"]]
    return out


def to_beta(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as a beta-protocol server expects it (a new dict; the input is untouched)."""
    kind = event.get("type")
    if kind == "session.update" and isinstance(event.get("session"), dict):
        return {**event, "session": _session(event["session"])}
    if kind == "response.create" and isinstance(event.get("response"), dict):
        return {**event, "response": _session(event["response"])}
    if kind == "conversation.item.create" and isinstance(event.get("item"), dict):
        return {**event, "item": _item(event["item"])}
    return copy.copy(event)


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def encode(event: dict[str, Any], dialect: Literal["ga", "beta"] = "ga") -> str:
    """The text frame for a client event in ``dialect``. A plain
    ``input_audio_buffer.append`` (the same in both dialects, sent 50 times a second) is
    written directly; everything else goes through ``json.dumps``."""
    if event.get("type") == "input_audio_buffer.append" and len(event) == 3:
        event_id, audio = event.get("event_id"), event.get("audio")
        if (isinstance(event_id, str) and isinstance(audio, str)
                and _PLAIN_ID.fullmatch(event_id) and '"' not in audio and "\\" not in audio):
            return ('{"type":"input_audio_buffer.append","event_id":"' + event_id
                    + '","audio":"' + audio + '"}')
    wire = to_beta(event) if dialect == "beta" else event
    return json.dumps(wire, separators=(",", ":"))
