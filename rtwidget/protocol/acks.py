"""Which client events the server has answered: the bookkeeping that lets a session send again,
after a reconnect, what the last connection took but never acknowledged."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .items import BETA_ALIASES

# Client events kept until the server acknowledges them; after a reconnect the first kind is
# sent again, the others (whose state died with the connection) are reported as lost.
RESEND = frozenset({"conversation.item.create", "response.create", "conversation.item.delete",
                    "conversation.item.truncate", "conversation.item.retrieve"})
TRACKED = RESEND | {"input_audio_buffer.commit"}
MAX_UNACKED = 1_000
MAX_REMEMBERED = 256  # response.create event ids -> the response each created


def item_id_of(event: dict[str, Any]) -> Any:
    """The item an event is about: ``item.id``, else ``item_id``."""
    item = event.get("item")
    return item.get("id") if isinstance(item, dict) else event.get("item_id")


# server event -> the client event it acknowledges, and how the two are paired (None: in order)
_ACKS: dict[str, tuple[str, Callable[[dict[str, Any]], Any] | None]] = {
    "response.created": ("response.create", None),
    "conversation.item.added": ("conversation.item.create", item_id_of),
    "conversation.item.deleted": ("conversation.item.delete", item_id_of),
    "conversation.item.truncated": ("conversation.item.truncate", item_id_of),
    "conversation.item.retrieved": ("conversation.item.retrieve", item_id_of),
    "input_audio_buffer.committed": ("input_audio_buffer.commit", None),
}


class Acknowledgements:
    """Client events sent and not yet answered, and the response each ``response.create``
    created. Pure: the session tells it what was sent and what came back."""

    def __init__(self) -> None:
        self.unanswered: dict[str, dict[str, Any]] = {}
        self.created_for: OrderedDict[str, str] = OrderedDict()

    def sent(self, event: dict[str, Any]) -> None:
        """``event`` went out on the wire; keep it if an answer is due."""
        if event.get("type") in TRACKED:
            self.unanswered[event["event_id"]] = event
            if len(self.unanswered) > MAX_UNACKED:  # a server that never answers
                self.unanswered.pop(next(iter(self.unanswered)))

    def received(self, event: dict[str, Any]) -> None:
        """Forget the client event this server event answers."""
        kind = event.get("type")
        if not isinstance(kind, str):
            return
        kind = BETA_ALIASES.get(kind, kind)
        if kind == "error":
            err = event.get("error")
            if isinstance(err, dict) and isinstance(err.get("event_id"), str):
                self.unanswered.pop(err["event_id"], None)
            return
        rule = _ACKS.get(kind)
        if rule is None or not self.unanswered:
            return
        client_type, key = rule
        wanted = key(event) if key is not None else None
        for event_id, sent in self.unanswered.items():
            if sent.get("type") == client_type and (key is None or item_id_of(sent) == wanted):
                del self.unanswered[event_id]
                break
        else:
            return
        if kind == "response.created" and isinstance(event.get("response"), dict):
            self.created_for[event_id] = str(event["response"].get("id"))
            while len(self.created_for) > MAX_REMEMBERED:
                self.created_for.popitem(last=False)

    def take_unanswered(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The connection is gone: the unanswered events to send again (in order), and those
        lost with it (an audio commit: its audio died with the connection). Forgets both."""
        pending, self.unanswered = list(self.unanswered.values()), {}
        return ([e for e in pending if e.get("type") in RESEND],
                [e for e in pending if e.get("type") not in RESEND])
