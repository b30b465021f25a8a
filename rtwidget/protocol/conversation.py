"""The conversation state machine: consumes server events, keeps items and responses.

Pure and synchronous: ``Conversation.apply(event)`` takes one decoded server event (a dict) and
returns an :class:`Update` saying what changed. It accepts the GA event names and the older beta
names, keeps events it does not know in its log, and never raises on a malformed event: whatever
cannot be understood is recorded in :attr:`Conversation.problems`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .audio import AudioFormatError, decode_audio
from .errors import ErrorInfo, error_info_from_event
from .items import (
    BETA_ALIASES,
    EarlyFacts,
    Item,
    ItemOrder,
    LogEntry,
    Response,
    Update,
    dict_of,
    int_or_none,
    list_of,
    str_or_none,
    summarise,
)
from .mcp_events import HostedMcpEvents, mask_tool_secrets
from .sent import SentEvents
from .user_speech import UserSpeech

# events understood to change nothing the conversation keeps
_IGNORED = ("conversation.created", "input_audio_buffer.cleared",
            "input_audio_buffer.timeout_triggered", "response.content_part.added")


TOOL_NOTES: dict[str, str | None] = {
    "rtwidget.tool_started": "running", "rtwidget.tool_progress": "running",
    "rtwidget.tool_result": None, "rtwidget.tool_delivered": None}
"""The client's notes of a tool call's stages, and the status each sets (a result's own)."""


class EventLog(deque[LogEntry]):
    """The event log: bounded, appended to on the session's thread. Iterating it goes over a
    copy taken at once, so reading it from another thread while the talk goes on never fails
    with "deque mutated during iteration"."""

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(list(deque.__iter__(self)))


class Conversation(UserSpeech, HostedMcpEvents):
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
        self.log = EventLog(maxlen=max_log)
        self.unknown_events = 0
        self.version = 0
        self._items: dict[str, Item] = {}
        self._order = ItemOrder()
        self._by_call: dict[str, str] = {}
        self._outputs: dict[str, str] = {}
        self.sent = SentEvents()
        self._early = EarlyFacts()  # VAD facts about items not here yet
        self.tool_outcomes: dict[str, dict[str, Any]] = {}
        self.now = clock()
        item, known = self._for_item, self._for_known_item
        stt = "conversation.item.input_audio_transcription"
        self._handlers: dict[str, Callable[[dict[str, Any], str], Update]] = {
            "session.created": self._on_session, "session.updated": self._on_session,
            "conversation.item.added": self._on_item, "conversation.item.done": self._on_item,
            "conversation.item.retrieved": self._on_item,
            "conversation.item.deleted": known(self._on_deleted),
            "conversation.item.truncated": known(self._on_truncated),
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "input_audio_buffer.committed": self._on_committed,
            f"{stt}.delta": item(self._on_input_transcript),
            f"{stt}.completed": item(self._on_input_transcript),
            f"{stt}.failed": item(self._on_input_failed),
            f"{stt}.segment": item(self._on_segment),
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_item.added": self._on_output_item,
            "response.output_item.done": self._on_output_item,
            "response.content_part.done": item(self._on_content_part_done),
            "response.output_text.delta": item(self._on_text_delta),
            "response.output_text.done": item(self._on_text_done),
            "response.output_audio.delta": item(self._on_audio_delta),
            "response.output_audio.done": self._on_audio_done,
            "response.output_audio_transcript.delta": item(self._on_transcript_delta),
            "response.output_audio_transcript.done": item(self._on_transcript_done),
            "response.function_call_arguments.delta": item(self._on_args_delta),
            "response.function_call_arguments.done": item(self._on_args_done),
            "rate_limits.updated": self._on_rate_limits, "error": self._on_error,
            **dict.fromkeys(_IGNORED, lambda event, kind: Update(type=kind)),
            **{kind: item(handler) for kind, handler in self._mcp_handlers().items()},
        }

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __iter__(self) -> Iterator[Item]:
        """Items in conversation order, deleted ones left out."""
        order = list(self._order.ids)  # a copy: the session's thread may be appending
        return (self._items[i] for i in order if not self._items[i].deleted)

    @property
    def items_seen(self) -> int:
        """How many items the conversation has held, deleted ones included: it changes only
        when an item comes (a layout keyed on it is redone once per item, not per delta)."""
        return len(self._order.ids)

    def items_after(self, seen: int, last_id: str | None) -> list[Item] | None:
        """The items placed since the conversation held ``seen`` items (deleted ones
        included), in order, when all of them came after ``last_id`` (the newest of those
        ``seen``, ``None`` for none); ``None`` when one was placed before it."""
        ids = self._order.ids
        if len(ids) < seen or (ids[seen - 1] if seen else None) != last_id:
            return None
        return [self._items[i] for i in ids[seen:]]

    def all_items(self) -> list[Item]:
        """Every item in conversation order, deleted ones included."""
        return [self._items[i] for i in list(self._order.ids)]

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
        self.sent.record(event, kind, self.now)
        payload = summarise(mask_tool_secrets(event))
        self.log.append(LogEntry("out", kind, self.now, size, payload))

    def caused_by(self, event_id: str | None) -> str | None:
        """The type of the client event sent with ``event_id``, if still remembered."""
        return self.sent.kind_of(event_id)

    def apply(self, event: Any, size: int = 0) -> Update:
        """Consume one server event. Never raises."""
        if not isinstance(event, dict):
            self._problem(f"ignored a server message that is not a JSON object: {event!r:.80}")
            return Update(type="?", known=False)
        raw_type = event.get("type")
        kind = raw_type if isinstance(raw_type, str) else "?"
        self.now = self.clock()
        self.log.append(LogEntry("in", kind, self.now, size, summarise(event)))
        name = BETA_ALIASES.get(kind, kind)
        handler = self._handlers.get(name)
        if handler is None:
            self.unknown_events += 1
            return Update(type=kind, known=False)
        update = handler(event, kind)
        self.version += 1
        return update if name == kind else dataclasses.replace(update, type=name)

    def note(self, event: dict[str, Any]) -> Update:
        """Consume one event the client itself produced (``rtwidget.*``): a tool's result, the
        browser starting to play an item, a lost connection. Logged as ``local``; like
        :meth:`apply`, it never raises."""
        self.now = self.clock()
        kind = str(event.get("type", "?"))
        self.log.append(LogEntry("local", kind, self.now, 0, event))
        item: Item | None = None
        if kind in TOOL_NOTES:
            call_id = str_or_none(event.get("call_id"))
            if call_id:
                # one record per call, each stage adding to it: started, progress, result
                before = self.tool_outcomes.get(call_id, {})
                state = {**before, **event}
                if kind == "rtwidget.tool_delivered":  # a background result reached the model
                    state["status"], state["delivered"] = before.get("status", "done"), True
                else:
                    state["status"] = (TOOL_NOTES[kind] or str_or_none(event.get("status"))
                                       or "done")
                self.tool_outcomes[call_id] = state
                item = self.by_call_id(call_id)
                if item is not None and kind == "rtwidget.tool_result":
                    item.error = str_or_none(event.get("error"))
        elif kind == "rtwidget.playback_started":
            item = self._items.get(str_or_none(event.get("item_id")) or "")
            at = event.get("at")
            if item is not None and isinstance(at, (int, float)) and item.played_at is None:
                item.played_at = float(at)
        elif kind == "rtwidget.image_thumbnail":  # sent before its item: kept for it
            item_id, thumbnail = str_or_none(event.get("item_id")), event.get("thumbnail")
            if item_id and isinstance(thumbnail, str):
                item = self._items.get(item_id)
                if item is None:
                    self._early.put(item_id, {"thumbnail": thumbnail})
                else:
                    item.thumbnail = thumbnail
        elif kind == "rtwidget.connection_lost":
            self.abandon_in_progress(str(event.get("reason", "connection_lost")),
                                     str_or_none(event.get("detail")))
        else:
            return Update(type=kind, known=False)
        self.version += 1
        return Update(type=kind, item=item)

    def abandon_in_progress(self, reason: str, detail: str | None = None) -> list[Response]:
        """Fail the responses in progress: their connection is gone (``detail`` says why)."""
        abandoned = [r for r in self.responses.values() if r.status == "in_progress"]
        for response in abandoned:
            response.fail(reason, self.now, [self._items.get(i) for i in response.item_ids], detail)
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
        item.previous_item_id = self._order.place(item_id, previous, self._items.__contains__)
        self._items[item_id] = item
        item.audio_in_bytes, item.sent_at = self.sent.item_facts(item_id)
        item.images = self.sent.images_of(item_id)
        item.set(self._early.take(item_id))
        return item

    def _for_item(self, handler: Callable[[dict[str, Any], str, Item], Update]
                  ) -> Callable[[dict[str, Any], str], Update]:
        """``handler`` called with the item the event is about; without one, nothing changes."""

        def handle(event: dict[str, Any], kind: str) -> Update:
            item = self._item_for(event)
            return Update(type=kind) if item is None else handler(event, kind, item)

        return handle

    def _for_known_item(self, handler: Callable[[dict[str, Any], str, Item], Update]
                        ) -> Callable[[dict[str, Any], str], Update]:
        """``handler`` called with the item the event names, if it is known."""

        def handle(event: dict[str, Any], kind: str) -> Update:
            item = self._items.get(str_or_none(event.get("item_id")) or "")
            return Update(type=kind) if item is None else handler(event, kind, item)

        return handle

    def _item_for(self, event: dict[str, Any]) -> Item | None:
        item_id = str_or_none(event.get("item_id"))
        if item_id:
            return self._ensure(item_id)
        call_id = str_or_none(event.get("call_id"))
        if call_id:
            return self.by_call_id(call_id)
        return None

    def _absorb(self, item: Item, data: dict[str, Any], *, final: bool) -> None:
        item.absorb(data, final=final, now=self.now)
        if item.call_id and item.type == "function_call":
            self._by_call[item.call_id] = item.id
        if item.call_id and item.type == "function_call_output":
            self._outputs[item.call_id] = item.id

    def _on_session(self, event: dict[str, Any], kind: str) -> Update:
        if kind == "session.created":  # a new connection: its audio buffer starts empty
            self.sent.new_connection()
        session = dict_of(event.get("session"))
        if session:
            self.session = session
            self.session_id = str_or_none(session.get("id")) or self.session_id
        return Update(type=kind)

    def _on_item(self, event: dict[str, Any], kind: str) -> Update:
        data = dict_of(event.get("item"))
        item_id = str_or_none(data.get("id"))
        if not item_id:
            self._problem(f"{kind} without item.id")
            return Update(type=kind)
        previous = event.get("previous_item_id", "<absent>")
        item = self._ensure(item_id, previous)
        self._absorb(item, data, final=kind != "conversation.item.added")
        if item.type == "message" and item.role == "user" and kind == "conversation.item.added":
            item.status = item.status or "completed"
        return Update(type=kind, item=item)

    def _on_deleted(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.deleted = True
        item.status = "deleted"
        return Update(type=kind, item=item)

    def _on_truncated(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.truncated_ms = int_or_none(event.get("audio_end_ms"))
        item.cut_transcript()
        return Update(type=kind, item=item)

    def _response(self, event: dict[str, Any]) -> Response | None:
        response_id = (str_or_none(event.get("response_id"))
                       or str_or_none(dict_of(event.get("response")).get("id")))
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
            data = dict_of(event.get("response"))
            response.status = str_or_none(data.get("status")) or "in_progress"
            response.metadata = dict_of(data.get("metadata")) or None
            if data.get("conversation_id", "auto") is not None:  # out-of-band ones say None
                response.answers = self._order.last(lambda i: not self._items[i].deleted)
            else:
                response.out_of_band = True
        return Update(type=kind, response=response)

    def _on_response_done(self, event: dict[str, Any], kind: str) -> Update:
        response = self._response(event)
        if response is None:
            self._problem("response.done without response.id")
            return Update(type=kind)
        data = dict_of(event.get("response"))
        response.status = str_or_none(data.get("status")) or "completed"
        response.status_details = dict_of(data.get("status_details")) or None
        response.usage = dict_of(data.get("usage"))
        response.done_at = self.now
        for out in list_of(data.get("output")):
            out = dict_of(out)
            item_id = str_or_none(out.get("id"))
            if item_id:
                item = self._ensure(item_id)
                item.response_id = item.response_id or response.id
                self._absorb(item, out, final=False)
                if item_id not in response.item_ids:
                    response.item_ids.append(item_id)
        response.finish(self._items.get)  # its items end with it; a failure's error on them
        return Update(type=kind, response=response)

    def _on_output_item(self, event: dict[str, Any], kind: str) -> Update:
        data = dict_of(event.get("item"))
        item_id = str_or_none(data.get("id"))
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

    def _on_content_part_done(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        part = dict_of(event.get("part"))
        if str_or_none(part.get("text")) and not item.text:
            item.text = part["text"]
        if str_or_none(part.get("transcript")) and not item.transcript:
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

    def _on_text_delta(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.text += str_or_none(event.get("delta")) or ""
        item.role = item.role or "assistant"
        return Update(type=kind, item=item, response=self._mark_first(item, event, "first_text_at"))

    def _on_text_done(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.text = str_or_none(event.get("text")) or item.text
        return Update(type=kind, item=item)

    def _on_audio_delta(self, event: dict[str, Any], kind: str, item: Item) -> Update:
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

    def _on_transcript_delta(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        delta = str_or_none(event.get("delta")) or ""
        if delta:  # where this piece begins in the audio, for what a barge-in leaves heard
            item.transcript_marks.append((len(item.transcript), item.audio_out_bytes))
            item.transcript += delta
        return Update(type=kind, item=item, response=self._mark_first(item, event, "first_text_at"))

    def _on_transcript_done(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.transcript = str_or_none(event.get("transcript")) or item.transcript
        item.cut_transcript()  # a cut that came first is worked out on the whole transcript
        return Update(type=kind, item=item)

    def _on_args_delta(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.type = "function_call"
        item.arguments += str_or_none(event.get("delta")) or ""
        call_id = str_or_none(event.get("call_id"))
        if call_id:
            item.call_id = call_id
            self._by_call[call_id] = item.id
        return Update(type=kind, item=item, response=self._mark_first(item, event, "first_text_at"))

    def _on_args_done(self, event: dict[str, Any], kind: str, item: Item) -> Update:
        item.type = "function_call"
        arguments = str_or_none(event.get("arguments"))
        if arguments is not None:
            item.arguments = arguments
        item.name = str_or_none(event.get("name")) or item.name
        call_id = str_or_none(event.get("call_id"))
        if call_id:
            item.call_id = call_id
            self._by_call[call_id] = item.id
        return Update(type=kind, item=item, response=self._response(event))

    def _on_rate_limits(self, event: dict[str, Any], kind: str) -> Update:
        self.rate_limits = [dict_of(x) for x in list_of(event.get("rate_limits"))]
        return Update(type=kind)

    def _on_error(self, event: dict[str, Any], kind: str) -> Update:
        event_id = str_or_none(dict_of(event.get("error")).get("event_id"))
        info = error_info_from_event(event, self.caused_by(event_id), self.now)
        self.errors.append(info)
        if len(self.errors) > 1000:
            del self.errors[:500]
        return Update(type=kind, error=info)
