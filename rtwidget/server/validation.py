"""Checks the local server runs on every client event before acting on it (pure, no I/O).

Each check returns ``None`` or a :class:`Problem` that becomes an ``error`` event with the same
``type``/``code``/``param`` fields the hosted APIs use, so clients can be tested against the
errors they will meet in production.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..protocol.audio import SAMPLE_RATE
from ..protocol.errors import ConfigError
from ..protocol.ga_session import (
    include_value,
    parallel_tool_calls_value,
    prompt_value,
    reasoning_value,
    tracing_value,
    truncation_value,
)

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.delete",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)

_STR = (str,)
_INT = (int,)
_DICT = (dict,)
_NONE = (type(None),)

# event type -> field -> (accepted types, required)
_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "session.update": {"session": (_DICT, True)},
    "input_audio_buffer.append": {"audio": (_STR, True)},
    "conversation.item.create": {"item": (_DICT, True), "previous_item_id": (_STR + _NONE, False)},
    "conversation.item.retrieve": {"item_id": (_STR, True)},
    "conversation.item.delete": {"item_id": (_STR, True)},
    "conversation.item.truncate": {
        "item_id": (_STR, True),
        "content_index": (_INT, True),
        "audio_end_ms": (_INT, True),
    },
    "response.create": {"response": (_DICT, False)},
    "response.cancel": {"response_id": (_STR, False)},
}

# upper bounds on what a client sets, so that no setting can make the server hold unbounded data
MAX_PADDING_MS = 10_000  # turn_detection.prefix_padding_ms and silence_duration_ms
MAX_INSTRUCTIONS = 200_000  # characters
MAX_TOOLS = 128
MAX_INPUT_ITEMS = 1_000  # response.input
MAX_SESSION_BYTES = 2 * 1024 * 1024  # the whole session object, as UTF-8 JSON

# the session object's fields, as OpenAI documents them (GA) and Inworld extends them (modelId,
# providerData, temperature); anything else is refused, as the hosted APIs do, so the server
# keeps nothing a client makes up. The server's own read-only fields may be sent back: ignored.
SESSION_KEYS = frozenset({
    "type", "model", "modelId", "instructions", "output_modalities", "temperature",
    "max_output_tokens", "tools", "tool_choice", "audio", "include", "prompt", "tracing",
    "truncation", "reasoning", "parallel_tool_calls", "providerData"})
READ_ONLY_SESSION_KEYS = frozenset({"object", "id", "expires_at"})
# the older beta protocol's names for the same fields (OpenAI-Beta: realtime=v1), mapped onto
# the GA session object before it is checked: (GA place, how the value is converted)
_BETA_FORMATS = {"pcm16": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                 "g711_ulaw": {"type": "audio/pcmu"}, "g711_alaw": {"type": "audio/pcma"}}
_BETA_SESSION_KEYS = {
    "modalities": ("output_modalities",), "max_response_output_tokens": ("max_output_tokens",),
    "voice": ("audio", "output", "voice"), "speed": ("audio", "output", "speed"),
    "input_audio_format": ("audio", "input", "format"),
    "output_audio_format": ("audio", "output", "format"),
    "input_audio_transcription": ("audio", "input", "transcription"),
    "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
    "turn_detection": ("audio", "input", "turn_detection"),
}


def session_from_beta(session: Mapping[str, Any]) -> dict[str, Any]:
    """``session`` with the beta protocol's field names moved to their GA places (a GA field
    given as well wins); a GA session comes back as it was. The input is not changed."""
    out = {k: v for k, v in session.items() if k not in _BETA_SESSION_KEYS}
    for name, place in _BETA_SESSION_KEYS.items():
        if name not in session:
            continue
        value = session[name]
        if name.endswith("_format") and isinstance(value, str):
            value = _BETA_FORMATS.get(value, value)
        parent = out
        for step in place[:-1]:
            child = parent.get(step, {})
            if not isinstance(child, dict):
                break  # a GA object of the wrong type: check_session refuses it
            parent[step] = parent = dict(child)
        else:
            parent.setdefault(place[-1], value)
    return out


_AUDIO_KEYS = {"session.audio.": frozenset({"input", "output"}),
               "session.audio.input.": frozenset({"format", "transcription", "noise_reduction",
                                                   "turn_detection"}),
               "session.audio.output.": frozenset({"format", "voice", "model", "speed"})}

_TYPE_NAMES = {str: "string", int: "integer", dict: "object", type(None): "null", list: "array",
               float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Problem:
    """Why a client event was refused, as the fields of an ``error`` event."""

    code: str
    message: str
    param: str | None = None
    type: str = "invalid_request_error"

    def event(self, event_id: str | None, new_id: str) -> dict[str, Any]:
        """The ``error`` server event for this problem (``param`` and ``event_id`` left out
        when there are none, as the GA types have them)."""
        return {
            "type": "error",
            "event_id": new_id,
            "error": {k: v for k, v in (("type", self.type), ("code", self.code),
                                        ("message", self.message), ("param", self.param),
                                        ("event_id", event_id)) if v is not None},
        }


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _expect(value: Any, types: tuple[type, ...], param: str) -> Problem | None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok:
        return None
    wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
    return Problem("invalid_type", f"Invalid type for '{param}': expected {wanted}, "
                   f"but got {_type_name(value)}.", param)


def check_envelope(event: Any) -> Problem | None:
    """The event is an object with a known ``type`` and well-typed fields."""
    if not isinstance(event, dict):
        return Problem("invalid_json", f"Expected a JSON object, got {_type_name(event)}.")
    if "event_id" in event and not isinstance(event["event_id"], str):
        return _expect(event["event_id"], _STR, "event_id")
    kind = event.get("type")
    if kind is None:
        return Problem("missing_required_parameter", "Missing required parameter: 'type'.",
                       "type")
    if not isinstance(kind, str):
        return _expect(kind, _STR, "type")
    if kind not in CLIENT_EVENTS:
        return Problem("invalid_value", f"Invalid value: '{kind[:100]}'. Supported values are: "
                       + ", ".join(f"'{k}'" for k in CLIENT_EVENTS) + ".", "type")
    for name, (types, required) in _FIELDS.get(kind, {}).items():
        if name not in event:
            if required:
                return Problem("missing_required_parameter",
                               f"Missing required parameter: '{name}'.", name)
            continue
        problem = _expect(event[name], types, name)
        if problem:
            return problem
    if kind == "conversation.item.truncate":
        if event["audio_end_ms"] < 0:
            return Problem("invalid_value", "audio_end_ms must be >= 0.", "audio_end_ms")
        if event["content_index"] < 0:
            return Problem("invalid_value", "content_index must be >= 0.", "content_index")
    return None


def decode_base64_audio(data: str, param: str) -> bytes | Problem:
    """PCM16 bytes from base64, or the problem with it (bad base64, odd length)."""
    try:
        pcm = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return Problem("invalid_value", f"'{param}' is not valid base64.", param)
    if len(pcm) % 2:
        return Problem("invalid_value", f"'{param}' holds {len(pcm)} bytes; PCM16 audio needs an "
                       "even number of bytes.", param)
    return pcm


_TURN_FIELDS: dict[str, tuple[type, ...]] = {
    "type": _STR,
    "threshold": (int, float),
    "prefix_padding_ms": _INT,
    "silence_duration_ms": _INT,
    "idle_timeout_ms": _INT + _NONE,
    "create_response": (bool,),
    "interrupt_response": (bool,),
    "eagerness": _STR,
    "engine": _STR,
}


def _check_format(fmt: Any, param: str) -> Problem | None:
    if not isinstance(fmt, dict):
        return _expect(fmt, _DICT, param)
    kind = fmt.get("type")
    if kind != "audio/pcm":
        return Problem("invalid_value", f"Unsupported audio format {kind!r}: this server speaks "
                       "audio/pcm (PCM16 mono) only.", f"{param}.type")
    rate = fmt.get("rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        return Problem("invalid_value", f"Unsupported sample rate {rate!r}: audio/pcm is "
                       f"{SAMPLE_RATE} Hz.", f"{param}.rate")
    return None


def _check_turn_detection(td: Any, param: str) -> Problem | None:
    if td is None:
        return None
    if not isinstance(td, dict):
        return _expect(td, _DICT + _NONE, param)
    for key, types in _TURN_FIELDS.items():
        if key in td and (problem := _expect(td[key], types, f"{param}.{key}")):
            return problem
    if td.get("type", "server_vad") not in ("server_vad", "semantic_vad"):
        return Problem("invalid_value", f"Invalid value: {td.get('type')!r}. Supported values "
                       "are: 'server_vad', 'semantic_vad'.", f"{param}.type")
    if td.get("eagerness", "auto") not in ("low", "medium", "high", "auto"):
        return Problem("invalid_value", f"Invalid value: {td.get('eagerness')!r}. Supported "
                       "values are: 'low', 'medium', 'high', 'auto'.", f"{param}.eagerness")
    threshold = td.get("threshold", 0.5)
    if not 0.0 <= threshold <= 1.0:
        return Problem("invalid_value", "threshold must be between 0 and 1.",
                       f"{param}.threshold")
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if not 0 <= td.get(key, 0) <= MAX_PADDING_MS:
            return Problem("invalid_value", f"{key} must be between 0 and {MAX_PADDING_MS}.",
                           f"{param}.{key}")
    return None


_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_tools(tools: Any, param: str) -> Problem | None:
    """``tools`` is a list of ``{type: "function", name, description?, parameters?}``."""
    if not isinstance(tools, list):
        return _expect(tools, (list,), param)
    if len(tools) > MAX_TOOLS:
        return Problem("invalid_value", f"At most {MAX_TOOLS} tools; got {len(tools)}.", param)
    for i, tool in enumerate(tools):
        where = f"{param}[{i}]"
        if not isinstance(tool, dict):
            return _expect(tool, _DICT, where)
        if tool.get("type") == "mcp":
            if not all(isinstance(tool.get(k), str) and tool[k] for k in
                       ("server_label", "server_url")):
                return Problem("missing_required_parameter", "An mcp tool needs a "
                               "'server_label' and a 'server_url'.", where)
            continue
        if tool.get("type", "function") != "function":
            return Problem("invalid_value", f"Unsupported tool type {tool.get('type')!r}.",
                           f"{where}.type")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            return Problem("missing_required_parameter", "A function tool needs a 'name'.",
                           f"{where}.name")
        if not _TOOL_NAME.fullmatch(tool["name"]):
            return Problem("invalid_value", f"Tool name {tool['name'][:80]!r} must be 1 to 64 "
                           "letters, digits, '_' or '-'.", f"{where}.name")
        if "parameters" in tool and not isinstance(tool["parameters"], dict):
            return _expect(tool["parameters"], _DICT, f"{where}.parameters")
    return None


def check_tool_choice(choice: Any, param: str) -> Problem | None:
    """``"auto"``, ``"none"``, ``"required"`` or ``{type: "function", name}``."""
    if choice in ("auto", "none", "required"):
        return None
    if isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("name"), str):
        return None
    return Problem("invalid_value", "tool_choice must be 'auto', 'none', 'required' or "
                   "{type: 'function', name}.", param)


def check_response_fields(cfg: Mapping[str, Any], prefix: str) -> Problem | None:
    """Fields shared by the session and by per-response overrides."""
    if "instructions" in cfg and (p := _expect(cfg["instructions"], _STR, f"{prefix}instructions")):
        return p
    if len(cfg.get("instructions") or "") > MAX_INSTRUCTIONS:
        return Problem("invalid_value", f"instructions are limited to {MAX_INSTRUCTIONS} "
                       "characters.", f"{prefix}instructions")
    if "output_modalities" in cfg:
        mods = cfg["output_modalities"]
        if not isinstance(mods, list) or not mods or any(m not in ("text", "audio") for m in mods):
            return Problem("invalid_value", "output_modalities must be a non-empty list of "
                           "'text' and/or 'audio'.", f"{prefix}output_modalities")
    if "max_output_tokens" in cfg:
        value = cfg["max_output_tokens"]
        ok = value == "inf" or (isinstance(value, int) and not isinstance(value, bool)
                                and 1 <= value <= 4096)
        if not ok:
            return Problem("invalid_value", "max_output_tokens must be an integer from 1 to 4096 "
                           "or 'inf'.", f"{prefix}max_output_tokens")
    if "tools" in cfg and (p := check_tools(cfg["tools"], f"{prefix}tools")):
        return p
    if "tool_choice" in cfg and (p := check_tool_choice(cfg["tool_choice"],
                                                        f"{prefix}tool_choice")):
        return p
    return None


def _unknown(part: Mapping[str, Any], known: frozenset[str], prefix: str) -> Problem | None:
    for key in part:
        if key not in known:
            name = f"{prefix}{str(key)[:80]}"
            return Problem("unknown_parameter", f"Unknown parameter: '{name}'.", name)
    return None


_GA_CHECKS: dict[str, Callable[[Any], Any]] = {
    "prompt": prompt_value, "truncation": truncation_value, "reasoning": reasoning_value,
    "parallel_tool_calls": parallel_tool_calls_value, "tracing": tracing_value,
    "include": include_value,
}


_GA_TYPES: dict[str, tuple[type, ...]] = {
    "prompt": _DICT + _NONE, "truncation": _STR + _DICT, "reasoning": _DICT,
    "parallel_tool_calls": (bool,), "tracing": _STR + _DICT + _NONE, "providerData": _DICT,
}


def _check_extensions(session: Mapping[str, Any]) -> Problem | None:
    """The documented fields the server keeps (and echoes) but does not act on: OpenAI's GA
    fields, checked as the GA reference shapes them, and Inworld's ``providerData``."""
    if "include" in session:
        include = session["include"]
        if p := _expect(include, (list,), "session.include"):
            return p
        for i, entry in enumerate(include):
            if p := _expect(entry, _STR, f"session.include[{i}]"):
                return p
    for name, types in _GA_TYPES.items():  # the JSON type first, as the hosted API checks
        if name in session and (p := _expect(session[name], types, f"session.{name}")):
            return p
    for name, check in _GA_CHECKS.items():  # then the shape
        if name not in session or (name == "prompt" and session[name] is None):
            continue
        try:
            check(session[name])
        except ConfigError as exc:
            return Problem("invalid_value", f"Invalid value for 'session.{name}': {exc}.",
                           f"session.{name}")
    return None


def check_session(session: Mapping[str, Any]) -> Problem | None:
    """A (partial) session object from ``session.update``: only the documented fields
    (:data:`SESSION_KEYS`), each of the documented type."""
    if p := _unknown(session, SESSION_KEYS | READ_ONLY_SESSION_KEYS, "session."):
        return p
    if p := _check_extensions(session):
        return p
    if session.get("type", "realtime") != "realtime":
        return Problem("invalid_value", f"Unsupported session type {session.get('type')!r}: "
                       "this server runs 'realtime' sessions.", "session.type")
    model = session.get("model", session.get("modelId", "x"))
    if not isinstance(model, str) or not model:
        return Problem("invalid_value", "model must be a non-empty string.", "session.model")
    if "temperature" in session:
        temp = session["temperature"]
        if p := _expect(temp, (int, float), "session.temperature"):
            return p
        if not 0.0 <= temp <= 2.0:
            return Problem("invalid_value", "temperature must be between 0 and 2.",
                           "session.temperature")
    if p := check_response_fields(session, "session."):
        return p
    audio = session.get("audio", {})
    if not isinstance(audio, dict):
        return _expect(audio, _DICT, "session.audio")
    if p := _unknown(audio, _AUDIO_KEYS["session.audio."], "session.audio."):
        return p
    audio_in = audio.get("input", {})
    audio_out = audio.get("output", {})
    for name, part in (("input", audio_in), ("output", audio_out)):
        if not isinstance(part, dict):
            return _expect(part, _DICT, f"session.audio.{name}")
        prefix = f"session.audio.{name}."
        if p := _unknown(part, _AUDIO_KEYS[prefix], prefix):
            return p
        if "format" in part and (p := _check_format(part["format"],
                                                    f"session.audio.{name}.format")):
            return p
    if "turn_detection" in audio_in and (
        p := _check_turn_detection(audio_in["turn_detection"], "session.audio.input.turn_detection")
    ):
        return p
    if "voice" in audio_out and (p := _expect(audio_out["voice"], _STR,
                                              "session.audio.output.voice")):
        return p
    if "speed" in audio_out:
        speed = audio_out["speed"]
        if p := _expect(speed, (int, float), "session.audio.output.speed"):
            return p
        if not 0.25 <= speed <= 4.0:
            return Problem("invalid_value", "speed must be between 0.25 and 4.",
                           "session.audio.output.speed")
    return None


_PART_TYPES = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "text", "output_audio", "audio"),
}


def check_item(item: Mapping[str, Any]) -> Problem | None:
    """An item from ``conversation.item.create``."""
    kind = item.get("type")
    if kind == "mcp_approval_response":
        if not isinstance(item.get("approval_request_id"), str) or \
                not isinstance(item.get("approve"), bool):
            return Problem("invalid_value", "An mcp_approval_response needs an "
                           "'approval_request_id' and a boolean 'approve'.", "item")
        return None
    if kind not in ("message", "function_call", "function_call_output"):
        return Problem("invalid_value", f"Invalid item type {kind!r}; expected 'message', "
                       "'function_call' or 'function_call_output'.", "item.type")
    if "id" in item and (p := _expect(item["id"], _STR, "item.id")):
        return p
    if kind == "message":
        role = item.get("role")
        if role not in _PART_TYPES:
            return Problem("invalid_value", f"Invalid role {role!r}; expected 'user', "
                           "'assistant' or 'system'.", "item.role")
        content = item.get("content")
        if not isinstance(content, list):
            return _expect(content, (list,), "item.content")
        for i, part in enumerate(content):
            where = f"item.content[{i}]"
            if not isinstance(part, dict):
                return _expect(part, _DICT, where)
            if part.get("type") not in _PART_TYPES[role]:
                return Problem("invalid_value", f"A {role} message cannot hold a "
                               f"{part.get('type')!r} part; allowed: "
                               + ", ".join(_PART_TYPES[role]) + ".", f"{where}.type")
            if part["type"] in ("input_text", "output_text", "text") and (
                p := _expect(part.get("text"), _STR, f"{where}.text")
            ):
                return p
            if part["type"] == "input_audio" and (
                p := _expect(part.get("audio"), _STR, f"{where}.audio")
            ):
                return p
        return None
    if not isinstance(item.get("call_id"), str):
        if "call_id" not in item:
            return Problem("missing_required_parameter", "Missing required parameter: "
                           "'item.call_id'.", "item.call_id")
        return _expect(item["call_id"], _STR, "item.call_id")
    fields = ("name", "arguments") if kind == "function_call" else ("output",)
    for name in fields:
        if name not in item:
            return Problem("missing_required_parameter",
                           f"Missing required parameter: 'item.{name}'.", f"item.{name}")
        if p := _expect(item[name], _STR, f"item.{name}"):
            return p
    return None
