"""The session's side of the conversation's floor (:mod:`rtwidget.protocol.floor`): it feeds the
floor the server's events, sends what the floor lets go, and announces each interruption by a
typed turn as an ``rtwidget.interrupted`` event (``response_ids``: the replies it cancelled,
none if the server had finished the reply), so that whoever plays the audio (the widget) stops
it and reports where, for the reply to be cut there as after a barge-in: a reply the server
has finished may still be playing. All on the session's loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol import client_events
from ..protocol.errors import ConnectionClosed
from ..protocol.floor import ClientTurn, Floor, Steps
from ..protocol.items import Update, dict_of

if TYPE_CHECKING:
    from .connection import Connection

INTERRUPTED = "rtwidget.interrupted"


class TurnTaking:
    """One session's floor (see the module docstring). ``floor`` is the pure state."""

    def __init__(self, session: Connection) -> None:
        self.floor = Floor()
        self.floor.covered = self._covered
        self._session = session
        session.hub.on_update(self._saw)

    def _covered(self, turn: ClientTurn, response_id: str) -> bool:
        """Whether the response the server started answers the turn: every item the turn
        added was in the conversation when the response began."""
        conversation = self._session.conversation
        response = conversation.responses.get(response_id)
        ids = [str(dict_of(e.get("item")).get("id")) for e in turn.events
               if e.get("type") == "conversation.item.create"]
        if response is None or response.answers is None or not ids:
            return False
        order = [item.id for item in conversation]
        if response.answers not in order:
            return False
        last = order.index(response.answers)
        return all(i in order and order.index(i) <= last for i in ids)

    def submit(self, sent: list[dict[str, Any]], *, interrupt: bool = False) -> ClientTurn:
        """Send ``sent`` (one turn, in order) once the floor lets it go; with ``interrupt``
        the reply in progress is cancelled first. An event that cannot be sent raises
        :class:`~rtwidget.InvalidInput` here, and nothing of the turn goes out."""
        ready = []
        for event in sent:
            if not isinstance(event.get("event_id"), str):
                event = {**event, "event_id": client_events.new_event_id()}
            self._session._encoded(event)
            ready.append(event)
        if self._session.closed:
            raise ConnectionClosed("the session is closed")
        if interrupt:  # announced before the turn is given: a player may hold it back
            steps = self.floor.interrupt()
            self._do(steps, announce=False)
            self._session.note(INTERRUPTED, response_ids=steps.interrupted)
        turn, steps = self.floor.submit(ready)
        self._do(steps)
        return turn

    def withdraw(self, turn: ClientTurn) -> bool:
        """Drop a turn still waiting for the floor; whether it was still waiting."""
        return self.floor.withdraw(turn)

    def interrupt(self, *, announce: bool = True) -> list[str]:
        """Cancel the reply in progress (once) and any reply asked for but not started yet (as
        soon as it starts); returns the ids cancelled now. ``announce=False`` when the player
        has already stopped (the widget's ■ Stop, a barge-in)."""
        if self._session.closed:
            return []
        steps = self.floor.interrupt()
        self._do(steps, announce=announce)
        return steps.interrupted

    def hold(self, key: str) -> None:
        """Keep every ``response.create`` back until :meth:`release` of ``key`` (the widget,
        while its page reports how much of an interrupted reply it played)."""
        self.floor.hold(key)

    def release(self, key: str) -> None:
        """Let go of a :meth:`hold`; the turns it kept back go out."""
        if not self._session.closed:
            self._do(self.floor.release(key))
        else:
            self.floor.holds.discard(key)

    def _saw(self, event: dict[str, Any], update: Update) -> None:
        if not self._session.closed:
            self._do(self.floor.received(event))

    def _do(self, steps: Steps, announce: bool = True) -> None:
        for event in steps.send:
            self._session._enqueue(event, None)
        if announce and steps.interrupted:
            self._session.note(INTERRUPTED, response_ids=steps.interrupted)
