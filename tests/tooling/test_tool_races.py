"""No races: 1,000 random interleavings of tool calls finishing, ``response.done``, typed turns
that interrupt or wait, spoken barge-ins, cancels and background results, against the local
server. After each session settles: every call answered at most once (a call the user talked
over is never answered), no response refused for another in progress, nothing in progress,
nothing waiting, and the newest turn answered."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import eventually, frames, utterance

import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine, ToolCall

SESSIONS = 40
STEPS = 25  # 40 x 25 = 1,000 interleavings, each step a random action at a random moment

RACE_RULES = [
    Rule(r"pair (?P<a>\d+) (?P<b>\d+)", calls=[("work", {"ms": "{a}"}), ("work", {"ms": "{b}"})]),
    Rule(r"same (?P<ms>\d+)", calls=[("work", {"ms": "{ms}"}), ("work", {"ms": "{ms}"})]),
    Rule(r"story", say=" ".join(f"Part {i} of the story." for i in range(12))),
]


class RoutedEngine(ScriptedReplyEngine):
    """The rules, and ``run <tool> <ms>`` calls that tool (a rule's tool name is fixed)."""

    def plan(self, context: Any) -> list[Any]:
        chunks = super().plan(context)
        user = context.last_user()
        match = re.search(r"run (\w+) (\d+)", user.text if user else "")
        if match and context.last is not None and context.last.role == "user":
            return [ToolCall(match.group(1), f'{{"ms": {match.group(2)}}}')]
        return chunks


@pytest.fixture(scope="module")
def race_server() -> Iterator[LocalServer]:
    with LocalServer(engine=RoutedEngine(rules=RACE_RULES), pace=0.001) as srv:
        yield srv


def make_tools() -> list[rt.Tool]:
    async def work(ms: int) -> str:
        """Async work."""
        await asyncio.sleep(ms / 1000)
        return f"worked {ms}"

    def grind(ms: int, ctx: rt.CallContext) -> str:
        """Sync work that polls its cancel flag."""
        ctx.wait(ms / 1000)
        return f"ground {ms}"

    async def steps(ms: int) -> Any:
        """Async generator work."""
        for i in range(3):
            await asyncio.sleep(ms / 3000)
            yield i / 3
        yield f"stepped {ms}"

    def report(ms: int) -> str:
        """Background work."""
        time.sleep(ms / 1000)
        return f"reported {ms}"

    return [rt.build_tool(work), rt.build_tool(grind), rt.build_tool(steps),
            rt.build_tool(report, background=True),
            rt.build_tool(report, name="quiet", background=True, deliver="silent"),
            rt.build_tool(report, name="urgent", background=True, deliver="interrupt"),
            rt.build_tool(work, name="stubborn", cancel_on_interruption=False)]


TOOLS = ["work", "grind", "steps", "report", "quiet", "urgent", "stubborn"]
SPEECH = frames(utterance("wait a moment"))


def act(s: rt.RealtimeSession, rng: random.Random) -> None:
    roll = rng.random()
    ms = rng.choice([0, 5, 20, 60, 150, 400])
    if roll < 0.40:
        s.say(f"run {rng.choice(TOOLS)} {ms}", interrupt=rng.random() < 0.5)
    elif roll < 0.50:
        s.say(f"pair {ms} {rng.choice([0, 30, 200])}", interrupt=rng.random() < 0.5)
    elif roll < 0.55:
        s.say(f"same {ms}", interrupt=False)
    elif roll < 0.65:
        s.say("Tell me a story.", interrupt=rng.random() < 0.5)
    elif roll < 0.75:
        s.say("Hello there.", interrupt=rng.random() < 0.5)
    elif roll < 0.85:
        running = s.running_tools
        if running:
            s.cancel_tool(rng.choice(running))
    elif roll < 0.90:
        for frame in SPEECH:  # a spoken barge-in, through the server's VAD
            s.send_audio(frame)
    time.sleep(rng.choice([0, 0, 0.005, 0.02, 0.08]))


def settled(s: rt.RealtimeSession) -> bool:
    floor = s.aio.turns.floor
    return (not s.running_tools and not floor.busy and not floor.waiting
            and all(r.status != "in_progress" for r in s.conversation.responses.values()))


def check(s: rt.RealtimeSession) -> None:
    conversation = s.conversation
    items = list(conversation)
    calls = [i for i in items if i.type == "function_call" and i.call_id]
    for call in calls:
        outputs = [i for i in items if i.type == "function_call_output"
                   and i.call_id == call.call_id]
        assert len(outputs) <= 1, f"{call.name} answered {len(outputs)} times"
        state = conversation.tool_outcomes.get(call.call_id, {})
        if not outputs and call.status == "completed":
            # never answered: only a call the user talked over, or one still being made
            assert state.get("status") == "cancelled", (call.name, state)
    # what reaches the user: errors the floor did not handle as a race
    floor = s.aio.turns.floor
    shown = [e for e in s.aio.conversation.log if e.type == "error"
             and not floor.absorbed(e.payload)]
    assert not shown, [e.payload for e in shown]
    # the newest turn was answered: a reply to it ended (not in progress, not waiting)
    users = [i for i in items if i.role == "user" and i.type == "message"]
    if users:
        last = users[-1]
        later = [r for r in conversation.responses.values()
                 if not r.out_of_band and r.created_at >= last.created_at]
        assert later and all(r.status != "in_progress" for r in later)


def test_a_thousand_random_interleavings_leave_no_session_stuck(race_server) -> None:
    rng = random.Random(31)
    for n in range(SESSIONS):
        with rt.RealtimeSession("local", url=race_server.url, tools=make_tools(),
                                output_modalities=rng.choice([["text"], ["audio"]]),
                                filler_after=rng.choice([None, 0.05])) as s:
            for _ in range(STEPS):
                act(s, rng)
            s.say("Hello there.", interrupt=False)  # the last word is the user's
            eventually(lambda s=s: settled(s), timeout=30, what=f"session {n} settling")
            time.sleep(0.05)  # background results that were due
            eventually(lambda s=s: settled(s), timeout=30, what=f"session {n} settling")
            check(s)
