"""Re-run a recorded session against a server, and compare two runs turn by turn.

What is sent again: the user's side — streamed mic audio (appends, commits, clears), user and
system messages, audio items, the user's own ``response.create`` and ``response.cancel`` —
with the recorded timing divided by ``speed``. What is *not* sent again: tool outputs and the
responses that followed them (the current tools answer the new run's calls), what the session's
tools said on their own (fillers while a tool ran, background results and their responses: the
new run's tools make their own), ``session.update``
(the new run uses the current configuration), history restored after a reconnect, and calls
that name items of the old run (retrieve, delete, truncate).

Timing follows the conversation, not just the clock: when the recorded user waited for an answer
before speaking or typing again, the replay waits until the new run has finished as many answers
(responses that do not end in tool calls) and then keeps the recorded pause.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from ..client.options import SessionOptions
from ..client.session import AsyncRealtimeSession
from ..client.sync import RealtimeSession
from ..protocol import client_events
from ..protocol.configuration import merge_session, session_config
from ..protocol.conversation import Conversation

_USER_EVENTS = {"input_audio_buffer.append", "input_audio_buffer.commit",
                "input_audio_buffer.clear", "response.cancel"}


@dataclass(frozen=True)
class Action:
    """One client event to send again: when it was sent, and how many answers had finished by
    then in the recording."""

    at: float
    event: dict[str, Any]
    answers_before: int


class Replayable(Protocol):
    """What a replay reads of a recording (a loaded :class:`~rtwidget.Recording` is one)."""

    meta: dict[str, Any]

    @property
    def conversation(self) -> Conversation: ...

    @property
    def df(self) -> pd.DataFrame: ...

    def events_with_audio(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]: ...


def answer_times(conversation: Conversation, since: int = 0) -> list[float]:
    """When each finished answer ended, in order: a response that is done and either did not
    complete or called no tool (a response that called tools is followed by another); not an
    out-of-band one (a filler said while a tool runs). ``since``: only the responses from that
    index on, in the order they were created."""
    times = []
    for response in list(conversation.responses.values())[since:]:
        if response.status == "in_progress" or response.done_at is None or response.out_of_band:
            continue
        calls = [i for i in response.item_ids
                 if (item := conversation.get(i)) is not None and item.type == "function_call"]
        if response.status != "completed" or not calls:
            times.append(response.done_at)
    return sorted(times)


def plan(recording: Replayable) -> list[Action]:
    """The user's side of a recording, as the events to send again (see the module docs)."""
    answers = answer_times(recording.conversation)
    actions: list[Action] = []
    seen: set[str] = set()
    after_outputs = False
    for entry, event in recording.events_with_audio():
        kind = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else None
        if entry.get("dir") == "in":
            if item is not None and isinstance(item.get("id"), str):
                seen.add(item["id"])
            continue
        if entry.get("dir") != "out":
            continue
        send: dict[str, Any] | None = None
        if kind == "conversation.item.create" and item is not None:
            restored = item.get("id") in seen
            if isinstance(item.get("id"), str):
                seen.add(item["id"])
            if item.get("type") == "function_call_output" or _background_result(item):
                after_outputs = after_outputs or not restored
            elif item.get("type", "message") == "message" and not restored:
                send = dict(event, item=dict(item, id=client_events.new_item_id()))
                send.pop("previous_item_id", None)
        elif kind == "response.create":
            response = event.get("response")
            metadata = response.get("metadata") if isinstance(response, dict) else None
            if isinstance(metadata, dict) and metadata.get("rtwidget") == client_events.FILLER:
                continue  # a filler the runner said: the new run's runner says its own
            if not after_outputs:
                send = dict(event)
            after_outputs = False
        elif kind in _USER_EVENTS:
            send = {k: v for k, v in event.items() if k != "response_id"}
        if send is not None:
            send["event_id"] = client_events.new_event_id()
            at = float(entry.get("t", 0.0))
            actions.append(Action(at, send, bisect.bisect_right(answers, at)))
    return actions


def _background_result(item: dict[str, Any]) -> bool:
    """Whether a sent item is a background tool's result, delivered by the session."""
    content = item.get("content")
    if item.get("role") != "system" or not isinstance(content, list) or not content:
        return False
    text = content[0].get("text") if isinstance(content[0], dict) else None
    return isinstance(text, str) and client_events.BACKGROUND_RESULT.match(text) is not None


async def drive(session: AsyncRealtimeSession, actions: list[Action], answers: list[float],
                speed: float = 1.0, answer_timeout: float = 60.0) -> list[str]:
    """Send ``actions`` on ``session`` (see the module docs); ``answers`` are the recording's
    :func:`answer_times`. Returns what did not go as recorded (an answer that never came)."""
    loop = asyncio.get_running_loop()
    problems: list[str] = []
    base_rec = actions[0].at if actions else 0.0
    base_new = loop.time()
    answered = 0
    for action in actions:
        if action.answers_before > answered:
            answered = action.answers_before
            if await _answers_reach(session, answered, answer_timeout):
                base_rec, base_new = answers[answered - 1], loop.time()
            else:
                problems.append(f"answer {answered} did not finish within {answer_timeout:g} s")
        delay = (action.at - base_rec) / speed if math.isfinite(speed) else 0.0
        wait = base_new + max(0.0, delay) - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        session.send_nowait(action.event)
    if len(answers) > answered and not await _answers_reach(session, len(answers),
                                                            answer_timeout):
        problems.append(f"the new run finished fewer than the recording's {len(answers)} "
                        f"answers within {answer_timeout:g} s")
    return problems


async def _answers_reach(session: AsyncRealtimeSession, count: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(answer_times(session.conversation)) < count:
        if loop.time() > deadline or session.closed:
            return False
        await asyncio.sleep(0.02)
    return True


@dataclass
class Replay:
    """A new run of a recording: its conversation and what to compare."""

    original: Replayable
    session: RealtimeSession
    problems: list[str] = field(default_factory=list)

    @property
    def df(self) -> pd.DataFrame:
        """The new run's conversation (``rtwidget.COLUMNS``)."""
        return self.session.df

    @property
    def conversation(self) -> Conversation:
        """The new run's conversation state."""
        return self.session.conversation

    def diff(self, only_changed: bool = False) -> pd.DataFrame:
        """The recording and the new run side by side, turn by turn (see :func:`diff`)."""
        return diff(self.original.df, self.df, only_changed=only_changed)

    def close(self) -> None:
        """Close the new run's session."""
        self.session.close()


def replay(recording: Replayable, session: RealtimeSession | None = None, *,
           provider: str | None = None, url: str | None = None, api_key: str | None = None,
           tools: Any = None, speed: float = 1.0, answer_timeout: float = 60.0,
           record: Any = None, **config: Any) -> Replay:
    """Send the user's side of ``recording`` again and return the new run (see the module docs).

    With no ``session``, a new one is opened (``provider``/``url``/``api_key`` as for
    :class:`~rtwidget.RealtimeSession`; the embedded local server when none is set) with the
    recorded configuration, changed by ``config`` keywords, and the current ``tools`` (default:
    every tool in :data:`rtwidget.tools`). ``speed`` divides the recorded pauses
    (``math.inf``: no pauses). The session stays open for inspection; :meth:`Replay.close` it.
    """
    own = session is None
    if session is None:
        recorded = {k: v for k, v in recording.meta.get("config", {}).items() if k != "tools"}
        options = SessionOptions(config=merge_session(recorded, session_config(**config)),
                                 tools=tools, record=record)
        session = RealtimeSession(provider, url=url, api_key=api_key, options=options,
                                  connect=False)
    try:
        if not session.connected:
            session.connect()
        actions = plan(recording)
        answers = answer_times(recording.conversation)
        budget = answer_timeout * (len(answers) + 1) + (
            (actions[-1].at - actions[0].at) / speed if actions and math.isfinite(speed)
            else 0.0)
        problems = session.call(lambda: drive(session.aio, actions, answers, speed,
                                              answer_timeout), timeout=budget + 30)
    except BaseException:
        if own:
            session.close()
        raise
    return Replay(recording, session, problems)


# --- comparing runs ---------------------------------------------------------------------------

ASPECTS = ("user", "tool calls", "tool outputs", "reply")


def _canonical_arguments(text: Any) -> str:
    try:
        return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(text)


def _turns(df: pd.DataFrame) -> list[dict[str, list[str]]]:
    turns: list[dict[str, list[str]]] = []
    for row in df.itertuples(index=False):
        if row.role == "user" and row.type == "message":
            turns.append({"user": [str(row.text or "")], "tool calls": [], "tool outputs": [],
                          "reply": []})
        elif not turns:
            continue
        elif row.type == "function_call":
            turns[-1]["tool calls"].append(
                f"{row.tool_name}({_canonical_arguments(row.arguments)})")
        elif row.type == "function_call_output":
            turns[-1]["tool outputs"].append(str(row.output or ""))
        elif row.role == "assistant" and row.type == "message" and isinstance(row.text, str):
            turns[-1]["reply"].append(str(row.text))
    return turns


def _text(values: list[str] | None) -> str | None:
    return None if values is None else "\n".join(" ".join(v.split()) for v in values)


def diff(old: Any, new: Any, *, only_changed: bool = False) -> pd.DataFrame:
    """Two runs of a conversation side by side: one row per user turn and aspect (``user``
    text, ``tool calls`` with their arguments, ``tool outputs``, the ``reply``), with ``old``,
    ``new`` and whether it ``changed``. Arguments are compared as JSON (key order and spacing
    do not count); text with its whitespace collapsed. ``old`` and ``new`` are DataFrames or
    anything with a ``df`` (a session, a widget, a recording, a replay)."""
    old_turns = _turns(old if isinstance(old, pd.DataFrame) else old.df)
    new_turns = _turns(new if isinstance(new, pd.DataFrame) else new.df)
    rows = []
    for index in range(max(len(old_turns), len(new_turns))):
        before = old_turns[index] if index < len(old_turns) else None
        after = new_turns[index] if index < len(new_turns) else None
        for aspect in ASPECTS:
            a = _text(before[aspect]) if before is not None else None
            b = _text(after[aspect]) if after is not None else None
            rows.append((index, aspect, a, b, a != b))
    out = pd.DataFrame(rows, columns=["turn", "aspect", "old", "new", "changed"])
    out = out.astype({"turn": "Int64", "aspect": "string", "old": "string", "new": "string",
                      "changed": "bool"})
    return out[out["changed"]].reset_index(drop=True) if only_changed else out
