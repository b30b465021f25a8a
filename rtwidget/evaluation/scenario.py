"""Scenarios: one caller each — scripted turns (with branches on what the agent said and
interruptions), a simulated user driven by a language model, or the user's side of a recording.

>>> weather = rt.Scenario("weather", user=["What is the weather in Paris?", "Thanks, bye."],
...                       checks=[rt.checks.tool_called("get_weather", {"city": "Paris"})])
... # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol.errors import ConfigError
from .checks import Check


@dataclass(frozen=True)
class Interrupt:
    """Speak ``text`` over the agent's reply once ``after_ms`` of its audio has played (a
    barge-in); in ``mode="text"`` it is typed over the reply instead."""

    text: str
    after_ms: int = 600


@dataclass(frozen=True)
class Branch:
    """The next turn chosen by what the agent just said: the first pattern of ``on`` (a regular
    expression, searched case-insensitively) found in its last reply gives the turn (text, an
    :class:`Interrupt`, or a list of turns); else ``default`` (``None``: the caller hangs up)."""

    on: Mapping[str, Any]
    default: Any = None

    def choose(self, agent_said: str) -> list[Any]:
        for pattern, turns in self.on.items():
            if re.search(pattern, agent_said, re.IGNORECASE):
                return _as_list(turns)
        return _as_list(self.default)


def _as_list(turns: Any) -> list[Any]:
    if turns is None:
        return []
    return list(turns) if isinstance(turns, (list, tuple)) else [turns]


@dataclass(frozen=True)
class SimulatedUser:
    """A caller played by a language model with a ``persona`` and the scenario's ``goal``,
    through any provider rtwidget speaks (``provider``/``url``/``model`` as for a session; the
    embedded local server when none is set). It sees the conversation so far and writes the
    caller's next line; a line with ``done_word`` in it ends the call.

    The local server's SmolLM2-135M can play a caller only loosely: it writes short, plausible
    lines, but drifts from the goal after a turn or two and rarely says when it is done, so
    ``max_turns`` is what ends most of its calls. Use a hosted model for goal-directed callers.
    """

    persona: str = "a customer calling a voice assistant"
    provider: str | None = None
    url: str | None = None
    model: str | None = None
    temperature: float = 0.0
    opening: str | None = None
    done_word: str = "GOODBYE"

    def prompt(self, goal: str) -> str:
        return (f"You are {self.persona}, talking to a voice assistant on the phone. Your goal: "
                f"{goal or 'have a short conversation'}. Reply with the one short sentence you "
                f"say next, nothing else. When your goal is met, say {self.done_word}.")


User = Sequence[Any] | SimulatedUser | Callable[[str, int], Any]


@dataclass
class Scenario:
    """One caller: ``user`` is a list of turns (text, :class:`Interrupt`, :class:`Branch`), a
    :class:`SimulatedUser`, or a function ``(agent_said, turn) -> text or None``; ``goal``
    tells a simulated user and the judge what the caller wants; ``checks`` read the finished
    conversation (see :mod:`rtwidget.evaluation.checks`); ``max_turns`` bounds the caller's
    turns (and fails the conversation if a scripted caller still had more to say);
    ``voice`` is the caller's voice (a Flite voice, ``espeak`` or ``espeak:<voice>``)."""

    name: str
    user: Any = ()
    goal: str = ""
    checks: Sequence[Check] = ()
    max_turns: int = 10
    voice: str = "slt"
    tags: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a scenario needs a name, got {self.name!r}")
        if not isinstance(self.max_turns, int) or not 1 <= self.max_turns <= 200:
            raise ConfigError(f"max_turns must be an int in 1..200, got {self.max_turns!r}")
        if isinstance(self.user, str):
            self.user = [self.user]
        if not isinstance(self.user, (list, tuple, SimulatedUser)) and not callable(self.user):
            raise ConfigError("user must be a list of turns, a SimulatedUser or a function, "
                              f"got {type(self.user).__name__}")
        if isinstance(self.user, (list, tuple)):
            for turn in self.user:
                if not isinstance(turn, (str, Interrupt, Branch)):
                    raise ConfigError(f"scenario {self.name!r}: a turn must be text, an "
                                      f"Interrupt or a Branch, got {type(turn).__name__}")
        for check in self.checks:
            if not isinstance(check, Check):
                raise ConfigError(f"scenario {self.name!r}: {check!r} is not a check; wrap a "
                                  "function with rt.checks.check(fn)")

    @classmethod
    def from_recording(cls, path: str | Path, name: str | None = None,
                       **settings: Any) -> Scenario:
        """A scripted scenario from the user's turns of a recording (their transcripts, or
        the text they typed), in order; ``settings`` are the other fields."""
        from ..recording.reader import load_recording

        frame = load_recording(path).df
        users = frame[(frame["role"] == "user") & (frame["type"] == "message")]
        turns = [str(text) for text in users["text"].dropna() if str(text).strip()]
        if not turns:
            raise ConfigError(f"the recording {path} has no user turn with words in it")
        return cls(name or Path(path).name, user=turns, **settings)
