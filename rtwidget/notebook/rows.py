"""The transcript rows the widget sends to the page: only the items an event changed, laid out
(position, turn) incrementally: the items added since the last layout are laid out after it, and
the whole conversation again only when an item was deleted, placed before the newest or changed
whether it begins a turn."""

from __future__ import annotations

from typing import Any

from ..protocol.conversation import Conversation
from ..protocol.items import Item, Update
from ..protocol.turns import Layout, reply_heard_after, role_of, starts_turn
from . import messages


class RowFeed:
    """Collects changed items between flushes and turns them into one ``rows`` message."""

    def __init__(self) -> None:
        self._dirty: set[str] = set()
        self._layout_key: tuple[int, int] | None = None
        self._layout = Layout()
        self.relayouts = 0  # layouts of the whole conversation (one per reset, at least)

    def mark(self, update: Update) -> bool:
        """Note the rows an event may have changed, to send at the next flush; whether any."""
        ids = [update.item.id] if update.item is not None else []
        if update.response is not None and update.type == "response.done":
            ids += update.response.item_ids
        self._dirty.update(ids)
        return bool(ids)

    def message(self, conversation: Conversation, reset: bool) -> dict[str, Any] | None:
        """The ``rows`` message for the page (every row when ``reset``), or ``None``."""
        if reset:
            items = list(conversation)
            removed: list[str] = []
            self._dirty.clear()
        else:
            dirty, self._dirty = self._dirty, set()
            found = [conversation.get(i) for i in dirty]
            items = [i for i in found if i is not None and not i.deleted]
            removed = [i.id for i in found if i is not None and i.deleted]
        if not (items or removed or reset):
            return None
        # every change to an item comes as an event about it: only one of these, laid out
        # already, can have come to begin a turn, or stopped, since
        laid_out = self._layout
        turned = any(i.id in laid_out.position and starts_turn(i) != (i.id in laid_out.starts)
                     for i in items)
        laid = self._laid_out(conversation, reset or bool(removed) or turned)
        rows = [row(item, laid.position.get(item.id, 0), laid.turn_of.get(item.id), conversation)
                for item in items]
        return {"type": messages.ROWS, "rows": rows, "removed": removed, "reset": reset}

    def _laid_out(self, conversation: Conversation, fresh: bool) -> Layout:
        key = (id(conversation), conversation.items_seen)
        if not fresh and self._layout_key == key:
            return self._layout
        added = None if fresh or self._layout_key is None or self._layout_key[0] != key[0] \
            else conversation.items_after(self._layout_key[1], self._layout.newest)
        if added is None:  # the whole conversation again
            self._layout = Layout()
            self.relayouts += 1
            added = conversation.all_items()
        self._layout.extend(added)
        self._layout_key = key
        return self._layout


def row(item: Item, pos: int, user: Item | None, conversation: Conversation) -> dict[str, Any]:
    """One transcript row as the page draws it."""
    name = item.name
    error = item.error
    if item.type == "function_call_output" and item.call_id:
        call = conversation.by_call_id(item.call_id)
        name = call.name if call is not None else None
        error = call.error if call is not None else None
    return {"id": item.id, "role": role_of(item) or "assistant", "kind": item.type,
            "text": item.display_text, "status": item.status, "name": name,
            "arguments": item.arguments, "output": item.output, "error": error,
            "pos": pos, "seconds": float(item.audio_in_seconds or item.audio_out_seconds),
            "pending": pending(item, conversation), "cut": item.truncated_ms is not None,
            "latency": reply_heard_after(item, user),
            "image": ({"src": item.thumbnail, "label": "; ".join(i.label for i in item.images)}
                      if item.images else None),
            "speakers": ([{"speaker": s.speaker, "text": s.text} for s in item.segments]
                         if len(item.speakers) > 1 else None),
            "tool": tool_state(item, conversation),
            "approval": approval_state(item, conversation)}


def approval_state(item: Item, conversation: Conversation) -> dict[str, Any] | None:
    """An MCP approval request: which server and tool ask, and the answer if there is one
    (the page shows Approve and Deny until then)."""
    if item.type != "mcp_approval_request":
        return None
    answer = next((i.approve for i in conversation if i.type == "mcp_approval_response"
                   and i.approval_request_id == item.id), None)
    return {"request_id": item.id, "server": item.server_label, "name": item.name,
            "arguments": item.arguments, "answer": answer}


def tool_state(item: Item, conversation: Conversation) -> dict[str, Any] | None:
    """A function call the session runs: its id, status, newest progress and whether it runs
    in the background (the page shows them, and ✕ while it runs)."""
    if item.type != "function_call" or not item.call_id:
        return None
    state = conversation.tool_outcomes.get(item.call_id)
    if not state:
        return None
    fraction = state.get("fraction")
    return {"call_id": item.call_id, "status": state.get("status"),
            "progress": str(state.get("message") or ""),
            "fraction": fraction if isinstance(fraction, (int, float)) else None,
            "background": bool(state.get("background"))}


def pending(item: Item, conversation: Conversation) -> bool:
    """A spoken turn whose words are still on their way (transcription is on and has neither
    answered nor failed)."""
    if item.role != "user" or item.display_text or item.error or not item.audio_in_seconds:
        return False
    audio_in = conversation.session.get("audio", {}).get("input", {})
    return bool(audio_in.get("transcription"))
