"""One response at a time: who has the conversation's floor, and the turns waiting for it.

Every provider (OpenAI, Inworld, the local server) refuses a second response of the conversation
while one is in progress (``conversation_already_has_active_response``). So the client never
sends one: a ``response.create`` of the conversation waits here until the response in progress
has ended (its ``response.done``), and until nothing else holds it back (a page still reporting
how much of the interrupted reply it played, so the reply is cut there first).

Two rules for a typed turn during a reply:

- **interrupt** (``say()``, the widget's text box): the reply is cancelled at once, as after a
  barge-in; the turn's item and its ``response.create`` go out once the reply has ended.
- **wait** (``ask()``, audio items, tool outputs' follow-up responses): the reply goes on; the
  turn goes out once it has ended.

Turns go out in the order they were given. Pure: the session tells :class:`Floor` what it wants
to send and what the server said; it answers with the client events to send now
(:class:`Steps`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .client_events import response_cancel
from .items import BETA_ALIASES, dict_of, str_or_none

ACTIVE_REFUSED = "conversation_already_has_active_response"
CANCEL_TOO_LATE = "response_cancel_not_active"


@dataclass
class Steps:
    """What to do now: the client events to send (in order), and the responses just cancelled
    for a turn, whose playback should stop where it is."""

    send: list[dict[str, Any]] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    def add(self, other: Steps) -> Steps:
        self.send += other.send
        self.interrupted += other.interrupted
        return self


@dataclass(eq=False)
class ClientTurn:
    """Client events that go out together, in order; one that holds a ``response.create`` of
    the conversation waits for the floor."""

    events: list[dict[str, Any]]

    @property
    def create(self) -> dict[str, Any] | None:
        """The turn's ``response.create`` of the conversation, if it has one."""
        for event in self.events:
            if claims_floor(event):
                return event
        return None


def claims_floor(event: dict[str, Any]) -> bool:
    """Whether ``event`` asks for a response of the conversation (not an out-of-band one)."""
    if event.get("type") != "response.create":
        return False
    return dict_of(event.get("response")).get("conversation", "auto") != "none"


class Floor:
    """The conversation's floor (see the module docstring).

    ``active`` is the response of the conversation in progress; ``creating`` the
    ``response.create`` events sent and not yet answered (oldest first); ``holds`` what else
    keeps the next ``response.create`` back; ``waiting`` the turns not sent yet.
    """

    def __init__(self) -> None:
        self.active: str | None = None
        self.creating: list[str] = []
        self.cancelling: set[str] = set()
        self.cancel_when_created: set[str] = set()  # response.create event ids
        self.holds: set[str] = set()
        self.waiting: deque[ClientTurn] = deque()
        self.out_of_band = 0  # out-of-band responses asked for and not started
        self._cancels: deque[str] = deque(maxlen=64)  # event ids of the cancels sent
        self._sent: dict[str, ClientTurn] = {}  # the newest turns sent, by their create's id
        self._absorbed: deque[str] = deque(maxlen=64)  # refusals taken care of here
        self.covered: Callable[[ClientTurn, str], bool] = lambda turn, response_id: False
        """Whether a turn's items are answered by a response the server started itself (the
        session tells, from its conversation); a refused turn that is not is sent again."""

    @property
    def busy(self) -> bool:
        """Whether a response of the conversation is in progress or on its way."""
        return self.active is not None or bool(self.creating)

    # --- what the client wants ------------------------------------------------------------------

    def submit(self, events: list[dict[str, Any]], *, interrupt: bool = False
               ) -> tuple[ClientTurn, Steps]:
        """A turn to send (its events need ``event_id``s). With ``interrupt`` the response in
        progress (and any about to start) is cancelled first. Returns the turn (to
        :meth:`withdraw` it) and what to do now."""
        steps = self.interrupt() if interrupt else Steps()
        turn = ClientTurn(list(events))
        self.waiting.append(turn)
        return turn, steps.add(self._flow())

    def withdraw(self, turn: ClientTurn) -> bool:
        """Drop a turn that has not gone out yet (its caller gave up); whether it had not."""
        try:
            self.waiting.remove(turn)
        except ValueError:
            return False
        return True

    def interrupt(self) -> Steps:
        """Cancel the response in progress, once (one already being cancelled is left alone),
        and each response already asked for, as soon as it starts."""
        steps = Steps()
        if self.active is not None and self.active not in self.cancelling:
            steps.add(self._cancel(self.active))
        self.cancel_when_created.update(self.creating)
        return steps

    def sent_out_of_band(self) -> None:
        """An out-of-band ``response.create`` (``conversation: "none"``) went out: its
        response, which names no conversation, holds no floor."""
        self.out_of_band += 1

    def hold(self, key: str) -> None:
        """Keep every ``response.create`` back until :meth:`release` of ``key``."""
        self.holds.add(key)

    def release(self, key: str) -> Steps:
        """Let go of a :meth:`hold` (again is harmless)."""
        self.holds.discard(key)
        return self._flow()

    # --- what the server said ------------------------------------------------------------------

    def received(self, event: dict[str, Any]) -> Steps:
        """Take a server event into account."""
        kind = event.get("type")
        kind = BETA_ALIASES.get(kind, kind) if isinstance(kind, str) else None
        if kind == "response.created":
            return self._created(dict_of(event.get("response")))
        if kind == "response.done":
            response_id = str_or_none(dict_of(event.get("response")).get("id"))
            if response_id is not None and response_id == self.active:
                self.active = None
            self.cancelling.discard(response_id or "")
            return self._flow()
        if kind == "error":
            return self._refused(dict_of(event.get("error")))
        return Steps()

    def _created(self, response: dict[str, Any]) -> Steps:
        # out of band: it names no conversation, and one was asked for (a provider that names
        # none on the conversation's own responses still has them count)
        if self.out_of_band and "conversation_id" in response \
                and response["conversation_id"] is None:
            self.out_of_band -= 1
            return Steps()
        response_id = str_or_none(response.get("id"))
        if response_id is None:
            return Steps()
        # the server answers creates in order; a response it started itself (server VAD) may
        # take a create's place here, and the create's own response then replaces it
        asked = self.creating.pop(0) if self.creating else None
        self.active = response_id  # a new response of the conversation: any earlier one ended
        if asked is not None and asked in self.cancel_when_created:
            self.cancel_when_created.discard(asked)
            return self._cancel(response_id)
        return Steps()

    def _refused(self, error: dict[str, Any]) -> Steps:
        """An ``error``: a refused ``response.create`` is no longer on its way. Refused because
        the server had started a response itself (its VAD ended a spoken turn as the typed one
        went out), the turn is sent again once that response has ended, unless that response
        answers the turn's items already; either way the refusal is a race handled here."""
        event_id = error.get("event_id")
        raced = error.get("code") == ACTIVE_REFUSED
        if event_id in self.creating:
            self.creating.remove(event_id)
        elif event_id is None and raced and self.creating:
            event_id = self.creating.pop(0)  # a provider that names no event (Inworld)
        elif not (raced and event_id in self._sent):  # (else: taken for the server's own)
            return Steps()
        self.cancel_when_created.discard(event_id)
        turn = self._sent.pop(str(event_id), None)
        if raced and turn is not None and turn.create is not None:
            self._absorbed.append(str(event_id))
            # once, and only behind a response it knows of (whose end lets it go)
            if self.active is not None and not str(event_id).endswith("-again") \
                    and not self.covered(turn, self.active):
                again = {**turn.create, "event_id": f"{event_id}-again"}
                self.waiting.appendleft(ClientTurn([again]))
        return self._flow()

    def absorbed(self, event: dict[str, Any]) -> bool:
        """Whether an ``error`` is a race the floor has handled (a cancel the reply's end
        overtook, or a ``response.create`` refused for a response the server started itself):
        not worth showing anyone."""
        error = dict_of(event.get("error"))
        if self.too_late(event):
            return True
        return error.get("code") == ACTIVE_REFUSED and error.get("event_id") in self._absorbed

    def too_late(self, event: dict[str, Any]) -> bool:
        """Whether an ``error`` is the server refusing one of these cancels because the reply
        had just ended (its ``response.done`` was on its way): a harmless race, not worth
        showing anyone."""
        error = dict_of(event.get("error"))
        if error.get("code") != CANCEL_TOO_LATE:
            return False
        event_id = error.get("event_id")
        return event_id in self._cancels if event_id is not None else bool(self._cancels)

    # --- internals ---------------------------------------------------------------------------

    def _cancel(self, response_id: str) -> Steps:
        self.cancelling.add(response_id)
        cancel = response_cancel(response_id)
        self._cancels.append(cancel["event_id"])
        return Steps([cancel], [response_id])

    def _flow(self) -> Steps:
        """Send the turns whose time has come, in order: one with a ``response.create`` waits
        until the floor is free and nothing holds it back."""
        steps = Steps()
        while self.waiting:
            create = self.waiting[0].create
            if create is not None and (self.busy or self.holds):
                break
            turn = self.waiting.popleft()
            steps.send += turn.events
            if create is not None:
                self.creating.append(str(create["event_id"]))
                self._sent[str(create["event_id"])] = turn
                while len(self._sent) > 64:
                    del self._sent[next(iter(self._sent))]
        return steps
