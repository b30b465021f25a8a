"""The conversation state machine: consumes server events, keeps items and responses.

Pure and synchronous: ``Conversation.apply(event)`` takes one decoded server event (a dict) and
returns an :class:`Update` saying what changed. It accepts the GA event names and the older beta
names, keeps events it does not know in its log, and never raises on a malformed event: whatever
cannot be understood is recorded in :attr:`Conversation.problems`.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorInfo, error_info_from_event
from .audio import BYTES_PER_MS, AudioFormatError, decode_audio, duration_ms
from .heard import Mark, heard_text

BETA_ALIASES: dict[str, str] = {
    "conversation.item.created": "conversation.item.added",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}
"""Older (beta) server event names and the GA names they mean."""

_AUDIO_FIELDS = ("audio", "delta")
_MAX_TIMELINE = 3_000  # mic chunks remembered: a minute or more; speech ends are looked up
# within a second of being sent
_MAX_SENT_IDS = 2_000  # client event ids remembered to explain the errors that name them


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e15:
        return int(value)
    return None


@dataclass
class Item:
    """One conversation item: a message, a function call, or a function call's output."""

    id: str
    type: str = "message"
    role: str | None = None
    status: str | None = None
    response_id: str | None = None
    previous_item_id: str | None = None
    text: str = ""
    transcript: str = ""
    audio_in_bytes: int = 0
    audio_out_bytes: int = 0
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""
    output: str | None = None
    error: str | None = None
    truncated_ms: int | None = None
    deleted: bool = False
    created_at: float = 0.0
    completed_at: float | None = None
    first_text_at: float | None = None
    first_audio_at: float | None = None
    speech_started_ms: int | None = None
    speech_stopped_ms: int | None = None
    speech_stopped_at: float | None = None
    speech_end_at: float | None = None
    sent_at: float | None = None
    transcript_done_at: float | None = None
    played_at: float | None = None
    audio: bytearray | None = None
    transcript_marks: list[Mark] = field(default_factory=list, repr=False)
    heard: str | None = None

    @property
    def display_text(self) -> str:
        """The text, or the audio transcript when the item has no text; of a reply cut off by a
        barge-in, the words heard before it stopped (``transcript`` keeps all it said)."""
        if self.text:
            return self.text
        return self.transcript if self.heard is None else self.heard

    def cut_transcript(self) -> None:
        """Work out :attr:`heard` from the full transcript and where the audio was cut."""
        if self.truncated_ms is not None:
            self.heard = heard_text(self.transcript, self.transcript_marks,
                                    self.audio_out_bytes, self.truncated_ms * BYTES_PER_MS)

    @property
    def audio_in_seconds(self) -> float:
        """Seconds of user audio in this item: the audio sent, or for a turn the server cut
        from streamed audio, the span its VAD reported."""
        if self.audio_in_bytes:
            return duration_ms(self.audio_in_bytes) / 1000.0
        if self.speech_started_ms is not None and self.speech_stopped_ms is not None:
            return max(0, self.speech_stopped_ms - self.speech_started_ms) / 1000.0
        return 0.0

    @property
    def turn_ended_at(self) -> float:
        """For a user message, the end of the user's turn: when the last sample of their
        speech was sent (by the server VAD's end), else when the VAD said so, else when the
        message was sent (or appeared)."""
        for at in (self.speech_end_at, self.speech_stopped_at, self.sent_at):
            if at is not None:
                return at
        return self.created_at

    @property
    def audio_out_seconds(self) -> float:
        """Seconds of assistant audio received for this item."""
        return duration_ms(self.audio_out_bytes) / 1000.0


@dataclass
class Response:
    """One model response, with its status, usage and timing."""

    id: str
    status: str = "in_progress"
    status_details: dict[str, Any] | None = None
    item_ids: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    done_at: float | None = None
    first_text_at: float | None = None
    first_audio_at: float | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)  # not frozen: one is made per event, and frozen fields cost 4x
class LogEntry:
    """One event on the wire, in or out. Audio payloads are summarised, never kept as text."""

    direction: str
    type: str
    at: float
    size: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Update:
    """What one applied event changed."""

    type: str
    item: Item | None = None
    response: Response | None = None
    audio: bytes | None = None
    error: ErrorInfo | None = None
    known: bool = True


def b64_bytes(text: str) -> int:
    """How many bytes a base64 string decodes to (without decoding it)."""
    return len(text) * 3 // 4 - text[-2:].count("=")


def summarise(event: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` safe to keep in a log: base64 audio becomes a byte count."""
    if event.get("type") == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
        # the event sent 50 times a second: the same result, without the general search
        return dict(event, audio=f"<audio: {b64_bytes(event['audio'])} bytes>")
    needs = any(isinstance(event.get(k), str) and len(event[k]) > 64 for k in _AUDIO_FIELDS)
    item = event.get("item")
    nested = isinstance(item, dict) and any(
        isinstance(p, dict) and "audio" in p for p in _list(item.get("content"))
    )
    if not needs and not nested:
        return event
    out = dict(event)
    for key in _AUDIO_FIELDS:
        value = out.get(key)
        if isinstance(value, str) and len(value) > 64:
            out[key] = f"<audio: {b64_bytes(value)} bytes>"
    if nested:
        parts = []
        for part in _list(item.get("content")) if isinstance(item, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("audio"), str):
                part = dict(part, audio=f"<audio: {b64_bytes(part['audio'])} bytes>")
            parts.append(part)
        out["item"] = dict(item, content=parts) if isinstance(item, dict) else item
    return out


class Conversation:
    """Items in conversation order, responses, errors and the event log of one session.

    ``keep_audio`` keeps the assistant's audio per item (needed to replay it); ``max_log``
    bounds the event log.
    """

    def __init__(
        self,
        *,
        keep_audio: bool = True,
        max_log: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keep_audio = keep_audio
        self.clock = clock
        self.session: dict[str, Any] = {}
        self.session_id: str | None = None
        self.responses: dict[str, Response] = {}
        self.errors: list[ErrorInfo] = []
        self.problems: list[str] = []
        self.rate_limits: list[dict[str, Any]] = []
        self.log: deque[LogEntry] = deque(maxlen=max_log)
        self.unknown_events = 0
        self.version = 0
        self._items: dict[str, Item] = {}
        self._order: list[str] = []
        self._by_call: dict[str, str] = {}
        self._outputs: dict[str, str] = {}
        self._sent_audio: dict[str, int] = {}
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._sent_at: dict[str, float] = {}
        self._speech: dict[str, dict[str, Any]] = {}
        self._mic_bytes = 0
        self._buffer_from = 0  # mic bytes sent before the input buffer last started empty
        self._manual_commit: tuple[int, float] | None = None  # (bytes, when) of a commit sent
        self._mic_timeline: list[tuple[int, float]] = []
        self._timeline_floor = 0
        self.tool_outcomes: dict[str, dict[str, Any]] = {}
        self.now = clock()
        self._handlers: dict[str, Callable[[dict[str, Any], str], Update]] = {
            "session.created": self._on_session,
            "session.updated": self._on_session,
            "conversation.created": self._on_ignored,
            "conversation.item.added": self._on_item,
            "conversation.item.done": self._on_item,
            "conversation.item.retrieved": self._on_item,
            "conversation.item.deleted": self._on_deleted,
            "conversation.item.truncated": self._on_truncated,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "input_audio_buffer.committed": self._on_committed,
            "input_audio_buffer.cleared": self._on_ignored,
            "input_audio_buffer.timeout_triggered": self._on_ignored,
            "conversation.item.input_audio_transcription.delta": self._on_input_transcript,
            "conversation.item.input_audio_transcription.completed": self._on_input_transcript,
            "conversation.item.input_audio_transcription.failed": self._on_input_failed,
            "conversation.item.input_audio_transcription.segment": self._on_ignored,
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_item.added": self._on_output_item,
            "response.output_item.done": self._on_output_item,
            "response.content_part.added": self._on_ignored,
            "response.content_part.done": self._on_content_part_done,
            "response.output_text.delta": self._on_text_delta,
            "response.output_text.done": self._on_text_done,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio.done": self._on_audio_done,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_audio_transcript.done": self._on_transcript_done,
            "response.function_call_arguments.delta": self._on_args_delta,
            "response.function_call_arguments.done": self._on_args_done,
            "rate_limits.updated": self._on_rate_limits,
            "error": self._on_error,
        }

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __iter__(self) -> Iterator[Item]:
        """Items in conversation order, deleted ones left out."""
        order = list(self._order)  # a copy: the session's thread may be appending
        return (self._items[i] for i in order if not self._items[i].deleted)

    def all_items(self) -> list[Item]:
        """Every item in conversation order, deleted ones included."""
        return [self._items[i] for i in list(self._order)]

    def get(self, item_id: str) -> Item | None:
        """The item with this id, or ``None``."""
        return self._items.get(item_id)

    def by_call_id(self, call_id: str) -> Item | None:
        """The ``function_call`` item with this ``call_id``, or ``None``."""
        item_id = self._by_call.get(call_id)
        return self._items.get(item_id) if item_id else None

    def output_for(self, call_id: str) -> Item | None:
        """The ``function_call_output`` item answering ``call_id``, or ``None``."""
        item_id = self._outputs.get(call_id)
        item = self._items.get(item_id) if item_id else None
        return item if item is not None and not item.deleted else None

    def last_response(self) -> Response | None:
        """The newest response, or ``None``."""
        return next(reversed(self.responses.values()), None) if self.responses else None

    # --- writing ---------------------------------------------------------------------------

    def record_sent(self, event: dict[str, Any], size: int) -> None:
        """Log a client event and remember its ``event_id`` to explain later errors."""
        self.now = self.clock()
        kind = str(event.get("type", "?"))
        if kind == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
            self._mic_bytes += b64_bytes(event["audio"])
            self._mic_timeline.append((self._mic_bytes, self.now))
            if len(self._mic_timeline) > _MAX_TIMELINE:
                self._timeline_floor = self._mic_timeline[_MAX_TIMELINE // 2 - 1][0]
                del self._mic_timeline[:_MAX_TIMELINE // 2]
        elif kind == "input_audio_buffer.commit":  # a turn ended by hand (push-to-talk)
            self._manual_commit = (self._mic_bytes - self._buffer_from, self.now)
            self._buffer_from = self._mic_bytes
        elif kind == "input_audio_buffer.clear":
            self._buffer_from = self._mic_bytes
        event_id = event.get("event_id")
        if isinstance(event_id, str):
            self._sent[event_id] = kind
            if len(self._sent) > _MAX_SENT_IDS:
                self._sent.popitem(last=False)
        if kind == "conversation.item.create":
            item = _dict(event.get("item"))
            audio = sum(b64_bytes(a) for a in (_dict(p).get("audio")
                        for p in _list(item.get("content"))) if isinstance(a, str))
            item_id = _str(item.get("id"))
            if audio and item_id:
                self._sent_audio[item_id] = audio
                if len(self._sent_audio) > 1000:
                    self._sent_audio.pop(next(iter(self._sent_audio)))
            if item_id:
                self._sent_at[item_id] = self.now
                if len(self._sent_at) > 1000:
                    self._sent_at.pop(next(iter(self._sent_at)))
        payload = summarise(event)
        self.log.append(LogEntry("out", kind, self.now, size, payload))

    def caused_by(self, event_id: str | None) -> str | None:
        """The type of the client event sent with ``event_id``, if still remembered."""
        return self._sent.get(event_id) if event_id else None

    def apply(self, event: Any, size: int = 0) -> Update:
        """Consume one server event. Never raises."""
        if not isinstance(event, dict):
            self._problem(f"ignored a server message that is not a JSON object: {event!r:.80}")
            return Update(type="?", known=False)
        raw_type = event.get("type")
        kind = raw_type if isinstance(raw_type, str) else "?"
        self.now = self.clock()
        self.log.append(LogEntry("in", kind, self.now, size, summarise(event)))
        handler = self._handlers.get(BETA_ALIASES.get(kind, kind))
        if handler is None:
            self.unknown_events += 1
            return Update(type=kind, known=False)
        update = handler(event, kind)
        self.version += 1
        return update

    def note(self, event: dict[str, Any]) -> Update:
        """Consume one event the client itself produced (``rtwidget.*``): a tool's result, the
        browser starting to play an item, a lost connection. Logged as ``local``; like
        :meth:`apply`, it never raises."""
        self.now = self.clock()
        kind = str(event.get("type", "?"))
        self.log.append(LogEntry("local", kind, self.now, 0, event))
        if kind == "rtwidget.tool_result":
            call_id = _str(event.get("call_id"))
            if call_id:
                self.tool_outcomes[call_id] = event
                call = self.by_call_id(call_id)
                if call is not None:
                    call.error = _str(event.get("error"))
        elif kind == "rtwidget.playback_started":
            item = self._items.get(_str(event.get("item_id")) or "")
            at = event.get("at")
            if item is not None and isinstance(at, (int, float)) and item.played_at is None:
                item.played_at = float(at)
        elif kind == "rtwidget.connection_lost":
            self.abandon_in_progress(str(event.get("reason", "connection_lost")))
        else:
            return Update(type=kind, known=False)
        self.version += 1
        return Update(type=kind)

    def abandon_in_progress(self, reason: str) -> list[Response]:
        """Mark responses still in progress as failed (the connection carrying them is gone)."""
        now = self.now
        abandoned = []
        for response in self.responses.values():
            if response.status != "in_progress":
                continue
            response.status = "failed"
            response.status_details = {"type": "failed", "reason": reason}
            response.done_at = now
            for item_id in response.item_ids:
                item = self._items.get(item_id)
                if item is not None and item.status in (None, "in_progress"):
                    item.status = "incomplete"
            abandoned.append(response)
        if abandoned:
            self.version += 1
        return abandoned

    # --- internals -------------------------------------------------------------------------

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        if len(self.problems) > 1000:
            del self.problems[:500]

    def _ensure(self, item_id: str, previous: Any = "<absent>") -> Item:
        item = self._items.get(item_id)
        if item is not None:
            return item
        item = Item(id=item_id, created_at=self.now)
        self._items[item_id] = item
        if previous == "<absent>" or not self._order:
            self._order.append(item_id)
        elif previous is None:
            self._order.insert(0, item_id)
        elif isinstance(previous, str) and previous in self._items:
            item.previous_item_id = previous
            if self._order[-1] == previous:
                self._order.append(item_id)
            else:
                self._order.insert(self._order.index(previous) + 1, item_id)
        else:
            self._order.append(item_id)
        item.audio_in_bytes = self._sent_audio.pop(item_id, 0)
        item.sent_at = self._sent_at.pop(item_id, None)
        for attr, value in self._speech.pop(item_id, {}).items():
            setattr(item, attr, value)
        return item

    def _item_for(self, event: dict[str, Any]) -> Item | None:
        item_id = _str(event.get("item_id"))
        if item_id:
            return self._ensure(item_id)
        call_id = _str(event.get("call_id"))
        if call_id:
            return self.by_call_id(call_id)
        return None

    def _absorb(self, item: Item, data: dict[str, Any], *, final: bool) -> None:
        kind = _str(data.get("type"))
        if kind:
            item.type = kind
        for attr in ("role", "status", "call_id", "name"):
            value = _str(data.get(attr))
            if value is not None:
                setattr(item, attr, value)
        if item.call_id and item.type == "function_call":
            self._by_call[item.call_id] = item.id
        if item.call_id and item.type == "function_call_output":
            self._outputs[item.call_id] = item.id
        arguments = data.get("arguments")
        if isinstance(arguments, str) and (arguments or final):
            item.arguments = arguments
        output = data.get("output")
        if isinstance(output, str):
            item.output = output
        texts: list[str] = []
        transcripts: list[str] = []
        audio_bytes = 0
        for part in _list(data.get("content")):
            part = _dict(part)
            text = _str(part.get("text"))
            if text:
                texts.append(text)
            transcript = _str(part.get("transcript"))
            if transcript:
                transcripts.append(transcript)
            audio = part.get("audio")
            if isinstance(audio, str):
                audio_bytes += b64_bytes(audio)
        if texts and (final or not item.text):
            item.text = "".join(texts)
        if transcripts and (final or not item.transcript) and item.heard is None:
            item.transcript = "".join(transcripts)  # (after a cut, the server's is the heard part)
        if audio_bytes and item.role == "user":
            item.audio_in_bytes = max(item.audio_in_bytes, audio_bytes)
        if item.status in ("completed", "incomplete") and item.completed_at is None:
            item.completed_at = self.now

    def _on_committed(self, event: dict[str, Any], kind: str) -> Update:
        """A committed buffer: one the client committed by hand holds the audio it sent since
        the buffer was last empty, and its turn ended when the commit was sent."""
        commit, self._manual_commit = self._manual_commit, None
        item_id = _str(event.get("item_id"))
        if commit is None or not item_id:
            self._buffer_from = self._mic_bytes
            return Update(type=kind)
        audio, sent_at = commit
        item = self._items.get(item_id)
        if item is None:
            self._sent_audio[item_id], self._sent_at[item_id] = audio, sent_at
        else:
            item.audio_in_bytes = item.audio_in_bytes or audio
            item.sent_at = item.sent_at or sent_at
        return Update(type=kind, item=item)

    def _on_ignored(self, event: dict[str, Any], kind: str) -> Update:
        return Update(type=kind)

    def _on_session(self, event: dict[str, Any], kind: str) -> Update:
        if kind == "session.created":  # a new connection: its audio buffer starts empty
            self._mic_bytes = self._timeline_floor = 0
            self._mic_timeline.clear()
        session = _dict(event.get("session"))
        if session:
            self.session = session
            self.session_id = _str(session.get("id")) or self.session_id
        return Update(type=kind)

    def _on_item(self, event: dict[str, Any], kind: str) -> Update:
        data = _dict(event.get("item"))
        item_id = _str(data.get("id"))
        if not item_id:
            self._problem(f"{kind} without item.id")
            return Update(type=kind)
        previous = event.get("previous_item_id", "<absent>")
        item = self._ensure(item_id, previous)
        self._absorb(item, data, final=kind != "conversation.item.added")
        if item.type == "message" and item.role == "user" and kind == "conversation.item.added":
            item.status = item.status or "completed"
        return Update(type=kind, item=item)

    def _on_deleted(self, event: dict[str, Any], kind: str) -> Update:
        item = self._items.get(_str(event.get("item_id")) or "")
        if item is None:
            return Update(type=kind)
        item.deleted = True
        item.status = "deleted"
        return Update(type=kind, item=item)

    def _on_truncated(self, event: dict[str, Any], kind: str) -> Update:
        item = self._items.get(_str(event.get("item_id")) or "")
        if item is None:
            return Update(type=kind)
        item.truncated_ms = _int(event.get("audio_end_ms"))
        item.cut_transcript()
        return Update(type=kind, item=item)

    def _on_speech_started(self, event: dict[str, Any], kind: str) -> Update:
        self._speech_fact(event, speech_started_ms=_int(event.get("audio_start_ms")))
        return Update(type=kind)

    def _on_speech_stopped(self, event: dict[str, Any], kind: str) -> Update:
        end = _int(event.get("audio_end_ms"))
        self._speech_fact(event, speech_stopped_ms=end, speech_stopped_at=self.now,
                          speech_end_at=self._sent_time(end))
        return Update(type=kind)

    def _speech_fact(self, event: dict[str, Any], **facts: Any) -> None:
        """VAD facts about an item, kept until the item itself arrives if it has not yet."""
        item_id = _str(event.get("item_id"))
        if not item_id:
            return
        item = self._items.get(item_id)
        if item is not None:
            for attr, value in facts.items():
                setattr(item, attr, value)
            return
        self._speech.setdefault(item_id, {}).update(facts)
        if len(self._speech) > 1000:
            self._speech.pop(next(iter(self._speech)))

    def _sent_time(self, audio_ms: int | None) -> float | None:
        """When the client sent the mic audio reaching ``audio_ms`` into this connection's
        buffer: the end of the user's speech by the client's clock, before any VAD delay."""
        if audio_ms is None or not self._mic_timeline:
            return None
        target = audio_ms * 48  # bytes of PCM16 24 kHz
        index = bisect.bisect_left(self._mic_timeline, (target, -math.inf))
        if index >= len(self._mic_timeline) or target <= self._timeline_floor:
            return None
        return self._mic_timeline[index][1]

    def _on_input_transcript(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        if kind.endswith(".delta"):
            item.transcript += _str(event.get("delta")) or ""
        else:
            item.transcript = _str(event.get("transcript")) or item.transcript
            item.transcript_done_at = self.now
        return Update(type=kind, item=item)

    def _on_input_failed(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        error = _dict(event.get("error"))
        item.error = "transcription failed: " + str(error.get("message") or "no reason given")
        return Update(type=kind, item=item)

    def _response(self, event: dict[str, Any]) -> Response | None:
        response_id = _str(event.get("response_id")) or _str(_dict(event.get("response")).get("id"))
        if not response_id:
            return None
        response = self.responses.get(response_id)
        if response is None:
            response = Response(id=response_id, created_at=self.now)
            self.responses[response_id] = response
        return response

    def _on_response_created(self, event: dict[str, Any], kind: str) -> Update:
        response = self._response(event)
        if response is not None:
            data = _dict(event.get("response"))
            response.status = _str(data.get("status")) or "in_progress"
            response.metadata = _dict(data.get("metadata")) or None
        return Update(type=kind, response=response)

    def _on_response_done(self, event: dict[str, Any], kind: str) -> Update:
        response = self._response(event)
        if response is None:
            self._problem("response.done without response.id")
            return Update(type=kind)
        data = _dict(event.get("response"))
        response.status = _str(data.get("status")) or "completed"
        response.status_details = _dict(data.get("status_details")) or None
        response.usage = _dict(data.get("usage"))
        response.done_at = self.now
        for out in _list(data.get("output")):
            out = _dict(out)
            item_id = _str(out.get("id"))
            if item_id:
                item = self._ensure(item_id)
                item.response_id = item.response_id or response.id
                self._absorb(item, out, final=False)
                if item_id not in response.item_ids:
                    response.item_ids.append(item_id)
        for item_id in response.item_ids:
            owned = self._items.get(item_id)
            if owned is not None and owned.status in (None, "in_progress"):
                owned.status = "incomplete" if response.status != "completed" else "completed"
                owned.completed_at = owned.completed_at or response.done_at
        return Update(type=kind, response=response)

    def _on_output_item(self, event: dict[str, Any], kind: str) -> Update:
        data = _dict(event.get("item"))
        item_id = _str(data.get("id"))
        if not item_id:
            self._problem(f"{kind} without item.id")
            return Update(type=kind)
        item = self._ensure(item_id, event.get("previous_item_id", "<absent>"))
        response = self._response(event)
        if response is not None:
            item.response_id = response.id
            if item_id not in response.item_ids:
                response.item_ids.append(item_id)
        self._absorb(item, data, final=kind.endswith(".done"))
        return Update(type=kind, item=item, response=response)

    def _on_content_part_done(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        part = _dict(event.get("part"))
        if _str(part.get("text")) and not item.text:
            item.text = part["text"]
        if _str(part.get("transcript")) and not item.transcript:
            item.transcript = part["transcript"]
        return Update(type=kind, item=item)

    def _mark_first(self, item: Item, event: dict[str, Any], attr: str) -> Response | None:
        now = self.now
        if getattr(item, attr) is None:
            setattr(item, attr, now)
        response = self._response(event)
        if response is not None:
            if getattr(response, attr) is None:
                setattr(response, attr, now)
            item.response_id = item.response_id or response.id
        return response

    def _on_text_delta(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        item.text += _str(event.get("delta")) or ""
        item.role = item.role or "assistant"
        return Update(type=kind, item=item, response=self._mark_first(item, event, "first_text_at"))

    def _on_text_done(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        item.text = _str(event.get("text")) or item.text
        return Update(type=kind, item=item)

    def _on_audio_delta(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        try:
            pcm = decode_audio(event.get("delta"))
        except AudioFormatError as exc:
            self._problem(f"{kind} for {item.id}: {exc}")
            return Update(type=kind, item=item)
        item.audio_out_bytes += len(pcm)
        item.role = item.role or "assistant"
        if self.keep_audio:
            if item.audio is None:
                item.audio = bytearray()
            item.audio += pcm
        response = self._mark_first(item, event, "first_audio_at")
        return Update(type=kind, item=item, response=response, audio=pcm)

    def _on_audio_done(self, event: dict[str, Any], kind: str) -> Update:
        return Update(type=kind, item=self._item_for(event))

    def _on_transcript_delta(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        delta = _str(event.get("delta")) or ""
        if delta:  # where this piece begins in the audio, for what a barge-in leaves heard
            item.transcript_marks.append((len(item.transcript), item.audio_out_bytes))
            item.transcript += delta
        return Update(type=kind, item=item, response=self._mark_first(item, event, "first_text_at"))

    def _on_transcript_done(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        item.transcript = _str(event.get("transcript")) or item.transcript
        item.cut_transcript()  # a cut that came first is worked out on the whole transcript
        return Update(type=kind, item=item)

    def _on_args_delta(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        item.type = "function_call"
        item.arguments += _str(event.get("delta")) or ""
        call_id = _str(event.get("call_id"))
        if call_id:
            item.call_id = call_id
            self._by_call[call_id] = item.id
        return Update(type=kind, item=item, response=self._mark_first(item, event, "first_text_at"))

    def _on_args_done(self, event: dict[str, Any], kind: str) -> Update:
        item = self._item_for(event)
        if item is None:
            return Update(type=kind)
        item.type = "function_call"
        arguments = _str(event.get("arguments"))
        if arguments is not None:
            item.arguments = arguments
        item.name = _str(event.get("name")) or item.name
        call_id = _str(event.get("call_id"))
        if call_id:
            item.call_id = call_id
            self._by_call[call_id] = item.id
        return Update(type=kind, item=item, response=self._response(event))

    def _on_rate_limits(self, event: dict[str, Any], kind: str) -> Update:
        self.rate_limits = [_dict(x) for x in _list(event.get("rate_limits"))]
        return Update(type=kind)

    def _on_error(self, event: dict[str, Any], kind: str) -> Update:
        event_id = _str(_dict(event.get("error")).get("event_id"))
        info = error_info_from_event(event, self.caused_by(event_id), self.now)
        self.errors.append(info)
        if len(self.errors) > 1000:
            del self.errors[:500]
        return Update(type=kind, error=info)
