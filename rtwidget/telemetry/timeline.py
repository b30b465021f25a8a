"""A conversation's turns as timed stages, from the very timestamps the DataFrame's latency
columns are worked out from (:mod:`rtwidget.protocol.turns`), so a trace and ``df`` agree to
the millisecond. Pure: no OpenTelemetry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.conversation import Conversation
from ..protocol.items import Item, Response, str_or_none
from ..protocol.turns import TurnTimes, starts_turn

STAGES: tuple[tuple[str, str], ...] = (
    ("vad", "vad_s"),
    ("transcription", "transcript_s"),
    ("response", "response_s"),
    ("first_audio", "audio_s"),
    ("first_played", "played_s"),
)
"""(stage span, the DataFrame column it equals): each stage runs from the end of the user's
turn to the moment the stage first happened."""


@dataclass(frozen=True)
class Stage:
    """One stage of a turn: from the end of the user's turn (``start``) to when it happened
    (``end``, never before ``start``, as in the DataFrame)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class ToolRun:
    """One tool call of a turn, timed as ``tool_s`` is: it ran for ``end - start`` seconds."""

    item: Item
    start: float
    end: float
    error: str | None


@dataclass
class Turn:
    """One user turn: its message, when the turn ended, its stages, responses and tool runs,
    and where the reply was cut off by a barge-in (``heard_ms``), if it was."""

    index: int
    user: Item
    ended_at: float
    stages: list[Stage] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    tools: list[ToolRun] = field(default_factory=list)
    heard_ms: int | None = None

    @property
    def start(self) -> float:
        """The turn span's start: the user's message appearing or the end of the turn."""
        return min(self.user.created_at or self.ended_at, self.ended_at)

    @property
    def end(self) -> float:
        """The turn span's end: the last of its stages, responses and tool runs."""
        ends = [self.ended_at, *(s.end for s in self.stages), *(t.end for t in self.tools),
                *(r.done_at for r in self.responses if r.done_at is not None)]
        return max(ends)


def _tool_notes(conversation: Conversation) -> dict[str, float]:
    return {str(e.payload.get("call_id")): e.at for e in conversation.log
            if e.direction == "local" and e.type == "rtwidget.tool_result"}


def _stages(user: Item, times: TurnTimes) -> list[Stage]:
    end = user.turn_ended_at
    spoken = user.speech_stopped_at is not None
    moments = (user.speech_stopped_at if spoken else None,
               user.transcript_done_at if spoken else None,
               times.response, times.audio, times.played)
    return [Stage(name, end, max(end, at))
            for (name, _), at in zip(STAGES, moments, strict=True) if at is not None]


def turns(conversation: Conversation) -> list[Turn]:
    """The conversation's user turns, in order, each with its stages, responses and tools."""
    notes = _tool_notes(conversation)
    out: list[Turn] = []
    times = TurnTimes()
    current: Turn | None = None
    seen: set[str] = set()

    def close() -> None:
        if current is not None:
            current.stages = _stages(current.user, times)

    for item in list(conversation):
        if starts_turn(item):
            close()
            current, times = Turn(len(out), item, item.turn_ended_at), TurnTimes()
            out.append(current)
            for silent in conversation.responses.values():
                if silent.answers == item.id and not silent.item_ids and silent.id not in seen:
                    seen.add(silent.id)
                    current.responses.append(silent)
            continue
        if current is None:
            continue
        response = conversation.responses.get(item.response_id) if item.response_id else None
        times.saw(item, response)
        if response is not None and response.id not in seen:
            seen.add(response.id)
            current.responses.append(response)
        if item.truncated_ms is not None and item.role == "assistant":
            current.heard_ms = item.truncated_ms
        if item.type == "function_call" and item.call_id:
            outcome: dict[str, Any] = conversation.tool_outcomes.get(item.call_id) or {}
            seconds = outcome.get("seconds")
            end = notes.get(item.call_id)
            if end is not None and isinstance(seconds, (int, float)):
                current.tools.append(ToolRun(item, end - float(seconds), end,
                                             str_or_none(outcome.get("error"))))
    close()
    return out


@dataclass(frozen=True)
class ConnectionGap:
    """A lost connection and its return: when it was lost, when it came back (``None`` if it
    never did), why, and how many attempts it took."""

    lost_at: float
    back_at: float | None
    reason: str
    attempts: int


def reconnects(conversation: Conversation) -> list[ConnectionGap]:
    """Every connection lost and found again, from the client's own notes in the log."""
    out: list[ConnectionGap] = []
    lost: float | None = None
    reason, attempts = "", 0
    for entry in conversation.log:
        if entry.direction != "local":
            continue
        if entry.type == "rtwidget.connection_lost" and lost is None:
            lost, attempts = entry.at, 0
            reason = str(entry.payload.get("detail") or entry.payload.get("reason") or "")
        elif entry.type == "rtwidget.reconnecting" and lost is not None:
            attempts += 1
        elif entry.type == "rtwidget.reconnected" and lost is not None:
            out.append(ConnectionGap(lost, entry.at, reason, attempts))
            lost = None
    if lost is not None:
        out.append(ConnectionGap(lost, None, reason, attempts))
    return out


def span_of_session(conversation: Conversation) -> tuple[float, float]:
    """When the session began and last did something (its event log's first and last
    entries, else its items')."""
    log = list(conversation.log)
    if log:
        return log[0].at, log[-1].at
    items = conversation.all_items()
    times = [i.created_at for i in items] + [i.completed_at or 0.0 for i in items]
    return (min(times), max(times)) if items else (conversation.now, conversation.now)
