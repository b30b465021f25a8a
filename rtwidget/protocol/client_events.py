"""Builders for every client event of the Realtime protocol (pure: dicts in, dicts out).

Every builder returns a JSON-ready ``dict`` with a fresh ``event_id`` so that an ``error`` event
from the server can be tied back to the event that caused it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .audio import encode_audio, to_pcm16
from .configuration import (
    NOT_GIVEN,
    Modality,
    max_tokens_value,
    modalities_value,
    tool_choice_value,
)
from .errors import InvalidInput

_prefix = os.urandom(4).hex()
_counter = itertools.count(1)


def new_event_id() -> str:
    """A client event id, unique within this process."""
    return f"evt_{_prefix}{next(_counter):08d}"


def new_item_id() -> str:
    """A client-chosen conversation item id (at most 32 characters, as the protocol allows)."""
    return f"item_{_prefix}{next(_counter):08d}"


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "event_id": new_event_id()}
    event.update({k: v for k, v in fields.items() if v is not NOT_GIVEN})
    return event


# --- session -----------------------------------------------------------------------------------


def session_update(session: Mapping[str, Any]) -> dict[str, Any]:
    """``session.update`` carrying a (partial) session object from
    :func:`~rtwidget.protocol.configuration.session_config`."""
    return _event("session.update", session=dict(session))


# --- input audio buffer -------------------------------------------------------------------------


def input_audio_append(audio: Any) -> dict[str, Any]:
    """``input_audio_buffer.append`` for PCM16 24 kHz mono audio (bytes or a numpy array)."""
    # built directly (sent 25-50 times a second): the same event as _event() makes
    return {"type": "input_audio_buffer.append", "event_id": new_event_id(),
            "audio": encode_audio(to_pcm16(audio))}


def input_audio_commit() -> dict[str, Any]:
    """``input_audio_buffer.commit``: end the user's turn by hand (when server VAD is off)."""
    return _event("input_audio_buffer.commit")


def input_audio_clear() -> dict[str, Any]:
    """``input_audio_buffer.clear``: drop audio appended but not committed."""
    return _event("input_audio_buffer.clear")


# --- conversation items ---------------------------------------------------------------------------


def text_message(
    text: str, role: Literal["user", "assistant", "system"] = "user", item_id: str | None = None
) -> dict[str, Any]:
    """A message item holding one text part (``output_text`` for the assistant)."""
    part_type = "output_text" if role == "assistant" else "input_text"
    item: dict[str, Any] = {
        "type": "message",
        "role": role,
        "content": [{"type": part_type, "text": str(text)}],
    }
    if item_id:
        item["id"] = item_id
    return item


def audio_message(
    audio: Any, transcript: str | None = None, item_id: str | None = None
) -> dict[str, Any]:
    """A user message item holding one pre-recorded ``input_audio`` part (PCM16 24 kHz)."""
    part: dict[str, Any] = {"type": "input_audio", "audio": encode_audio(to_pcm16(audio))}
    if transcript is not None:
        part["transcript"] = transcript
    item: dict[str, Any] = {"type": "message", "role": "user", "content": [part]}
    if item_id:
        item["id"] = item_id
    return item


def function_call_output(call_id: str, output: str, item_id: str | None = None) -> dict[str, Any]:
    """A ``function_call_output`` item answering the call ``call_id``."""
    item: dict[str, Any] = {"type": "function_call_output", "call_id": call_id, "output": output}
    if item_id:
        item["id"] = item_id
    return item


def item_create(
    item: Mapping[str, Any], previous_item_id: str | None = NOT_GIVEN
) -> dict[str, Any]:
    """``conversation.item.create``; ``previous_item_id=None`` inserts at the start."""
    return _event("conversation.item.create", previous_item_id=previous_item_id, item=dict(item))


def item_retrieve(item_id: str) -> dict[str, Any]:
    """``conversation.item.retrieve``: ask the server for its copy of an item."""
    return _event("conversation.item.retrieve", item_id=item_id)


def item_delete(item_id: str) -> dict[str, Any]:
    """``conversation.item.delete``."""
    return _event("conversation.item.delete", item_id=item_id)


def item_truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> dict[str, Any]:
    """``conversation.item.truncate``: the assistant audio after ``audio_end_ms`` was not heard."""
    if audio_end_ms < 0:
        raise InvalidInput(f"audio_end_ms must be >= 0, got {audio_end_ms}")
    return _event(
        "conversation.item.truncate",
        item_id=item_id,
        content_index=int(content_index),
        audio_end_ms=int(audio_end_ms),
    )


# --- responses -----------------------------------------------------------------------------------


def response_create(
    *,
    instructions: str = NOT_GIVEN,
    output_modalities: Sequence[Modality] | Modality = NOT_GIVEN,
    tools: Sequence[Mapping[str, Any]] = NOT_GIVEN,
    tool_choice: Any = NOT_GIVEN,
    max_output_tokens: int | Literal["inf"] = NOT_GIVEN,
    conversation: Literal["auto", "none"] = NOT_GIVEN,
    input: Sequence[Mapping[str, Any]] = NOT_GIVEN,
    metadata: Mapping[str, str] = NOT_GIVEN,
    voice: str = NOT_GIVEN,
) -> dict[str, Any]:
    """``response.create`` with optional per-response overrides."""
    response: dict[str, Any] = {}
    if instructions is not NOT_GIVEN:
        response["instructions"] = str(instructions)
    if output_modalities is not NOT_GIVEN:
        response["output_modalities"] = modalities_value(output_modalities)
    if tools is not NOT_GIVEN:
        response["tools"] = [dict(t) for t in tools]
    if tool_choice is not NOT_GIVEN:
        response["tool_choice"] = tool_choice_value(tool_choice)
    if max_output_tokens is not NOT_GIVEN:
        response["max_output_tokens"] = max_tokens_value(max_output_tokens)
    if conversation is not NOT_GIVEN:
        response["conversation"] = conversation
    if input is not NOT_GIVEN:
        response["input"] = [dict(i) for i in input]
    if metadata is not NOT_GIVEN:
        response["metadata"] = dict(metadata)
    if voice is not NOT_GIVEN:
        response["audio"] = {"output": {"voice": str(voice)}}
    if response:
        return _event("response.create", response=response)
    return _event("response.create")


def response_cancel(response_id: str | None = None) -> dict[str, Any]:
    """``response.cancel``; without an id the server cancels the response in progress."""
    if response_id:
        return _event("response.cancel", response_id=response_id)
    return _event("response.cancel")


FILLER = "filler"
"""The ``metadata.rtwidget`` of a filler's ``response.create`` (said while a tool runs)."""

BACKGROUND_RESULT = re.compile(
    r"^The background call (?P<name>[\w-]+)\((?P<arguments>.*)\) \[call (?P<call_id>[^\]]*)\] "
    r"has finished\. Its result: (?P<output>.*)$", re.S)
"""A background tool's result as the system message that delivers it (see
:func:`background_result`); a reply engine may find the output in it."""


def background_result(name: str, call_id: str, arguments: str, output: str) -> dict[str, Any]:
    """The system message item that gives the model a background call's result."""
    return text_message(f"The background call {name}({arguments}) [call {call_id}] has "
                        f"finished. Its result: {output}", role="system")

