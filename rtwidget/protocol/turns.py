"""Turns and their timing, worked out once for the DataFrame, the latency table and the widget.

A user message and the items after it, up to the next user message, are one turn. Each stage
of the reply is timed from the end of the user's turn (``Item.turn_ended_at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .items import Item, Response


def role_of(item: Item) -> str | None:
    """The role an item shows as: its own, else ``"tool"`` for a function call's output and
    ``"assistant"`` for a function call (the model made it), an MCP call or approval request;
    ``"tool"`` for an MCP server's listing, ``"user"`` for an approval's answer."""
    if item.role:
        return item.role
    if item.type == "function_call_output":
        return "tool"
    if item.type in ("function_call", "mcp_call", "mcp_approval_request"):
        return "assistant"
    if item.type == "mcp_list_tools":
        return "tool"
    if item.type == "mcp_approval_response":
        return "user"
    return None


def starts_turn(item: Item) -> bool:
    """Whether the item is a user message, which begins a turn."""
    return item.role == "user" and item.type == "message"


@dataclass
class Layout:
    """Each item's position in the conversation, and the user message its turn began with;
    built item by item (:meth:`extend`), so that a growing conversation is laid out once."""

    position: dict[str, int] = field(default_factory=dict)
    turn_of: dict[str, Item] = field(default_factory=dict)
    starts: set[str] = field(default_factory=set)  # the items laid out that begin a turn
    newest: str | None = None  # the last item laid out, deleted or not
    _user: Item | None = None  # the newest item that begins a turn

    def extend(self, items: Iterable[Item]) -> Layout:
        """Lay ``items`` (in conversation order, after those laid out) out; deleted ones
        take no position."""
        for item in items:
            self.newest = item.id
            if item.deleted:
                continue
            self.position[item.id] = len(self.position)
            if starts_turn(item):
                self._user = item
                self.starts.add(item.id)
            elif self._user is not None:
                self.turn_of[item.id] = self._user
        return self


def layout(items: Iterable[Item]) -> Layout:
    """The :class:`Layout` of ``items`` (in conversation order)."""
    return Layout().extend(items)


def _earliest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def since(start: float | None, end: float | None) -> float | None:
    """Seconds from ``start`` to ``end`` (never negative), or ``None`` if either is unknown."""
    if start is None or end is None:
        return None
    return max(0.0, end - start)


@dataclass
class TurnTimes:
    """When the stages of one turn's reply first happened: any reply delta, reply audio in
    the kernel, reply audio playing in the browser."""

    response: float | None = None
    audio: float | None = None
    played: float | None = None

    def saw(self, item: Item, response: Response | None) -> None:
        """Take an item of the turn (and its response) into account."""
        firsts = [item.first_text_at, item.first_audio_at]
        if response is not None:
            firsts += [response.first_text_at, response.first_audio_at]
        self.response = _earliest(*firsts, self.response)
        self.audio = _earliest(item.first_audio_at, self.audio)
        self.played = _earliest(item.played_at, self.played)


def reply_heard_after(item: Item, user: Item | None) -> float | None:
    """Seconds from the end of the user's turn to this reply being heard (or, until it plays,
    arriving): the figure shown on a reply."""
    if user is None or item.role != "assistant" or item.type != "message":
        return None
    return since(user.turn_ended_at, item.played_at or item.first_audio_at or item.first_text_at)
