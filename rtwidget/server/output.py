"""What a response of the local server writes: its output items (an assistant message as
text, or as synthesized speech with its transcript, and function calls), streamed as the
protocol's delta events, within the response's ``max_output_tokens``.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

from ..protocol.audio import BYTES_PER_MS
from .engines import (
    HistoryTurn,
    ToolCall,
    count_tokens,
    first_clause,
    iter_chunks,
    split_sentences,
)
from .faults import fault
from .item_store import ItemStore, ServerItem
from .server_session import ServerSession, new_id

_AUDIO_CHUNK_BYTES = 100 * BYTES_PER_MS


def _wire_part(part: dict[str, Any]) -> dict[str, Any]:
    """A content part as ``response.content_part.added/.done`` carry it: the GA API (and the
    ``openai`` package's models) call the part ``audio``/``text`` there, while the item itself
    keeps ``output_audio``/``output_text``."""
    kind = {"output_audio": "audio", "output_text": "text"}.get(part.get("type", ""))
    return dict(part, type=kind) if kind else dict(part)


@dataclass
class ServerResponse:
    """One response: its settings, its output items and what it has used."""

    id: str
    config: dict[str, Any]
    in_conversation: bool
    input_turns: list[HistoryTurn] | None
    status: str = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[ServerItem] = field(default_factory=list)
    message: ServerItem | None = None
    pending_speech: str = ""
    input_tokens: int = 0
    input_audio_tokens: int = 0
    text_tokens: int = 0
    audio_tokens: int = 0
    task: asyncio.Task[None] | None = None
    event_id: str | None = None  # of the response.create that asked for it, if one did
    conversation_id: str | None = None  # None: out of band

    @property
    def modalities(self) -> list[str]:
        """``output_modalities`` of this response."""
        return list(self.config.get("output_modalities") or ["audio"])

    def played_ms(self) -> int:
        """How long the audio of its output lasts."""
        return sum(len(i.pcm) for i in self.output) // BYTES_PER_MS

    def public(self) -> dict[str, Any]:
        """The response as ``response.created``/``response.done`` carry it (fields with no
        value left out)."""
        out: dict[str, Any] = {
            "object": "realtime.response",
            "id": self.id,
            "status": self.status,
            "status_details": self.status_details,
            "output": [i.public() for i in self.output],
            "conversation_id": self.conversation_id,
            "output_modalities": self.modalities,
            "max_output_tokens": self.config.get("max_output_tokens", "inf"),
            "metadata": self.config.get("metadata"),
            "usage": self._usage() if self.status != "in_progress" else None,
        }
        # the GA types leave out fields with no value, but an out-of-band response says its
        # conversation_id is null (the one way a client can tell it from the conversation's)
        return {k: v for k, v in out.items() if v is not None or k == "conversation_id"}

    def _usage(self) -> dict[str, Any]:
        output_tokens = self.text_tokens + self.audio_tokens
        return {
            "total_tokens": self.input_tokens + output_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {  # the GA shape: nothing is cached here, no images
                "text_tokens": self.input_tokens - self.input_audio_tokens,
                "audio_tokens": self.input_audio_tokens,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0,
                                          "image_tokens": 0},
            },
            "output_token_details": {
                "text_tokens": self.text_tokens,
                "audio_tokens": self.audio_tokens,
            },
        }


def _speaker(synthesizer: Any, voice: str | None) -> Any:
    """The engine that speaks ``voice`` (one of several, for a combined synthesizer)."""
    pick = getattr(synthesizer, "engine_for", None)
    return pick(voice) if callable(pick) else synthesizer


class TokenLimit(Exception):
    """The reply hit ``max_output_tokens``."""


class OutputWriter:
    """Writes responses' output items, announcing each step to the client."""

    def __init__(self, session: ServerSession, items: ItemStore) -> None:
        self._session = session
        self._emit = session.emit
        self._items = items

    def _spend(self, response: ServerResponse, tokens: int) -> None:
        limit = response.config.get("max_output_tokens")
        if isinstance(limit, int) and response.text_tokens + tokens > limit:
            raise TokenLimit
        response.text_tokens += tokens

    async def _new_output(self, response: ServerResponse, data: dict[str, Any]) -> ServerItem:
        item = ServerItem({"id": new_id("item"), "object": "realtime.item",
                           "status": "in_progress", **data})
        response.output.append(item)
        await self._emit({"type": "response.output_item.added", "response_id": response.id,
                          "output_index": len(response.output) - 1, "item": item.public()})
        if response.in_conversation:
            await self._items.add(item)
        return item

    @staticmethod
    def _where(response: ServerResponse, item: ServerItem) -> dict[str, Any]:
        return {"response_id": response.id, "item_id": item.id,
                "output_index": response.output.index(item), "content_index": 0}

    async def text(self, response: ServerResponse, text: str, whole: bool = False) -> None:
        """Add the engine's words to the response's message (started if need be): as text, or
        spoken sentence by sentence (``whole``: the words end a sentence)."""
        self._spend(response, count_tokens(text))
        audio = "audio" in response.modalities
        item = response.message
        if item is None:
            part = {"type": "output_audio", "transcript": ""} if audio else \
                {"type": "output_text", "text": ""}
            item = await self._new_output(response, {"type": "message", "role": "assistant",
                                                     "content": []})
            response.message = item
            item.data["content"].append(part)
            await self._emit({"type": "response.content_part.added",
                              **self._where(response, item), "part": _wire_part(part)})
        if not audio:
            item.data["content"][0]["text"] += text
            await self._emit({"type": "response.output_text.delta",
                              **self._where(response, item), "delta": text})
            return
        response.pending_speech += text
        sentences, response.pending_speech = split_sentences(response.pending_speech, whole)
        if not sentences and not item.data["content"][0]["transcript"] and getattr(
                _speaker(self._session.options.synthesizer, response.config.get("voice")),
                "first_clause", False):  # a voice slow to start: its first clause at once
            sentences, response.pending_speech = first_clause(response.pending_speech)
        for sentence in sentences:
            await self._speak(response, item, sentence)

    async def _speak(self, response: ServerResponse, item: ServerItem, sentence: str) -> None:
        options = self._session.options
        part = item.data["content"][0]
        spoken = (" " if part["transcript"] else "") + sentence
        voice = response.config.get("voice")
        try:
            pcm = await asyncio.to_thread(options.synthesizer.synthesize, sentence, voice,
                                          response.config["speed"])
        except Exception as exc:
            raise fault("text to speech", _speaker(options.synthesizer, voice), exc) from exc
        where = self._where(response, item)
        item.marks.append((len(part["transcript"]), len(item.pcm)))
        part["transcript"] += spoken
        await self._emit({"type": "response.output_audio_transcript.delta", **where,
                          "delta": spoken})
        for chunk in iter_chunks(pcm, _AUDIO_CHUNK_BYTES):
            item.pcm += chunk
            response.audio_tokens += len(chunk) // BYTES_PER_MS // 50
            await self._emit({"type": "response.output_audio.delta", **where,
                              "delta": base64.b64encode(chunk).decode("ascii")})
            await asyncio.sleep(options.pace)

    async def finish_message(self, response: ServerResponse, status: str,
                             flush: bool = True) -> None:
        """End the message being written, if any (``flush``: speak its unfinished sentence)."""
        item = response.message
        if item is None:
            return
        part = item.data["content"][0]
        if part["type"] == "output_audio" and flush:
            sentences, response.pending_speech = split_sentences(response.pending_speech, True)
            for sentence in sentences:  # if speech fails, the message is still there to end
                await self._speak(response, item, sentence)
        await self._close(response, item, status)
        response.message = None

    async def end_all(self, response: ServerResponse, status: str) -> None:
        """Close every output item of a response that ends early (cancelled, failed, cut), with
        each closing event not yet sent, so no item is left in progress. A cancel may land
        while an item is being closed: what was sent is not sent again."""
        for item in list(response.output):
            await self._close(response, item, status)
        response.message = None

    async def _once(self, item: ServerItem, event: dict[str, Any]) -> None:
        """Send a closing event of ``item`` unless it was sent (marked first: a cancel while
        it is on its way must not send it twice)."""
        if event["type"] in item.ended:
            return
        item.ended.add(event["type"])
        await self._emit(event)

    async def _close(self, response: ServerResponse, item: ServerItem, status: str) -> None:
        """The closing events of an output item, those of its content first (the GA order:
        audio, transcript, content part, output item, conversation item)."""
        if item.data.get("type") == "message" and item.data.get("content"):
            part = item.data["content"][0]
            where = self._where(response, item)
            if part["type"] == "output_audio":
                await self._once(item, {"type": "response.output_audio.done", **where})
                await self._once(item, {"type": "response.output_audio_transcript.done",
                                        **where, "transcript": part["transcript"]})
            else:
                await self._once(item, {"type": "response.output_text.done", **where,
                                        "text": part["text"]})
            await self._once(item, {"type": "response.content_part.done", **where,
                                    "part": _wire_part(part)})
        await self._item_done(response, item, status)

    async def _item_done(self, response: ServerResponse, item: ServerItem, status: str) -> None:
        if "response.output_item.done" not in item.ended:
            item.data["status"] = status
        index = response.output.index(item)
        await self._once(item, {"type": "response.output_item.done", "response_id": response.id,
                                "output_index": index, "item": item.public()})
        if response.in_conversation and (pos := self._items.index(item.id)) is not None:
            await self._once(item, {"type": "conversation.item.done",
                                    "previous_item_id": self._items.previous_id(pos),
                                    "item": item.public()})

    async def tool_call(self, response: ServerResponse, call: ToolCall) -> None:
        """Write a ``function_call`` item, its arguments streamed in two deltas."""
        self._spend(response, count_tokens(call.arguments))
        call_id = new_id("call")
        item = await self._new_output(response, {"type": "function_call", "call_id": call_id,
                                                 "name": call.name, "arguments": ""})
        where = {"response_id": response.id, "item_id": item.id,
                 "output_index": response.output.index(item), "call_id": call_id}
        half = max(1, len(call.arguments) // 2)
        for piece in (call.arguments[:half], call.arguments[half:]):
            if piece:
                item.data["arguments"] += piece
                await self._emit({"type": "response.function_call_arguments.delta", **where,
                                  "delta": piece})
                await asyncio.sleep(self._session.options.pace)
        await self._emit({"type": "response.function_call_arguments.done", **where,
                          "name": call.name, "arguments": call.arguments})
        await self._item_done(response, item, "completed")
