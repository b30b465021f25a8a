"""The conversation as the local server keeps it: items in order, the session's byte budget,
the ``conversation.item.*`` client events (create, retrieve, delete, truncate), and the
transcription of user audio items.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..protocol.audio import BYTES_PER_MS
from ..protocol.errors import InvalidInput
from ..protocol.heard import Mark, heard_text
from ..protocol.image_parts import DETAILS, ImageInfo, read_data_url
from .engines import HistoryTurn
from .faults import fault
from .server_session import ServerSession, new_id
from .turn_end import LiveTranscript
from .validation import Problem, check_item, decode_base64_audio

log = logging.getLogger("rtwidget.server")


AUDIO_KEPT_BYTES = 8 * 1024 * 1024  # about three minutes of speech, both sides together


@dataclass(eq=False)  # identity: list.index() then compares pointers, not contents
class ServerItem:
    """A conversation item as the server keeps it; audio apart from the public fields."""

    data: dict[str, Any]
    pcm: bytearray = field(default_factory=bytearray)
    counted: int = 0  # bytes charged to the session's budget when it was added
    marks: list[Mark] = field(default_factory=list)  # where each spoken sentence begins
    forgotten_ms: int | None = None  # how long its audio was, once its samples are let go
    ended: set[str] = field(default_factory=set)  # the closing events already sent for it
    images: list[ImageInfo] = field(default_factory=list)  # what its input_image parts hold

    @property
    def id(self) -> str:
        """The item's id."""
        return str(self.data["id"])

    def public(self, with_audio: bool = False) -> dict[str, Any]:
        """The item as server events carry it (its audio base64-encoded if ``with_audio``)."""
        out = json.loads(json.dumps(self.data))
        if str(out.get("type", "")).startswith("mcp_"):  # the GA MCP items have neither
            out.pop("status", None)
            out.pop("object", None)
        if with_audio and self.pcm:
            for part in out.get("content", []):
                if part.get("type") in ("input_audio", "output_audio", "audio"):
                    part["audio"] = base64.b64encode(bytes(self.pcm)).decode("ascii")
        return out

    def audio_ms(self) -> int:
        """How long its audio lasts (also once its samples are forgotten)."""
        return self.forgotten_ms if self.forgotten_ms is not None else len(self.pcm) // BYTES_PER_MS

    def forget_audio(self) -> None:
        """Let its samples go, keeping its words and how long it was."""
        self.forgotten_ms, self.pcm = self.audio_ms(), bytearray()

    def size(self) -> int:
        """Bytes it holds, as counted against the session's budget (taken when it is added)."""
        return len(self.pcm) + len(json.dumps(self.data))

    def turn(self) -> HistoryTurn:
        """The item as a reply engine reads it."""
        d = self.data
        if d["type"] == "message":
            texts = []
            for part in d.get("content", []):
                texts.append(part.get("text") or part.get("transcript") or "")
            # the engine cannot see a picture: it is told what is known of it, and the caption
            seen = " ".join(i.describe() for i in self.images)
            words = f"{seen} {''.join(texts).strip()}".strip()
            return HistoryTurn(role=d["role"], type="message", text=words,
                               audio_ms=self.audio_ms())
        if d["type"] == "mcp_approval_response":
            said = "approved" if d.get("approve") else "denied"
            return HistoryTurn(role="user", type=d["type"], output=f"the user {said} the call",
                               call_id=d.get("approval_request_id"))
        if d["type"] == "mcp_call":
            error = d.get("error") or {}
            return HistoryTurn(role="tool", type="mcp_call", name=d.get("name"),
                               arguments=d.get("arguments"),
                               output=d.get("output") or f"error: {error.get('message', '')}")
        role = "assistant" if d["type"] in ("function_call", "mcp_approval_request") else "tool"
        return HistoryTurn(role=role, type=d["type"], name=d.get("name"),
                           arguments=d.get("arguments"), output=d.get("output"),
                           call_id=d.get("call_id"))


def _unknown_item(action: str, item_id: str) -> Problem:
    return Problem(f"item_{action}_invalid_item_id",
                   f"Item with item_id '{item_id}' not found.", "item_id")


class ItemStore:
    """The conversation's items, in order and by id, with the bytes they hold."""

    def __init__(self, session: ServerSession) -> None:
        self._session = session
        self.items: list[ServerItem] = []
        self._by_id: dict[str, ServerItem] = {}  # the same items, for lookups by id
        self._sounding: deque[ServerItem] = deque()  # items that hold audio or may still get some
        self.stored_bytes = 0

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ServerItem]:
        return iter(self.items)

    def get(self, item_id: str) -> ServerItem | None:
        """The item with this id, if the conversation holds it."""
        return self._by_id.get(item_id)

    def index(self, item_id: str) -> int | None:
        """Where the item with this id stands in the conversation, if it is there."""
        item = self._by_id.get(item_id)
        if item is None:
            return None
        if self.items[-1] is item:  # the usual case: the newest item
            return len(self.items) - 1
        return self.items.index(item)

    def previous_id(self, index: int) -> str | None:
        """The id of the item before position ``index`` (``None`` at the start)."""
        return self.items[index - 1].id if index > 0 else None

    def admit(self, size: int) -> Problem | None:
        """Whether ``size`` more bytes fit in this session's budget."""
        limit = self._session.options.max_session_bytes
        if self.stored_bytes + size > limit:
            return Problem("session_too_large", f"This session already holds "
                           f"{self.stored_bytes} bytes of items; the limit is {limit}. Delete "
                           "some items first.")
        return None

    async def add(self, item: ServerItem, index: int | None = None) -> None:
        """Insert the item at ``index`` (default: last) and announce it."""
        index = len(self.items) if index is None else index
        self.items.insert(index, item)
        self._by_id[item.id] = item
        item.counted = item.size()
        self.stored_bytes += item.counted
        self._sounding.append(item)
        self._forget_old_audio()
        previous = self.previous_id(index)
        public = item.public()
        await self._session.emit({"type": "conversation.item.added",
                                  "previous_item_id": previous, "item": public})
        if item.data.get("status") != "in_progress":
            await self._session.emit({"type": "conversation.item.done",
                                      "previous_item_id": previous, "item": public})

    # --- client events -----------------------------------------------------------------------

    async def create(self, event: dict[str, Any]) -> Problem | None:
        """``conversation.item.create``."""
        raw = event["item"]
        problem = check_item(raw)
        if problem is not None:
            return problem
        if len(self.items) >= self._session.options.max_items:
            return Problem("conversation_too_long", f"The conversation already holds "
                           f"{self._session.options.max_items} items; delete some first.")
        data = json.loads(json.dumps(raw))
        item_id = data.get("id") or new_id("item")
        if item_id in self._by_id:
            return Problem("invalid_value", f"An item with id '{item_id}' already exists.",
                           "item.id")
        # a client restoring a reply that was cut short says so; anything else is complete
        status = "incomplete" if data.get("status") == "incomplete" else "completed"
        data.update(id=item_id, object="realtime.item", status=status)
        pcm = _take_audio(data)
        if isinstance(pcm, Problem):
            return pcm
        images = _check_images(data)
        if isinstance(images, Problem):
            return images
        index = self._insert_at(event)
        if isinstance(index, Problem):
            return index
        item = ServerItem(data, pcm, images=images)
        problem = self.admit(item.size())
        if problem is not None:
            return problem
        await self.add(item, index)
        if pcm and data["role"] == "user":
            await self.transcribe(item)
        return None

    def _insert_at(self, event: dict[str, Any]) -> int | Problem:
        if "previous_item_id" not in event:
            return len(self.items)
        if event["previous_item_id"] in (None, "root"):
            return 0
        found = self.index(event["previous_item_id"])
        if found is None:
            return Problem("invalid_value", f"previous_item_id '{event['previous_item_id']}' "
                           "is not in the conversation.", "previous_item_id")
        return found + 1

    async def retrieve(self, event: dict[str, Any]) -> Problem | None:
        """``conversation.item.retrieve``."""
        item = self._by_id.get(event["item_id"])
        if item is None:
            return _unknown_item("retrieve", event["item_id"])
        await self._session.emit({"type": "conversation.item.retrieved",
                                  "item": item.public(with_audio=True)})
        return None

    async def delete(self, event: dict[str, Any]) -> Problem | None:
        """``conversation.item.delete``."""
        index = self.index(event["item_id"])
        if index is None:
            return _unknown_item("delete", event["item_id"])
        self.stored_bytes -= self.items[index].counted
        del self._by_id[self.items[index].id]
        del self.items[index]
        await self._session.emit({"type": "conversation.item.deleted",
                                  "item_id": event["item_id"]})
        return None

    def _forget_old_audio(self) -> None:
        """Keep the samples of the newest items within :data:`AUDIO_KEPT_BYTES`; older items
        keep their words and length (a long talk would otherwise grow the server by every
        second said and heard; a reply's audio arrives after its item is added, so it is
        counted at the next item). Only items that may hold audio are looked at, so adding an
        item costs the same at 10,000 items as at none."""
        kept, still = 0, deque[ServerItem]()
        for item in reversed(self._sounding):
            kept += len(item.pcm)
            if item.pcm and kept > AUDIO_KEPT_BYTES:
                item.forget_audio()
            elif item.pcm or item.data.get("status") == "in_progress" or not still:
                still.appendleft(item)  # the newest may not have its audio yet
        self._sounding = still

    async def truncate(self, event: dict[str, Any]) -> Problem | None:
        """``conversation.item.truncate``: cut an assistant's audio where playback stopped."""
        item = self._by_id.get(event["item_id"])
        if item is None:
            return _unknown_item("truncate", event["item_id"])
        content = item.data.get("content", [])
        ci = event["content_index"]
        if item.data.get("role") != "assistant" or ci >= len(content) \
                or content[ci].get("type") not in ("output_audio", "audio"):
            return Problem("invalid_value", "Only the audio part of an assistant message can be "
                           "truncated.", "content_index")
        end_ms = event["audio_end_ms"]
        if end_ms > item.audio_ms():
            return Problem("invalid_value", f"Audio content of {item.audio_ms()}ms is already "
                           f"shorter than {end_ms}ms.", "audio_end_ms")
        # the reply engine sees what the user heard, as a hosted model does
        content[ci]["transcript"] = heard_text(content[ci].get("transcript") or "", item.marks,
                                               item.audio_ms() * BYTES_PER_MS,
                                               end_ms * BYTES_PER_MS)
        del item.pcm[end_ms * BYTES_PER_MS:]
        if item.forgotten_ms is not None:
            item.forgotten_ms = end_ms
        await self._session.emit({"type": "conversation.item.truncated", "item_id": item.id,
                                  "content_index": ci, "audio_end_ms": end_ms})
        return None

    # --- transcription of user audio ---------------------------------------------------------

    async def transcribe(self, item: ServerItem, heard: str | None = None,
                         live: LiveTranscript | None = None) -> None:
        """Give a user audio item its words: those ``heard`` while it was spoken, else the
        transcriber's now; the client hears of it if it asked for transcription."""
        wanted = self._session.transcribing
        part = item.data["content"][0]
        if part.get("transcript"):
            return
        if heard is not None:
            await self._transcribed(item, heard, live.remainder(heard) if live else heard)
            return
        transcriber = self._session.options.transcriber
        if transcriber is None:
            await self._failed(item, wanted, "no_transcriber", "This server has no speech-to-text "
                               "engine; install the offline engines (pip install "
                               "'rtwidget[local]').")
            return
        try:
            text = await asyncio.to_thread(transcriber.transcribe, bytes(item.pcm))
        except Exception as exc:
            failure = fault("speech to text", transcriber, exc)
            log.error("%s", failure, exc_info=None if failure.missing else exc)
            await self._failed(item, wanted, failure.code, str(failure))
            # an engine fault is never silent, even to a client that asked for no transcripts
            await self._session.emit({"type": "error", "error": failure.error()})
            return
        await self._transcribed(item, text, text)

    async def _failed(self, item: ServerItem, wanted: bool, code: str, message: str) -> None:
        if wanted:
            await self._session.emit({
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": item.id, "content_index": 0,
                "error": {"type": "transcription_error", "code": code, "message": message},
            })

    async def _transcribed(self, item: ServerItem, text: str, delta: str) -> None:
        item.data["content"][0]["transcript"] = text
        if not self._session.transcribing:
            return
        if delta:
            await self._session.emit({
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item.id, "content_index": 0, "delta": delta})
        if text and self._session.diarising:
            # one segment, the whole turn: the offline transcribers tell no speakers apart, so
            # every turn is speaker "A", from the first sample of the item's audio to its last
            await self._session.emit({
                "type": "conversation.item.input_audio_transcription.segment",
                "item_id": item.id, "content_index": 0, "id": new_id("seg"), "speaker": "A",
                "start": 0.0, "end": item.audio_ms() / 1000, "text": text})
        await self._session.emit({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item.id, "content_index": 0, "transcript": text,
            "usage": {"type": "duration", "seconds": item.audio_ms() / 1000}})


def _take_audio(data: dict[str, Any]) -> bytearray | Problem:
    """The PCM of a created item's ``input_audio`` parts, taken out of its public fields."""
    pcm = bytearray()
    for i, part in enumerate(data.get("content", [])):
        if part.get("type") == "input_audio":
            decoded = decode_base64_audio(part.pop("audio"), f"item.content[{i}].audio")
            if isinstance(decoded, Problem):
                return decoded
            pcm += decoded
            part.setdefault("transcript", None)
    return pcm


def _check_images(data: dict[str, Any]) -> list[ImageInfo] | Problem:
    """What a created item's ``input_image`` parts hold, each checked: a base64 data URL of a
    PNG or JPEG that is what it says, within the size taken, and a known ``detail``."""
    images = []
    for i, part in enumerate(data.get("content", [])):
        if part.get("type") != "input_image":
            continue
        where = f"item.content[{i}]"
        if "detail" in part and part["detail"] not in DETAILS:
            return Problem("invalid_value", f"Invalid value for '{where}.detail': expected "
                           + ", ".join(f"'{d}'" for d in DETAILS) + ".", f"{where}.detail")
        try:
            info, _ = read_data_url(part.get("image_url"))
        except InvalidInput as exc:
            return Problem("invalid_value", f"Invalid image in '{where}.image_url': {exc}.",
                           f"{where}.image_url")
        images.append(info)
    return images
