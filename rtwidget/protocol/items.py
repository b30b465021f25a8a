"""The conversation's values: items, responses, log entries and the :class:`Update` that says
what one event changed, plus the GA names of beta events. Pure data, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .audio import BYTES_PER_MS, duration_ms
from .errors import ErrorInfo
from .heard import Mark, WordTiming, heard_from_timings, heard_text
from .image_parts import ImageInfo, info_of_part, summarise_part

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
MCP_ITEM_TYPES = ("mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response")


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def dict_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def list_of(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e15:
        return int(value)
    return None


def seconds_to_ms(value: Any) -> int | None:
    """A time in seconds (a JSON number) as whole milliseconds, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return round(value * 1000) if abs(value) < 1e12 else None


@dataclass(frozen=True)
class Segment:
    """One diarised piece of a user's audio: who spoke (the transcriber's label), from when to
    when (ms from the start of the item's audio), and what they said."""

    id: str
    speaker: str
    start_ms: int
    end_ms: int
    text: str
    content_index: int = 0

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Segment | None:
        """From a ``conversation.item.input_audio_transcription.segment`` event, or ``None``
        when it lacks what a segment needs (an id and its times)."""
        segment_id = str_or_none(event.get("id"))
        start, end = seconds_to_ms(event.get("start")), seconds_to_ms(event.get("end"))
        if not segment_id or start is None or end is None:
            return None
        return cls(id=segment_id, speaker=str_or_none(event.get("speaker")) or "",
                   start_ms=start, end_ms=end, text=str_or_none(event.get("text")) or "",
                   content_index=int_or_none(event.get("content_index")) or 0)

    def as_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "text": self.text}


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
    word_timings: list[WordTiming] = field(default_factory=list, repr=False)
    segments: list[Segment] = field(default_factory=list)
    images: list[ImageInfo] = field(default_factory=list)  # its input_image parts, described
    thumbnail: str | None = field(default=None, repr=False)  # a small data URL for the widget
    server_label: str | None = None  # MCP items: the server's label
    approval_request_id: str | None = None
    approve: bool | None = None  # an mcp_approval_response's answer
    tools: list[str] | None = None  # an mcp_list_tools item's tool names

    @property
    def speakers(self) -> list[str]:
        """The speakers of the item's segments, in the order they first spoke."""
        return list(dict.fromkeys(s.speaker for s in self.segments if s.speaker))

    @property
    def display_text(self) -> str:
        """The text, or the audio transcript when the item has no text; of a reply cut off by a
        barge-in, the words heard before it stopped (``transcript`` keeps all it said)."""
        if self.text:
            return self.text
        return self.transcript if self.heard is None else self.heard

    def cut_transcript(self) -> None:
        """Work out :attr:`heard` from the full transcript and where the audio was cut: from
        :attr:`word_timings` when the reply's words are timed (see
        :func:`~rtwidget.protocol.heard.word_timings`), else in proportion to the audio."""
        if self.truncated_ms is None:
            return
        end_bytes = self.truncated_ms * BYTES_PER_MS
        heard = None
        if self.word_timings and end_bytes < self.audio_out_bytes:
            heard = heard_from_timings(self.transcript, self.word_timings,
                                       self.truncated_ms / 1000)
        self.heard = heard if heard is not None else heard_text(
            self.transcript, self.transcript_marks, self.audio_out_bytes, end_bytes)

    def time_words(self, timings: Sequence[WordTiming]) -> None:
        """Set the reply's word timings (seconds from the start of its audio; see
        :func:`~rtwidget.protocol.heard.word_timings`) and, if it was already cut, work out
        again what was heard."""
        self.word_timings = [(str(w), float(a), float(b)) for w, a, b in timings]
        self.cut_transcript()

    def set(self, facts: dict[str, Any]) -> None:
        """Set attributes by name."""
        for attr, value in facts.items():
            setattr(self, attr, value)

    def absorb(self, data: dict[str, Any], *, final: bool, now: float) -> None:
        """Take the fields of a server item object (``final``: the item is complete, so its
        text replaces what the deltas built)."""
        kind = str_or_none(data.get("type"))
        if kind:
            self.type = kind
        for attr in ("role", "status", "call_id", "name"):
            value = str_or_none(data.get(attr))
            if value is not None:
                setattr(self, attr, value)
        arguments = data.get("arguments")
        if isinstance(arguments, str) and (arguments or final):
            self.arguments = arguments
        output = data.get("output")
        if isinstance(output, str):
            self.output = output
        if kind in MCP_ITEM_TYPES:
            self._absorb_mcp(data)
        texts: list[str] = []
        transcripts: list[str] = []
        audio_bytes = 0
        images = [i for i in map(info_of_part, list_of(data.get("content"))) if i is not None]
        if images:  # (a part without its data URL, as a log keeps it, leaves what was known)
            self.images = images
        for part in list_of(data.get("content")):
            part = dict_of(part)
            text = str_or_none(part.get("text"))
            if text:
                texts.append(text)
            transcript = str_or_none(part.get("transcript"))
            if transcript:
                transcripts.append(transcript)
            audio = part.get("audio")
            if isinstance(audio, str):
                audio_bytes += b64_bytes(audio)
        if texts and (final or not self.text):
            self.text = "".join(texts)
        if transcripts and (final or not self.transcript) and self.heard is None:
            self.transcript = "".join(transcripts)  # (after a cut, the server's is the heard part)
        if audio_bytes and self.role == "user":
            self.audio_in_bytes = max(self.audio_in_bytes, audio_bytes)
        if self.status in ("completed", "incomplete") and self.completed_at is None:
            self.completed_at = now

    def _absorb_mcp(self, data: dict[str, Any]) -> None:
        self.server_label = str_or_none(data.get("server_label")) or self.server_label
        self.approval_request_id = (str_or_none(data.get("approval_request_id"))
                                    or self.approval_request_id)
        if isinstance(data.get("approve"), bool):
            self.approve = data["approve"]
            reason = str_or_none(data.get("reason"))
            self.text = ("approved" if self.approve else "denied") + (f": {reason}" if reason
                                                                      else "")
        if isinstance(data.get("tools"), list):
            self.tools = [str(t.get("name")) for t in data["tools"] if isinstance(t, dict)]
        error = data.get("error")
        if error:
            self.error = mcp_error_text(error) or self.error

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
    out_of_band: bool = False  # conversation "none": its items are not the conversation's
    answers: str | None = None  # the newest item when it began (a reply with no output's row)

    def failure(self) -> ErrorInfo | None:
        """Why a ``failed`` response failed, as an :class:`ErrorInfo` (the server's error from
        ``status_details``, or the client's reason when the connection went), else ``None``."""
        if self.status != "failed":
            return None
        details = dict_of(self.status_details)
        error = dict_of(details.get("error"))
        message = str_or_none(error.get("message")) or str_or_none(details.get("reason"))
        return ErrorInfo(type=str_or_none(error.get("type")) or "response_failed",
                         code=str_or_none(error.get("code")),
                         message=f"the reply failed: {message or 'the server gave no reason'}",
                         param=None, event_id=None, caused_by="response.create")

    def finish(self, lookup: Callable[[str], Item | None]) -> None:
        """The response is done: its unfinished items end with it (``incomplete`` unless it
        completed). A failed one's error goes on its items' rows or, when it wrote none, on the
        row of the item it answered (an engine that failed before its first word)."""
        items = [lookup(i) for i in self.item_ids]
        for item in items:
            if item is not None and item.status in (None, "in_progress"):
                item.status = "incomplete" if self.status != "completed" else "completed"
                item.completed_at = item.completed_at or self.done_at
        error = dict_of(dict_of(self.status_details).get("error"))
        message = str_or_none(error.get("message")) or str_or_none(error.get("code"))
        if self.status != "failed" or not message:
            return
        if not self.item_ids and self.answers is not None:
            items = [lookup(self.answers)]
        for item in items:
            if item is not None and item.error is None:
                item.error = "reply failed: " + message


    def fail(self, reason: str, now: float, items: list[Item | None],
             detail: str | None = None) -> None:
        """The response will never finish (its connection is gone): failed, and its
        unfinished ``items`` incomplete, with ``detail`` as their error when given."""
        self.status = "failed"
        self.status_details = {"type": "failed", "reason": reason}
        self.done_at = now
        for item in items:
            if item is not None and item.status in (None, "in_progress"):
                item.status = "incomplete"
                if detail and item.error is None:
                    item.error = detail


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
    """What one applied event changed; ``type`` is the event's GA name (a beta name is
    translated), ``known`` is false for an event the conversation does not handle."""

    type: str
    item: Item | None = None
    response: Response | None = None
    audio: bytes | None = None
    error: ErrorInfo | None = None
    known: bool = True


def mcp_error_text(error: Any) -> str | None:
    """An ``mcp_call`` item's ``error`` (an object with a message, or a string) as text."""
    if isinstance(error, str):
        return error or None
    if isinstance(error, Mapping):
        message = str_or_none(error.get("message")) or ""
        kind = str_or_none(error.get("type"))
        code = error.get("code")
        head = ", ".join(str(x) for x in (kind, code) if x not in (None, ""))
        return f"{head}: {message}" if head and message else (message or head or None)
    return None


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
        isinstance(p, dict) and ("audio" in p or "image_url" in p)
        for p in list_of(item.get("content"))
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
        for part in list_of(item.get("content")) if isinstance(item, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("audio"), str):
                part = dict(part, audio=f"<audio: {b64_bytes(part['audio'])} bytes>")
            elif isinstance(part, dict) and "image_url" in part:
                part = summarise_part(part)
            parts.append(part)
        out["item"] = dict(item, content=parts) if isinstance(item, dict) else item
    return out




class ItemOrder:
    """Item ids in conversation order, placed after the item the server names as previous."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def place(self, item_id: str, previous: Any, known: Callable[[str], bool]) -> str | None:
        """Add ``item_id`` after ``previous`` (``None``: first; a missing key, given as
        ``"<absent>"``, or an unknown id: last); returns the previous id it was placed after."""
        ids = self.ids
        if previous == "<absent>" or not ids:
            ids.append(item_id)
        elif previous is None:
            ids.insert(0, item_id)
        elif isinstance(previous, str) and known(previous):
            ids.insert(len(ids) if ids[-1] == previous else ids.index(previous) + 1, item_id)
            return previous
        else:
            ids.append(item_id)
        return None

    def last(self, keep: Callable[[str], bool]) -> str | None:
        """The newest id ``keep`` accepts, or ``None``."""
        return next((i for i in reversed(self.ids) if keep(i)), None)


class EarlyFacts:
    """Facts about items that have not arrived yet (the VAD speaks of an item before it is
    added), kept for the item, at most 1,000 items' worth."""

    def __init__(self) -> None:
        self._facts: dict[str, dict[str, Any]] = {}

    def put(self, item_id: str, facts: dict[str, Any]) -> None:
        self._facts.setdefault(item_id, {}).update(facts)
        if len(self._facts) > 1000:
            self._facts.pop(next(iter(self._facts)))

    def take(self, item_id: str) -> dict[str, Any]:
        return self._facts.pop(item_id, {})
