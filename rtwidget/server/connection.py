"""One client connection of the local server: the Realtime protocol from the server's side.

:class:`Connection` holds the session, the conversation items, the input audio buffer with its
voice activity detector, and the response being streamed. It talks to the transport through two
callables (``send`` a text frame, ``abort`` the connection), so it can be driven without sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..protocol.audio import SAMPLE_RATE
from ..protocol.client_events import merge_session
from ..protocol.heard import Mark, heard_text
from .engines import (
    DropConnection,
    ReplyContext,
    ReplyEngine,
    Synthesizer,
    TextDelta,
    ToolCall,
    Transcriber,
    Turn,
    count_tokens,
    iter_chunks,
    split_sentences,
)
from .turns import LiveTranscript, silence_needed_ms
from .vad import EnergyVad, Vad, VadSettings
from .validation import (
    MAX_INPUT_ITEMS,
    Problem,
    check_envelope,
    check_item,
    check_response_fields,
    check_session,
    decode_base64_audio,
)

log = logging.getLogger("rtwidget.server")

BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
_AUDIO_CHUNK_BYTES = 100 * BYTES_PER_MS
_MIN_COMMIT_MS = 100


_EVENT_ID = re.compile(r'"event_id"\s*:\s*"([^"\\]{1,128})"')


def _new_id(prefix: str) -> str:
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


def _default_turn_detection(kind: str) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                "interrupt_response": True}
    return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "idle_timeout_ms": None, "create_response": True,
            "interrupt_response": True}


def default_session(options: ServerOptions) -> dict[str, Any]:
    """The session a new connection starts with (the hosted APIs' defaults; the turn detection
    the server was given)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _new_id("sess"),
        "model": options.model,
        "instructions": "",
        "output_modalities": ["audio"],
        "temperature": 0.8,
        "max_output_tokens": "inf",
        "tools": [],
        "tool_choice": "auto",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": _default_turn_detection(options.turn_detection),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": SAMPLE_RATE},
                "voice": options.voice,
                "model": "default",
                "speed": 1.0,
            },
        },
    }


def _wire_part(part: dict[str, Any]) -> dict[str, Any]:
    """A content part as ``response.content_part.added/.done`` carry it: the GA API (and the
    ``openai`` package's models) call the part ``audio``/``text`` there, while the item itself
    keeps ``output_audio``/``output_text``."""
    kind = {"output_audio": "audio", "output_text": "text"}.get(part.get("type", ""))
    return dict(part, type=kind) if kind else dict(part)


@dataclass(eq=False)  # identity: list.index() then compares pointers, not contents
class _Item:
    """A conversation item as the server keeps it; audio apart from the public fields."""

    data: dict[str, Any]
    pcm: bytearray = field(default_factory=bytearray)
    counted: int = 0  # bytes charged to the session's budget when it was added
    marks: list[Mark] = field(default_factory=list)  # where each spoken sentence begins

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def public(self, with_audio: bool = False) -> dict[str, Any]:
        out = json.loads(json.dumps(self.data))
        if with_audio and self.pcm:
            for part in out.get("content", []):
                if part.get("type") in ("input_audio", "output_audio", "audio"):
                    part["audio"] = base64.b64encode(bytes(self.pcm)).decode("ascii")
        return out

    def audio_ms(self) -> int:
        return len(self.pcm) // BYTES_PER_MS

    def size(self) -> int:
        """Bytes it holds, as counted against the session's budget (taken when it is added)."""
        return len(self.pcm) + len(json.dumps(self.data))

    def turn(self) -> Turn:
        d = self.data
        if d["type"] == "message":
            texts = []
            for part in d.get("content", []):
                texts.append(part.get("text") or part.get("transcript") or "")
            return Turn(role=d["role"], type="message", text="".join(texts).strip(),
                        audio_ms=self.audio_ms())
        return Turn(role="assistant" if d["type"] == "function_call" else "tool", type=d["type"],
                    name=d.get("name"), arguments=d.get("arguments"), output=d.get("output"),
                    call_id=d.get("call_id"))


@dataclass
class _Response:
    id: str
    config: dict[str, Any]
    in_conversation: bool
    input_turns: list[Turn] | None
    status: str = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[_Item] = field(default_factory=list)
    message: _Item | None = None
    pending_speech: str = ""
    input_tokens: int = 0
    input_audio_tokens: int = 0
    text_tokens: int = 0
    audio_tokens: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def modalities(self) -> list[str]:
        return list(self.config.get("output_modalities") or ["audio"])

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "object": "realtime.response",
            "id": self.id,
            "status": self.status,
            "status_details": self.status_details,
            "output": [i.public() for i in self.output],
            "conversation_id": "auto" if self.in_conversation else None,
            "output_modalities": self.modalities,
            "max_output_tokens": self.config.get("max_output_tokens", "inf"),
            "metadata": self.config.get("metadata"),
            "usage": None,
        }
        if self.status != "in_progress":
            output_tokens = self.text_tokens + self.audio_tokens
            out["usage"] = {
                "total_tokens": self.input_tokens + output_tokens,
                "input_tokens": self.input_tokens,
                "output_tokens": output_tokens,
                "input_token_details": {
                    "text_tokens": self.input_tokens - self.input_audio_tokens,
                    "audio_tokens": self.input_audio_tokens,
                    "cached_tokens": 0,
                },
                "output_token_details": {
                    "text_tokens": self.text_tokens,
                    "audio_tokens": self.audio_tokens,
                },
            }
        return out


class _Cut(Exception):
    """The reply hit ``max_output_tokens``."""


class Connection:
    """The server side of one Realtime session (see the module docstring)."""

    def __init__(
        self,
        options: ServerOptions,
        send: Callable[[str], Awaitable[None]],
        abort: Callable[[], None],
    ) -> None:
        self.options = options
        self._send = send
        self._abort = abort
        self.session = default_session(options)
        self.items: list[_Item] = []
        self._by_id: dict[str, _Item] = {}  # the same items, for lookups by id
        self._out_of_band: set[asyncio.Task[None]] = set()
        self.buffer = bytearray()
        self._buffer_start_ms = 0
        self._appended_ms = 0
        self._vad: Vad | None = None
        self._vad_factory: Callable[[VadSettings], Vad] | None = None
        self._vad_origin_ms = 0
        self._speech: tuple[str, int] | None = None
        self._live: LiveTranscript | None = None
        self._words_judged = 0
        self.response: _Response | None = None
        self.responses_done = 0
        self.stored_bytes = 0
        self._idle_from_ms: int | None = None  # input-audio clock; armed after each reply
        self._configure_vad()

    # --- plumbing ----------------------------------------------------------------------------

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one server event."""
        event = {"type": event["type"], "event_id": _new_id("event"),
                 **{k: v for k, v in event.items() if k != "type"}}
        await self._send(json.dumps(event, separators=(",", ":")))

    async def error(self, problem: Problem, event_id: str | None) -> None:
        """Answer a client event with an ``error`` event; the session goes on."""
        await self._send(json.dumps(problem.event(event_id, _new_id("event"))))

    async def start(self) -> None:
        """Greet the client with ``session.created``."""
        await self.emit({"type": "session.created", "session": self.session})

    async def close(self) -> None:
        """Stop the responses and the live transcription in progress, if any (the client is
        gone)."""
        await self._drop_live()
        response = self.response
        tasks = list(self._out_of_band)
        if response is not None and response.task is not None:
            tasks.append(response.task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def receive(self, raw: str | bytes) -> None:
        """Handle one message from the client; every problem becomes an ``error`` event."""
        if isinstance(raw, bytes):
            await self.error(Problem("invalid_json", "Binary frames are not supported; send "
                                     "events as JSON text frames."), None)
            return
        if len(raw) > self.options.max_message_bytes:  # refused before parsing it
            head = _EVENT_ID.search(raw, 0, 1024)
            await self.error(Problem("message_too_large", f"The message is {len(raw)} bytes; the "
                                     f"limit is {self.options.max_message_bytes} bytes."),
                             head.group(1) if head else None)
            return
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            await self.error(Problem("invalid_json", f"The message is not valid JSON: {reason}."),
                             None)
            return
        event_id = event.get("event_id") if isinstance(event, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        problem = check_envelope(event)
        if problem is not None:
            await self.error(problem, event_id)
            return
        handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
        try:
            problem = await handler(event)
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.exception("local server failed on %s", event["type"])
            problem = Problem("server_error", f"The server failed on this event: {exc}",
                              type="server_error")
        if problem is not None:
            await self.error(problem, event_id)

    # --- session -----------------------------------------------------------------------------

    def _turn_detection(self) -> dict[str, Any] | None:
        td = self.session["audio"]["input"].get("turn_detection")
        return td if isinstance(td, dict) else None

    def _configure_vad(self) -> None:
        td = self._turn_detection()
        if td is None:
            self._vad = None
            self._speech = None
            return
        silence = int(td.get("silence_duration_ms", 500))
        if td.get("type") == "semantic_vad":
            silence = self._semantic_silence(td)
        settings = VadSettings(
            threshold=float(td.get("threshold", 0.5)),
            prefix_padding_ms=int(td.get("prefix_padding_ms", 300)),
            silence_duration_ms=silence,
        )
        factory = self.options.vads.get(str(td.get("engine")), self.options.vad_factory)
        if self._vad is None or factory is not self._vad_factory:
            self._vad = factory(settings)
            self._vad_factory = factory
            self._vad_origin_ms = self._appended_ms
        else:
            self._vad.settings = settings

    def _semantic_silence(self, td: dict[str, Any]) -> int:
        """``semantic_vad``: the silence that ends the turn, from the words heard so far. Words
        that do not reach the silence yet (audio sent faster than it is decoded) do not count.
        Once the speaker is silent, a revised last word ("for" heard again as "floor") cannot
        shorten the wait; a new word (the decoder catching up) can."""
        live, vad = self._live, self._vad
        eagerness = str(td.get("eagerness") or "auto")
        quiet = getattr(vad, "silence_ms", 0) if vad is not None else 0
        if live is None or (quiet > 0 and live.backlog_ms > quiet):
            return silence_needed_ms("", eagerness)
        needed = silence_needed_ms(live.partial, eagerness)
        count = len(live.partial.split())
        if vad is not None and quiet > 0 and count <= self._words_judged \
                and needed < vad.settings.silence_duration_ms:
            return vad.settings.silence_duration_ms
        self._words_judged = count
        return needed

    async def _on_session_update(self, event: dict[str, Any]) -> Problem | None:
        patch = dict(event["session"])
        if "modelId" in patch and "model" not in patch:
            patch["model"] = patch.pop("modelId")
        problem = check_session(patch)
        if problem is not None:
            return problem
        patch.pop("type", None)
        merged = merge_session(self.session, patch)
        td = merged["audio"]["input"].get("turn_detection")
        if isinstance(td, dict):
            defaults = _default_turn_detection(str(td.get("type") or "server_vad"))
            merged["audio"]["input"]["turn_detection"] = {**defaults, **td}
        self.session = merged
        self._configure_vad()
        if self._vad is None:
            await self._drop_live()
        await self.emit({"type": "session.updated", "session": self.session})
        return None

    # --- input audio -------------------------------------------------------------------------

    async def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> Problem | None:
        pcm = decode_base64_audio(event["audio"], "audio")
        if isinstance(pcm, Problem):
            return pcm
        self.buffer += pcm
        self._appended_ms += len(pcm) // BYTES_PER_MS
        live = self._live
        if live is not None:
            self._configure_vad()  # semantic_vad: whether the words still reach the silence
        if self._vad is not None:
            for vad_event in self._vad.feed(pcm):
                ms = self._vad_origin_ms + vad_event.ms
                if vad_event.kind == "start":
                    await self._speech_started(ms)
                elif self._speech is not None:
                    await self._speech_stopped(ms)
        if live is not None and live is self._live:
            live.feed(pcm)
        await self._check_idle()
        self._trim_buffer()
        return None

    async def _check_idle(self) -> None:
        """``turn_detection.idle_timeout_ms`` (server VAD): once that much input audio has
        come in without speech since the last reply finished playing, say so with
        ``input_audio_buffer.timeout_triggered``, commit the quiet audio and respond."""
        td = self._turn_detection() or {}
        timeout = td.get("idle_timeout_ms")
        start = self._idle_from_ms
        if (not isinstance(timeout, int) or timeout <= 0 or start is None or self._vad is None
                or td.get("type", "server_vad") != "server_vad" or self._speech is not None
                or self.response is not None or self._appended_ms - start < timeout):
            return
        self._idle_from_ms = None
        item_id = _new_id("item")
        await self.emit({"type": "input_audio_buffer.timeout_triggered",
                         "audio_start_ms": start, "audio_end_ms": self._appended_ms,
                         "item_id": item_id})
        pcm = bytes(self.buffer)
        self.buffer.clear()
        self._buffer_start_ms = self._appended_ms
        if await self._commit(pcm, item_id) and self.response is None:
            self._start_response({}, None)

    def _trim_buffer(self) -> None:
        keep_ms = self.options.max_buffer_ms
        if self._vad is not None and self._speech is None:
            keep_ms = self._vad.settings.prefix_padding_ms + 100
        excess = len(self.buffer) - keep_ms * BYTES_PER_MS
        if excess > 0:
            excess -= excess % 2
            del self.buffer[:excess]
            self._buffer_start_ms += excess // BYTES_PER_MS

    def _slice(self, start_ms: int, end_ms: int) -> bytes:
        lo = max(0, (start_ms - self._buffer_start_ms) * BYTES_PER_MS)
        hi = max(lo, (end_ms - self._buffer_start_ms) * BYTES_PER_MS)
        return bytes(self.buffer[lo:hi])

    def _drop_until(self, end_ms: int) -> None:
        cut = max(0, (end_ms - self._buffer_start_ms) * BYTES_PER_MS)
        del self.buffer[:cut]
        self._buffer_start_ms += cut // BYTES_PER_MS

    async def _speech_started(self, ms: int) -> None:
        item_id = _new_id("item")
        self._speech = (item_id, ms)
        self._idle_from_ms = None
        await self.emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": ms,
                         "item_id": item_id})
        self._listen(item_id, ms)
        td = self._turn_detection() or {}
        if td.get("interrupt_response", True) and self.response is not None:
            await self._cancel(self.response, "turn_detected")

    def _listen(self, item_id: str, start_ms: int) -> None:
        """Transcribe the turn while it is spoken (when the transcriber can stream): partial
        words go out as transcription deltas and, for ``semantic_vad``, decide how long a
        silence ends the turn."""
        stream = getattr(self.options.transcriber, "stream", None)
        if stream is None or self._vad is None:
            return

        async def heard(partial: str, settled: str) -> None:
            if self._live is not live:
                return
            self._configure_vad()  # semantic_vad: the words set the silence that ends the turn
            if settled and self.session["audio"]["input"].get("transcription") is not None:
                await self.emit({"type": "conversation.item.input_audio_transcription.delta",
                                 "item_id": item_id, "content_index": 0, "delta": settled})

        live = LiveTranscript(stream, heard)
        self._live = live
        self._configure_vad()
        live.feed(self._slice(start_ms - self._vad.settings.prefix_padding_ms,
                              self._appended_ms))

    async def _drop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            await live.cancel()

    async def _speech_stopped(self, ms: int) -> None:
        assert self._speech is not None and self._vad is not None
        item_id, start_ms = self._speech
        self._speech = None
        live, self._live = self._live, None
        await self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms,
                         "item_id": item_id})
        pcm = self._slice(start_ms - self._vad.settings.prefix_padding_ms, ms)
        self._drop_until(ms)
        heard = await live.finish() if live is not None else None
        self._configure_vad()
        committed = await self._commit(pcm, item_id, heard, live)
        td = self._turn_detection() or {}
        if committed and td.get("create_response", True) and self.response is None:
            self._start_response({}, None)

    async def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> Problem | None:
        ms = len(self.buffer) // BYTES_PER_MS
        if ms < _MIN_COMMIT_MS:
            return Problem("input_audio_buffer_commit_empty", f"Error committing input audio "
                           f"buffer: buffer too small. Expected at least {_MIN_COMMIT_MS}ms of "
                           f"audio, but buffer only has {ms}ms of audio.")
        pcm = bytes(self.buffer)
        item_id = self._speech[0] if self._speech else _new_id("item")
        await self._drop_live()
        self.buffer.clear()
        self._buffer_start_ms = self._appended_ms
        self._speech = None
        if self._vad is not None:
            self._vad = (self._vad_factory or self.options.vad_factory)(self._vad.settings)
            self._vad_origin_ms = self._appended_ms
        await self._commit(pcm, item_id)
        return None

    async def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> Problem | None:
        await self._drop_live()
        self.buffer.clear()
        self._buffer_start_ms = self._appended_ms
        self._speech = None
        if self._vad is not None:
            self._vad = (self._vad_factory or self.options.vad_factory)(self._vad.settings)
            self._vad_origin_ms = self._appended_ms
        await self.emit({"type": "input_audio_buffer.cleared"})
        return None

    def _admit(self, size: int) -> Problem | None:
        """Whether ``size`` more bytes fit in this session's budget."""
        if self.stored_bytes + size > self.options.max_session_bytes:
            return Problem("session_too_large", f"This session already holds "
                           f"{self.stored_bytes} bytes of items; the limit is "
                           f"{self.options.max_session_bytes}. Delete some items first.")
        return None

    async def _commit(self, pcm: bytes, item_id: str, heard: str | None = None,
                      live: LiveTranscript | None = None) -> bool:
        """Make the audio a user item, with its words if they were ``heard`` while it was
        spoken (else transcribed now); ``False`` if the session's budget refused it."""
        problem = self._admit(len(pcm))
        if problem is not None:
            await self.error(problem, None)
            return False
        previous = self.items[-1].id if self.items else None
        await self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous,
                         "item_id": item_id})
        item = _Item({"id": item_id, "object": "realtime.item", "type": "message",
                      "role": "user", "status": "completed",
                      "content": [{"type": "input_audio", "transcript": None}]}, bytearray(pcm))
        await self._add_item(item, len(self.items))
        await self._transcribe(item, heard, live)
        return True

    async def _transcribe(self, item: _Item, heard: str | None = None,
                          live: LiveTranscript | None = None) -> None:
        wanted = self.session["audio"]["input"].get("transcription") is not None
        part = item.data["content"][0]
        if part.get("transcript"):
            return
        if heard is not None:
            await self._transcribed(item, heard, live.remainder(heard) if live else heard)
            return
        if self.options.transcriber is None:
            if wanted:
                await self.emit({
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item.id, "content_index": 0,
                    "error": {"type": "transcription_error", "code": "no_transcriber",
                              "message": "This server has no speech-to-text engine; install "
                              "the offline engines (pip install 'rtwidget[local]').",
                              "param": None},
                })
            return
        try:
            text = await asyncio.to_thread(self.options.transcriber.transcribe, bytes(item.pcm))
        except Exception as exc:
            log.exception("transcription failed")
            if wanted:
                await self.emit({
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item.id, "content_index": 0,
                    "error": {"type": "transcription_error", "code": "transcription_failed",
                              "message": str(exc), "param": None},
                })
            return
        await self._transcribed(item, text, text)

    async def _transcribed(self, item: _Item, text: str, delta: str) -> None:
        item.data["content"][0]["transcript"] = text
        if self.session["audio"]["input"].get("transcription") is None:
            return
        if delta:
            await self.emit({"type": "conversation.item.input_audio_transcription.delta",
                             "item_id": item.id, "content_index": 0, "delta": delta})
        await self.emit({"type": "conversation.item.input_audio_transcription.completed",
                         "item_id": item.id, "content_index": 0, "transcript": text,
                         "usage": {"type": "duration", "seconds": item.audio_ms() / 1000}})

    # --- conversation items ------------------------------------------------------------------

    def _index(self, item_id: str) -> int | None:
        item = self._by_id.get(item_id)
        if item is None:
            return None
        if self.items[-1] is item:  # the usual case: the newest item
            return len(self.items) - 1
        return self.items.index(item)

    async def _add_item(self, item: _Item, index: int) -> None:
        self.items.insert(index, item)
        self._by_id[item.id] = item
        item.counted = item.size()
        self.stored_bytes += item.counted
        previous = self.items[index - 1].id if index > 0 else None
        public = item.public()
        await self.emit({"type": "conversation.item.added", "previous_item_id": previous,
                         "item": public})
        if public.get("status") != "in_progress":
            await self.emit({"type": "conversation.item.done", "previous_item_id": previous,
                             "item": public})

    async def _on_conversation_item_create(self, event: dict[str, Any]) -> Problem | None:
        raw = event["item"]
        problem = check_item(raw)
        if problem is not None:
            return problem
        if len(self.items) >= self.options.max_items:
            return Problem("conversation_too_long", f"The conversation already holds "
                           f"{self.options.max_items} items; delete some first.")
        data = json.loads(json.dumps(raw))
        item_id = data.get("id") or _new_id("item")
        if item_id in self._by_id:
            return Problem("invalid_value", f"An item with id '{item_id}' already exists.",
                           "item.id")
        data.update(id=item_id, object="realtime.item", status="completed")
        pcm = bytearray()
        for i, part in enumerate(data.get("content", [])):
            if part.get("type") == "input_audio":
                decoded = decode_base64_audio(part.pop("audio"), f"item.content[{i}].audio")
                if isinstance(decoded, Problem):
                    return decoded
                pcm += decoded
                part.setdefault("transcript", None)
        if "previous_item_id" not in event:
            index = len(self.items)
        elif event["previous_item_id"] in (None, "root"):
            index = 0
        else:
            found = self._index(event["previous_item_id"])
            if found is None:
                return Problem("invalid_value", f"previous_item_id '{event['previous_item_id']}' "
                               "is not in the conversation.", "previous_item_id")
            index = found + 1
        item = _Item(data, pcm)
        problem = self._admit(item.size())
        if problem is not None:
            return problem
        await self._add_item(item, index)
        if pcm and data["role"] == "user":
            await self._transcribe(item)
        return None

    def _unknown_item(self, action: str, item_id: str) -> Problem:
        return Problem(f"item_{action}_invalid_item_id",
                       f"Item with item_id '{item_id}' not found.", "item_id")

    async def _on_conversation_item_retrieve(self, event: dict[str, Any]) -> Problem | None:
        item = self._by_id.get(event["item_id"])
        if item is None:
            return self._unknown_item("retrieve", event["item_id"])
        await self.emit({"type": "conversation.item.retrieved",
                         "item": item.public(with_audio=True)})
        return None

    async def _on_conversation_item_delete(self, event: dict[str, Any]) -> Problem | None:
        index = self._index(event["item_id"])
        if index is None:
            return self._unknown_item("delete", event["item_id"])
        self.stored_bytes -= self.items[index].counted
        del self._by_id[self.items[index].id]
        del self.items[index]
        await self.emit({"type": "conversation.item.deleted", "item_id": event["item_id"]})
        return None

    async def _on_conversation_item_truncate(self, event: dict[str, Any]) -> Problem | None:
        item = self._by_id.get(event["item_id"])
        if item is None:
            return self._unknown_item("truncate", event["item_id"])
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
                                               len(item.pcm), end_ms * BYTES_PER_MS)
        del item.pcm[end_ms * BYTES_PER_MS:]
        await self.emit({"type": "conversation.item.truncated", "item_id": item.id,
                         "content_index": ci, "audio_end_ms": end_ms})
        return None

    # --- responses ---------------------------------------------------------------------------

    async def _on_response_create(self, event: dict[str, Any]) -> Problem | None:
        overrides = dict(event.get("response") or {})
        problem = check_response_fields(overrides, "response.")
        if problem is not None:
            return problem
        if overrides.get("conversation", "auto") not in ("auto", "none"):
            return Problem("invalid_value", "conversation must be 'auto' or 'none'.",
                           "response.conversation")
        input_turns = None
        if "input" in overrides:
            if not isinstance(overrides["input"], list):
                return Problem("invalid_type", "response.input must be a list of items.",
                               "response.input")
            if len(overrides["input"]) > MAX_INPUT_ITEMS:
                return Problem("invalid_value", f"response.input holds at most "
                               f"{MAX_INPUT_ITEMS} items.", "response.input")
            input_turns = []
            for i, entry in enumerate(overrides["input"]):
                if isinstance(entry, dict) and entry.get("type") == "item_reference":
                    found = self._by_id.get(str(entry.get("id")))
                    if found is None:
                        return Problem("invalid_value", f"Unknown item '{entry.get('id')}'.",
                                       f"response.input[{i}].id")
                    input_turns.append(found.turn())
                    continue
                if not isinstance(entry, dict) or (p := check_item(entry)):
                    return p or Problem("invalid_type", "Items must be objects.",
                                        f"response.input[{i}]")
                input_turns.append(_Item({**entry, "id": "input"}).turn())
        if self.response is not None and overrides.get("conversation", "auto") == "auto":
            return Problem("conversation_already_has_active_response", "Conversation already "
                           f"has an active response in progress: {self.response.id}. Wait "
                           "until the response is finished before creating a new one.")
        if overrides.get("conversation") == "none" \
                and len(self._out_of_band) >= self.options.max_out_of_band:
            return Problem("too_many_active_responses", f"{self.options.max_out_of_band} "
                           "out-of-band responses are already in progress; wait for one to "
                           "finish.")
        self._start_response(overrides, input_turns)
        return None

    async def _on_response_cancel(self, event: dict[str, Any]) -> Problem | None:
        response = self.response
        wanted = event.get("response_id")
        if response is None or (wanted and wanted != response.id):
            return Problem("response_cancel_not_active", "Cancellation failed: no active "
                           "response found" + (f" with id '{wanted}'." if wanted else "."))
        await self._cancel(response, "client_cancelled")
        return None

    async def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> Problem | None:
        return Problem("invalid_value", "output_audio_buffer.clear is for WebRTC connections; "
                       "over WebSocket, stop playback in the client and send "
                       "conversation.item.truncate.", "type")

    async def _cancel(self, response: _Response, reason: str) -> None:
        response.status_details = {"type": "cancelled", "reason": reason}
        if response.task is not None and not response.task.done():
            response.task.cancel()
            await asyncio.gather(response.task, return_exceptions=True)
        if self.response is response:  # cancelled before its task ever ran: end it here
            self.response = None
            response.status = "cancelled"
            self.responses_done += 1
            await self.emit({"type": "response.created", "response": response.public()})
            await self.emit({"type": "response.done", "response": response.public()})

    def _start_response(self, overrides: dict[str, Any], input_turns: list[Turn] | None) -> None:
        keys = ("instructions", "output_modalities", "max_output_tokens", "tools", "tool_choice",
                "temperature", "model")
        config = {k: self.session.get(k) for k in keys}
        config.update({k: v for k, v in overrides.items() if k != "audio"})
        out_audio = merge_session(self.session["audio"]["output"],
                                  (overrides.get("audio") or {}).get("output") or {})
        config["voice"] = out_audio.get("voice")
        config["speed"] = float(out_audio.get("speed") or 1.0)
        in_conversation = overrides.get("conversation", "auto") == "auto"
        response = _Response(_new_id("resp"), config, in_conversation, input_turns)
        if in_conversation:
            self.response = response
            self._idle_from_ms = None
        response.task = asyncio.create_task(self._stream(response), name=response.id)
        if not in_conversation:
            self._out_of_band.add(response.task)
            response.task.add_done_callback(self._out_of_band.discard)

    def _context(self, response: _Response) -> ReplyContext:
        history = response.input_turns
        if history is None:
            history = [item.turn() for item in self.items]
        for turn in history:
            tokens = count_tokens(turn.text or turn.arguments or turn.output or "")
            audio = int(turn.audio_ms / 100)
            response.input_tokens += tokens + audio
            response.input_audio_tokens += audio
        cfg = response.config
        max_tokens = cfg.get("max_output_tokens")
        return ReplyContext(
            instructions=str(cfg.get("instructions") or ""),
            history=history,
            tools=list(cfg.get("tools") or []),
            tool_choice=cfg.get("tool_choice", "auto"),
            max_output_tokens=max_tokens if isinstance(max_tokens, int) else None,
            temperature=float(cfg.get("temperature") or 0.8),
            model=str(cfg.get("model") or ""),
        )

    async def _stream(self, response: _Response) -> None:
        try:
            await self.emit({"type": "response.created", "response": response.public()})
            context = self._context(response)
            engine = self.options.engines.get(context.model, self.options.engine)
            async for chunk in engine.reply(context):
                if isinstance(chunk, DropConnection):
                    self._abort()
                    return
                if isinstance(chunk, TextDelta):
                    await self._text(response, chunk.text, chunk.whole)
                elif isinstance(chunk, ToolCall):
                    await self._finish_message(response, "completed")
                    await self._tool_call(response, chunk)
                await asyncio.sleep(self.options.pace)
            await self._finish_message(response, "completed")
            response.status = "completed"
        except _Cut:
            response.status = "incomplete"
            response.status_details = {"type": "incomplete", "reason": "max_output_tokens"}
            await self._finish_message(response, "incomplete", flush=False)
        except asyncio.CancelledError:
            response.status = "cancelled"
            response.status_details = response.status_details or {
                "type": "cancelled", "reason": "client_cancelled"}
            try:
                await self._finish_message(response, "incomplete", flush=False)
            except ConnectionClosed:
                return
        except ConnectionClosed:
            return
        except Exception as exc:
            log.exception("the reply engine failed")
            response.status = "failed"
            response.status_details = {"type": "failed", "error": {
                "type": "server_error", "code": "engine_error", "message": str(exc)}}
            try:
                await self._finish_message(response, "incomplete", flush=False)
            except ConnectionClosed:
                return
        finally:
            if self.response is response:
                self.response = None
                played_ms = sum(len(i.pcm) for i in response.output) // BYTES_PER_MS
                self._idle_from_ms = self._appended_ms + played_ms
        self.responses_done += 1
        with contextlib.suppress(ConnectionClosed):
            await self.emit({"type": "response.done", "response": response.public()})

    def _spend(self, response: _Response, tokens: int) -> None:
        limit = response.config.get("max_output_tokens")
        if isinstance(limit, int) and response.text_tokens + tokens > limit:
            raise _Cut
        response.text_tokens += tokens

    async def _new_output(self, response: _Response, data: dict[str, Any]) -> _Item:
        item = _Item({"id": _new_id("item"), "object": "realtime.item", "status": "in_progress",
                      **data})
        response.output.append(item)
        await self.emit({"type": "response.output_item.added", "response_id": response.id,
                         "output_index": len(response.output) - 1, "item": item.public()})
        if response.in_conversation:
            await self._add_item(item, len(self.items))
        return item

    def _where(self, response: _Response, item: _Item) -> dict[str, Any]:
        return {"response_id": response.id, "item_id": item.id,
                "output_index": response.output.index(item), "content_index": 0}

    async def _text(self, response: _Response, text: str, whole: bool = False) -> None:
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
            await self.emit({"type": "response.content_part.added",
                             **self._where(response, item), "part": _wire_part(part)})
        if not audio:
            item.data["content"][0]["text"] += text
            await self.emit({"type": "response.output_text.delta",
                             **self._where(response, item), "delta": text})
            return
        response.pending_speech += text
        sentences, response.pending_speech = split_sentences(response.pending_speech, whole)
        for sentence in sentences:
            await self._speak(response, item, sentence)

    async def _speak(self, response: _Response, item: _Item, sentence: str) -> None:
        part = item.data["content"][0]
        spoken = (" " if part["transcript"] else "") + sentence
        pcm = await asyncio.to_thread(self.options.synthesizer.synthesize, sentence,
                                      response.config.get("voice"), response.config["speed"])
        where = self._where(response, item)
        item.marks.append((len(part["transcript"]), len(item.pcm)))
        part["transcript"] += spoken
        await self.emit({"type": "response.output_audio_transcript.delta", **where,
                         "delta": spoken})
        for chunk in iter_chunks(pcm, _AUDIO_CHUNK_BYTES):
            item.pcm += chunk
            response.audio_tokens += len(chunk) // BYTES_PER_MS // 50
            await self.emit({"type": "response.output_audio.delta", **where,
                             "delta": base64.b64encode(chunk).decode("ascii")})
            await asyncio.sleep(self.options.pace)

    async def _finish_message(self, response: _Response, status: str, flush: bool = True) -> None:
        item = response.message
        if item is None:
            return
        response.message = None
        part = item.data["content"][0]
        if part["type"] == "output_audio" and flush:
            sentences, response.pending_speech = split_sentences(response.pending_speech, True)
            for sentence in sentences:
                await self._speak(response, item, sentence)
        where = self._where(response, item)
        if part["type"] == "output_audio":
            await self.emit({"type": "response.output_audio.done", **where})
            await self.emit({"type": "response.output_audio_transcript.done", **where,
                             "transcript": part["transcript"]})
        else:
            await self.emit({"type": "response.output_text.done", **where, "text": part["text"]})
        await self.emit({"type": "response.content_part.done", **where, "part": _wire_part(part)})
        await self._item_done(response, item, status)

    async def _item_done(self, response: _Response, item: _Item, status: str) -> None:
        item.data["status"] = status
        index = response.output.index(item)
        await self.emit({"type": "response.output_item.done", "response_id": response.id,
                         "output_index": index, "item": item.public()})
        if response.in_conversation and (pos := self._index(item.id)) is not None:
            previous = self.items[pos - 1].id if pos > 0 else None
            await self.emit({"type": "conversation.item.done", "previous_item_id": previous,
                             "item": item.public()})

    async def _tool_call(self, response: _Response, call: ToolCall) -> None:
        self._spend(response, count_tokens(call.arguments))
        call_id = _new_id("call")
        item = await self._new_output(response, {"type": "function_call", "call_id": call_id,
                                                 "name": call.name, "arguments": ""})
        where = {"response_id": response.id, "item_id": item.id,
                 "output_index": response.output.index(item), "call_id": call_id}
        half = max(1, len(call.arguments) // 2)
        for piece in (call.arguments[:half], call.arguments[half:]):
            if piece:
                item.data["arguments"] += piece
                await self.emit({"type": "response.function_call_arguments.delta", **where,
                                 "delta": piece})
                await asyncio.sleep(self.options.pace)
        await self.emit({"type": "response.function_call_arguments.done", **where,
                         "name": call.name, "arguments": call.arguments})
        await self._item_done(response, item, "completed")
