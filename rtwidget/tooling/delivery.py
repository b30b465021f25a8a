"""What the user hears while tools run, and how a background tool's result reaches the model.

- **The filler.** When the calls of a response are still running ``wait`` seconds after the
  user's turn ended (and have run for :data:`GRACE` at least), and the response said nothing
  itself, the agent says a short filler: an
  out-of-band ``response.create`` (``conversation: "none"``, no input, no tools), which adds
  nothing to the conversation and holds no floor, so the follow-up response with the results
  is never refused because of it.
- **A background result.** It goes to the model as a system message naming the call, and then,
  by the tool's ``deliver``: ``when_idle`` asks for a response once no response is in progress
  (the floor) and the user is not speaking; ``interrupt`` cuts the reply in progress and asks
  at once; ``silent`` only adds the message to the context.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from ..protocol import client_events
from ..protocol.conversation import Conversation
from ..protocol.items import Response
from ..protocol.turns import starts_turn

FILLER_INSTRUCTIONS = ('A tool you called is still running. Say exactly this, and nothing '
                       'else: "One moment, let me check that."')
"""What the agent is told to say while a tool runs (``SessionOptions.filler_instructions``)."""


MAX_USER_WAIT = 30.0  # seconds a when-idle result waits for the user to stop speaking
GRACE = 0.3
"""Seconds a call runs at least before a filler: a model slow to call a quick tool gets none
(its answer is as near as a filler would be)."""


class TurnHost(Protocol):
    """What delivery needs of a session."""

    conversation: Conversation

    def send_nowait(self, event: dict[str, Any]) -> None: ...

    def submit_turn(self, events: list[dict[str, Any]], interrupt: bool) -> None: ...

    def note(self, kind: str, **fields: Any) -> None: ...


def turn_ended_at(conversation: Conversation, response: Response) -> float:
    """When the user's turn that ``response`` answers ended (the response's start where no
    user turn is found)."""
    for item in reversed(list(conversation)):
        if starts_turn(item) and item.created_at <= response.created_at:
            return item.turn_ended_at
    return response.created_at


class Delivery:
    """Fillers and background results for one session (see the module docstring)."""

    def __init__(self, session: TurnHost, filler_instructions: str = FILLER_INSTRUCTIONS):
        self.session = session
        self.filler_instructions = filler_instructions
        self.user_speaking = False

    @staticmethod
    def started_output(name: str) -> str:
        """The output a background call is answered with at once."""
        return json.dumps({"status": "started", "message": (
            f"{name} is running in the background; its result will come as a system message "
            "when it is ready. Carry on with the user meanwhile.")})

    def _spoke(self, response: Response) -> bool:
        for item_id in response.item_ids:
            item = self.session.conversation.get(item_id)
            if item is not None and item.type == "message" and (
                    item.text or item.audio_out_bytes):
                return True
        return False

    async def filler(self, response: Response, tasks: list[Any], wait: float) -> None:
        """Say a filler if ``tasks`` are still running ``wait`` s after the turn's end."""
        if not tasks:
            return
        conversation = self.session.conversation
        delay = max(turn_ended_at(conversation, response) + wait - conversation.clock(), GRACE)
        await asyncio.wait(tasks, timeout=delay)
        if all(task.done() for task in tasks) or self._spoke(response) or self.user_speaking:
            return
        self.session.send_nowait(client_events.response_create(
            conversation="none", input=[], instructions=self.filler_instructions,
            tool_choice="none", metadata={"rtwidget": client_events.FILLER}))
        self.session.note("rtwidget.filler", response_id=response.id)

    async def deliver(self, name: str, call_id: str, arguments: str, output: str,
                      mode: str) -> None:
        """A background call's result to the model (see the module docstring)."""
        message = client_events.item_create(
            client_events.background_result(name, call_id, arguments, output))
        if mode == "silent":
            self.session.send_nowait(message)
            return
        if mode == "when_idle":
            for _ in range(int(MAX_USER_WAIT / 0.05)):
                if not self.user_speaking:
                    break
                await asyncio.sleep(0.05)
        self.session.submit_turn([message, client_events.response_create()],
                                 interrupt=mode == "interrupt")
