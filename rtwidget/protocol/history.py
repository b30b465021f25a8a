"""What a conversation says about itself once it is over or interrupted: the history to replay
after a reconnect, a reply's text, and which responses the client still owes an answer to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import client_events
from .conversation import Conversation
from .items import Response


def history_items(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation so far as items to re-create after a reconnect: messages as text
    (audio as its transcript; a reply cut short stays ``incomplete``), function calls and
    outputs as they were, same ids."""
    items: list[dict[str, Any]] = []
    for item in conversation:
        if item.type == "message" and item.role in ("user", "assistant", "system"):
            text = item.display_text
            if text:
                message = client_events.text_message(text, item.role, item.id)  # type: ignore[arg-type]
                if item.status == "incomplete":
                    message["status"] = "incomplete"
                items.append(message)
        elif item.type == "function_call" and item.call_id and item.name:
            items.append({"type": "function_call", "id": item.id, "call_id": item.call_id,
                          "name": item.name, "arguments": item.arguments or "{}"})
        elif item.type == "function_call_output" and item.call_id:
            items.append(
                client_events.function_call_output(item.call_id, item.output or "", item.id))
    return items


def reply_text(conversation: Conversation, response: Response) -> str:
    """The text (or heard audio transcript) of a response's messages."""
    texts = []
    for item_id in response.item_ids:
        item = conversation.get(item_id)
        if item is not None and item.type == "message":
            texts.append(item.display_text)
    return "".join(texts)


def continues(conversation: Conversation, response: Response,
              handles: Callable[[str | None], bool]) -> bool:
    """Whether a finished response is not the final one: it completed with function calls
    that the client answers (``handles(name)``), and so will ask for another."""
    if response.status != "completed":
        return False
    items = (conversation.get(i) for i in response.item_ids)
    return any(i is not None and i.type == "function_call" and handles(i.name) for i in items)
