"""One conversation of an evaluation: the caller's turns sent to the agent — spoken through the
same path as a microphone (PCM16 24 kHz frames appended to the input buffer, the server's VAD
ending the turn, its transcriber hearing it) or typed in ``mode="text"`` — and what came back.

Spoken audio is pushed as fast as the connection takes it, not at the speed of speech: the
local server runs its VAD and transcriber on the audio's own clock (the ms appended), so what
they hear does not depend on how fast it arrives. A caller waits between turns for the agent's
answer (a response that calls no tool, or one cut short), as a person on the phone would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..client.providers import resolve
from ..client.session import AsyncRealtimeSession
from ..protocol.audio import BYTES_PER_MS
from ..recording.replay import answer_times
from .judge import Judge, Verdict, transcript_text
from .scenario import Branch, Interrupt, Scenario, SimulatedUser
from .voices import frames, silence, speak

TRAILING_SILENCE_MS = 1200
"""Silence after each spoken turn: more than server VAD's silence to end a turn."""

ENDPOINT_KEYS = ("provider", "url", "api_key")


@dataclass
class Outcome:
    """What one conversation left: its DataFrame, ``error`` events, the caller's turns (with
    the agent's answer and the latency of each), tokens, the recording folder, what did not
    go as planned (``problems``) and the judge's verdict."""

    scenario: str
    repeat: int
    df: pd.DataFrame
    errors: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    recording: str | None = None
    problems: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    wall_s: float = 0.0
    interrupted: int = 0
    index: int = -1


class Caller:
    """Plays one scenario on an open session."""

    def __init__(self, session: AsyncRealtimeSession, scenario: Scenario, mode: str,
                 answer_timeout: float) -> None:
        self.session = session
        self.scenario = scenario
        self.mode = mode
        self.answer_timeout = answer_timeout
        self.sent_ms = 0  # the input-audio clock, as the server counts it
        self.turns: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.interrupted = 0

    # --- waiting -------------------------------------------------------------------------------

    def _answers(self, since: int = 0) -> int:
        return len(answer_times(self.session.conversation, since))

    def _responses(self) -> int:
        return len(self.session.conversation.responses)

    def _replying(self) -> bool:
        return any(r.status == "in_progress"
                   for r in list(self.session.conversation.responses.values()))

    async def _until(self, condition: Any, what: str) -> bool:
        deadline = time.monotonic() + self.answer_timeout
        while not condition():
            if time.monotonic() > deadline or self.session.closed:
                self.problems.append(f"{what} did not happen within {self.answer_timeout:g} s")
                return False
            await asyncio.sleep(0.01)
        return True

    async def _answered(self, since: int) -> bool:
        """Until a response created from index ``since`` on has answered, and none is going."""
        return await self._until(lambda: self._answers(since) > 0 and not self._replying(),
                                 "the agent's answer")

    def last_answer(self) -> str:
        df = self.session.df
        rows = df[(df["role"] == "assistant") & (df["type"] == "message")]["text"].dropna()
        return str(rows.iloc[-1]) if len(rows) else ""

    # --- turns ---------------------------------------------------------------------------------

    def _push(self, pcm: bytes) -> None:
        for frame in frames(pcm):
            self.session.send_audio(frame)
            self.sent_ms += len(frame) // BYTES_PER_MS

    async def _send(self, text: str) -> None:
        if self.mode == "text":
            await self.session.say(text, interrupt=False)
            return
        self._push(speak(text, self.scenario.voice) + silence(TRAILING_SILENCE_MS))
        await asyncio.sleep(0)

    async def turn(self, text: str, wait: bool = True) -> None:
        """One caller turn; with ``wait`` it returns once the agent has answered, else once its
        answer has begun (an :class:`Interrupt` comes next)."""
        responses, started = self._responses(), time.monotonic()
        await self._send(text)
        if wait:
            await self._answered(responses)
        else:
            await self._until(lambda: self._responses() > responses, "the agent's reply")
        self.turns.append({"user": text, "kind": "turn", "wall_s": time.monotonic() - started})

    def _speaking_item(self) -> Any:
        conversation = self.session.conversation
        for item in reversed(list(conversation)):
            if item.role == "assistant" and item.type == "message":
                return item
        return None

    async def interrupt(self, step: Interrupt) -> None:
        """Speak (or type) over the reply once ``step.after_ms`` of its audio has come, then
        report where the caller's "player" stopped: the session's barge-in rule cancels the
        reply and cuts the item there."""
        before = self._answers()
        want = step.after_ms * BYTES_PER_MS

        def reached() -> bool:
            item = self._speaking_item()
            return self._answers() > before or (
                item is not None and item.status == "in_progress" and item.audio_out_bytes >= want)

        started = time.monotonic()
        await self._until(reached, f"{step.after_ms} ms of the reply's audio")
        item = self._speaking_item()
        live = item is not None and item.status == "in_progress" and self._answers() == before
        played = float(step.after_ms)
        # the answer to the interruption is a response created after this point: the cut
        # reply's own end, and a quick agent's whole answer, may come in either order
        responses = self._responses()
        if self.mode == "text":
            if live:
                await self.session.playback_stopped(item.id, played)
            await self.session.say(step.text, interrupt=False)
        else:
            start_ms = self.sent_ms
            heard = self.session.expect("input_audio_buffer.speech_started",
                                        timeout=self.answer_timeout)
            self._push(speak(step.text, self.scenario.voice) + silence(TRAILING_SILENCE_MS))
            try:
                event = await heard
            except Exception:
                event = {}
                self.problems.append("the interruption was not heard")
            if live and event:
                # the caller heard the reply until its own speech began, on the audio clock;
                # the server's VAD cancels the reply itself (interrupt_response), so the cancel
                # is only ours if the reply is still going once that has had its chance
                played += max(0, int(event.get("audio_start_ms", start_ms)) - start_ms)
                await self._until(lambda: not self._replying(), "the reply's end")
                await self.session.playback_stopped(item.id, played,
                                                    cancel=self._replying())
        if live:
            self.interrupted += 1
        else:
            self.problems.append(f"the reply ended before {step.after_ms} ms: nothing to "
                                 "interrupt")
        await self._answered(responses)
        self.turns.append({"user": step.text, "kind": "interrupt",
                           "wall_s": time.monotonic() - started})


async def _simulated_lines(user: SimulatedUser, goal: str, caller: Caller,
                           max_turns: int) -> None:
    endpoint = resolve(user.provider, url=user.url)
    settings: dict[str, Any] = {"instructions": user.prompt(goal),
                                "output_modalities": ["text"], "run_tools": False}
    if user.model:
        settings["model"] = user.model
    if endpoint.provider == "local":
        settings["temperature"] = user.temperature
    async with AsyncRealtimeSession(endpoint, **settings) as mind:
        heard = "Hello, how can I help you?"
        for n in range(max_turns):
            line = user.opening if n == 0 and user.opening else \
                (await mind.ask(heard, timeout=caller.answer_timeout)).strip()
            done = user.done_word.lower() in line.lower()
            line = line.replace(user.done_word, "").strip(" .,!")
            if line:
                await caller.turn(line)
            if done or not line:
                return
            heard = caller.last_answer() or "(silence)"


async def play(caller: Caller) -> None:
    """The scenario's caller, turn by turn, up to ``max_turns``."""
    scenario = caller.scenario
    user = scenario.user
    if isinstance(user, SimulatedUser):
        await _simulated_lines(user, scenario.goal, caller, scenario.max_turns)
        return
    if callable(user) and not isinstance(user, (list, tuple)):
        for n in range(scenario.max_turns):
            line = user(caller.last_answer(), n)
            if not line:
                return
            await caller.turn(str(line))
        return
    steps = list(user)
    taken = 0
    while steps:
        if taken >= scenario.max_turns:
            caller.problems.append(f"max_turns ({scenario.max_turns}) reached with "
                                   f"{len(steps)} turn(s) left")
            return
        step = steps.pop(0)
        if isinstance(step, Branch):
            steps[:0] = step.choose(caller.last_answer())
            continue
        if isinstance(step, Interrupt) and taken:
            await caller.interrupt(step)
        else:
            text = step.text if isinstance(step, Interrupt) else str(step)
            await caller.turn(text, wait=not (steps and isinstance(steps[0], Interrupt)))
        taken += 1


def agent_settings(agent: dict[str, Any], mode: str) -> tuple[Any, dict[str, Any]]:
    """The endpoint and session settings of an agent configuration (as a chat takes: the
    ``instructions``, ``tools``, ``model``, ``provider``...), with what an evaluation needs:
    server VAD (its end of turn depends on the audio alone, not on how fast the transcriber
    keeps up), the caller's words transcribed, greedy decoding on the local server, and no
    filler while a tool runs (whether one is said depends on the clock, so a run would not
    repeat; an agent that sets ``filler_after`` has them)."""
    config = {k: v for k, v in agent.items() if k not in ENDPOINT_KEYS}
    endpoint = resolve(agent.get("provider"), url=agent.get("url"),
                       api_key=agent.get("api_key"))
    if mode == "spoken":
        config.setdefault("turn_detection", "server_vad")
        config.setdefault("transcription", {"model": "whisper-1"})
    if endpoint.provider == "local":
        config.setdefault("temperature", 0.0)
    config.setdefault("reconnect", False)
    config.setdefault("filler_after", None)
    return endpoint, config


async def converse(scenario: Scenario, agent: dict[str, Any], *, repeat: int = 0,
                   mode: str = "spoken", record: Path | None = None,
                   judge: Judge | None = None, answer_timeout: float = 60.0) -> Outcome:
    """Run one conversation of ``scenario`` with ``agent`` and return its :class:`Outcome`;
    a failure becomes a problem in it, never an exception (the run goes on)."""
    started = time.monotonic()
    endpoint, config = agent_settings(agent, mode)
    if record is not None:
        config["record"] = record
    session = AsyncRealtimeSession(endpoint, **config)
    caller = Caller(session, scenario, mode, answer_timeout)
    try:
        await session.connect()
        await play(caller)
    except Exception as exc:  # the conversation fails; the run goes on
        caller.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        await session.close()
    df = session.df
    users = df[(df["role"] == "user") & (df["type"] == "message")]
    for turn, (_, row) in zip(caller.turns, users.iterrows(), strict=False):
        turn["heard"] = None if pd.isna(row["text"]) else str(row["text"])
        turn["latency_s"] = None if pd.isna(row["response_s"]) else float(row["response_s"])
    outcome = Outcome(scenario.name, repeat, df,
                      errors=[{"type": e.type, "code": e.code, "message": e.message,
                               "param": e.param} for e in session.errors],
                      turns=caller.turns, problems=caller.problems,
                      recording=str(session.recording) if session.recording else None,
                      interrupted=caller.interrupted)
    if judge is not None:
        outcome.verdict = await judge.judge(transcript_text(df), scenario.goal)
    outcome.wall_s = time.monotonic() - started
    return outcome
