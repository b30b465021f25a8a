"""Which server event answers which client request: pure matching rules for a session's
requests that wait for an answer (``session.update``, item retrieve/delete/truncate...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .conversation import Conversation
from .errors import ErrorInfo, error_info_from_event

Predicate = Callable[[dict[str, Any]], bool]

# codes of errors that answer no request: an engine of the local server failing mid-response
# or mid-transcription (the error names no event_id when no client event started it)
_UNPROMPTED_CODES = frozenset({"engine_failed", "engine_unavailable"})

_ERROR_HINTS = {"session.update": ("session",), "conversation.item.retrieve": ("retrieve",),
                "conversation.item.delete": ("delete",),
                "conversation.item.truncate": ("truncate", "audio_end_ms", "content_index")}


def _error_fits(hint: str, request_type: str) -> bool:
    """Whether an error's ``param``/``code`` text points at a request of this type."""
    return any(word in hint for word in _ERROR_HINTS.get(request_type, ()))


class PendingRequests:
    """The requests waiting for an answer, oldest first, and how to tell theirs apart."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.waiting: dict[str, str] = {}  # event_id -> type
        self._last_answer: dict[str, Any] | None = None  # the event that answered one last

    def answered_by(self, event_id: str, kind: str, match: Predicate) -> Predicate:
        """Registers the request and returns the predicate that takes its answer: an event
        ``match`` accepts, or an ``error`` that names it (or, naming none, is its to take). One
        event answers one request, and at once, so the next in line gets the next answer."""
        self.waiting[event_id] = kind

        def answers(ev: dict[str, Any]) -> bool:
            if ev.get("type") == "error":
                err = ev.get("error")
                if not isinstance(err, dict):
                    return False
                if err.get("event_id") is None:
                    return self.claims_unnamed_error(event_id, err)
                return bool(err.get("event_id") == event_id)
            return match(ev)

        def answer(ev: dict[str, Any]) -> bool:
            if ev is self._last_answer or not answers(ev):
                return False
            self.waiting.pop(event_id, None)
            self._last_answer = ev
            return True

        return answer

    def forget(self, event_id: str) -> None:
        """The request was answered, given up on, or never sent."""
        self.waiting.pop(event_id, None)

    def updated_for(self, event_id: str) -> Predicate:
        """Matches the ``session.updated`` answering the ``session.update`` ``event_id``: the
        server answers updates in order and ``session.updated`` names none, so it is the
        answer to the oldest update sent and still waiting."""

        def oldest_update() -> str | None:
            for eid, kind in self.waiting.items():
                if kind == "session.update" and self.conversation.caused_by(eid) is not None:
                    return eid
            return None

        return lambda ev: ev.get("type") == "session.updated" and oldest_update() == event_id

    def claims_unnamed_error(self, event_id: str, err: dict[str, Any]) -> bool:
        """Whether an ``error`` without an ``event_id`` (Inworld sends ``null``) belongs to the
        waiting request ``event_id``: of the requests already sent and still waiting, those
        whose type the error's ``param``/``code`` points at, else all of them; the oldest one
        takes it."""
        if err.get("code") in _UNPROMPTED_CODES:
            return False
        sent = [(eid, kind) for eid, kind in self.waiting.items()
                if self.conversation.caused_by(eid) is not None]
        hint = f"{err.get('param') or ''} {err.get('code') or ''}".lower()
        fitting = [eid for eid, kind in sent if _error_fits(hint, kind)]
        candidates = fitting or [eid for eid, _ in sent]
        return bool(candidates) and candidates[0] == event_id

    def error_info(self, event: dict[str, Any], event_id: str, kind: str) -> ErrorInfo:
        """The :class:`ErrorInfo` for an ``error`` answering the request ``event_id``."""
        errors = self.conversation.errors
        info = errors[-1] if errors else None
        if info is None or info.event_id != event_id:
            info = error_info_from_event(event, kind, 0.0)
        if info.event_id is None:
            info = dataclasses.replace(info, caused_by=kind, matched_by_order=True)
        return info
