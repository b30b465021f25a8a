"""Rule checks that read a finished conversation: a tool was called (with arguments matching
a dict, a predicate or a JSON Schema), words said or never said, no ``error`` event, at most N
turns, a latency budget per turn, or any plain function of the conversation's DataFrame.

Each check is a :class:`Check`: a name (the column it gets in ``run.df``) and a function of a
:class:`Transcript` that returns whether it passed, with a reason.

>>> checks = [rt.checks.tool_called("get_weather", {"city": "Paris"}),
...           rt.checks.said("sunny"), rt.checks.no_errors(),
...           rt.checks.check(lambda df: len(df) < 20, name="short")]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..protocol.errors import ConfigError


@dataclass
class Transcript:
    """What a check reads: the conversation's DataFrame (``rtwidget.COLUMNS``), its ``error``
    events, the caller's turns and each turn's latency (seconds from the end of the caller's
    turn to the agent's first reply delta)."""

    df: pd.DataFrame
    errors: list[dict[str, Any]] = field(default_factory=list)
    user_turns: int = 0
    latencies: list[float] = field(default_factory=list)

    def agent_text(self) -> str:
        rows = self.df[(self.df["role"] == "assistant") & (self.df["type"] == "message")]
        return "\n".join(str(t) for t in rows["text"].dropna())

    def calls(self, name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        rows = self.df[self.df["type"] == "function_call"]
        found = []
        for tool, args in zip(rows["tool_name"], rows["arguments"], strict=True):
            if name is not None and tool != name:
                continue
            try:
                parsed = json.loads(args) if isinstance(args, str) and args else {}
            except ValueError:
                parsed = {"_unparsed": args}
            found.append((str(tool), parsed if isinstance(parsed, dict) else {"_value": parsed}))
        return found


Outcome = tuple[bool, str]


@dataclass(frozen=True)
class Check:
    """A named rule: ``fn(transcript) -> (passed, reason)``."""

    name: str
    fn: Callable[[Transcript], Outcome]

    def __call__(self, transcript: Transcript) -> Outcome:
        try:
            passed, reason = self.fn(transcript)
        except Exception as exc:  # a user's check that raises fails, and says why
            return False, f"the check raised {type(exc).__name__}: {exc}"
        return bool(passed), str(reason)


def _matches(args: dict[str, Any], want: Any) -> bool:
    if want is None:
        return True
    if callable(want):
        return bool(want(args))
    if isinstance(want, Mapping) and ("properties" in want or want.get("type") == "object"):
        try:
            import jsonschema  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigError("matching arguments against a JSON Schema needs jsonschema "
                              "(pip install jsonschema)") from None
        return jsonschema.Draft202012Validator(dict(want)).is_valid(args)
    if isinstance(want, Mapping):
        return all(_same(args.get(k), v) for k, v in want.items())
    raise ConfigError(f"args must be a dict, a predicate or a JSON Schema, got {want!r}")


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return got.strip().casefold() == want.strip().casefold()
    return bool(got == want)


def tool_called(name: str, args: Any = None, *, times: int | None = None) -> Check:
    """``name`` was called (``times`` times exactly, if given) with arguments matching ``args``:
    a dict (those keys equal; strings compared without case), a predicate of the arguments'
    dict, or a JSON Schema (an object schema; needs ``jsonschema``)."""

    def run(t: Transcript) -> Outcome:
        calls = t.calls(name)
        good = [a for _, a in calls if _matches(a, args)]
        if times is not None:
            return len(good) == times, f"{len(good)} matching call(s) of {name}, {times} wanted"
        if good:
            return True, f"{name}({json.dumps(good[0], sort_keys=True)})"
        if calls:
            return False, f"{name} called with {[a for _, a in calls]}, not matching {args!r}"
        return False, f"{name} was not called"

    return Check(f"tool:{name}", run)


def _pattern(words: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(words) + r"\b", re.IGNORECASE)


def said(*words: str) -> Check:
    """The agent said each of ``words`` (whole words, any case) somewhere in its replies."""

    def run(t: Transcript) -> Outcome:
        text = t.agent_text()
        missing = [w for w in words if not _pattern(w).search(text)]
        return not missing, f"never said {missing}" if missing else "said all"

    return Check("said:" + "|".join(words), run)


def never_said(*words: str) -> Check:
    """The agent said none of ``words`` (whole words, any case)."""

    def run(t: Transcript) -> Outcome:
        text = t.agent_text()
        found = [w for w in words if _pattern(w).search(text)]
        return not found, f"said {found}" if found else "said none"

    return Check("never_said:" + "|".join(words), run)


def no_errors() -> Check:
    """No ``error`` event came from the server, and no row of the conversation has an error
    (a failed tool, transcription or reply)."""

    def run(t: Transcript) -> Outcome:
        rows = t.df["error"].dropna()
        problems = [str(e.get("message", e)) for e in t.errors] + [str(e) for e in rows]
        return not problems, "; ".join(problems[:3]) or "no errors"

    return Check("no_errors", run)


def max_turns(n: int) -> Check:
    """The caller took at most ``n`` turns."""

    def run(t: Transcript) -> Outcome:
        return t.user_turns <= n, f"{t.user_turns} turns"

    return Check(f"max_turns:{n}", run)


def latency_budget(seconds: float) -> Check:
    """Every turn's first reply came within ``seconds`` of the end of the caller's turn (a
    turn with no reply fails it)."""

    def run(t: Transcript) -> Outcome:
        slow = [round(x, 3) for x in t.latencies if not x <= seconds]
        return not slow, f"slow turns: {slow}" if slow else f"all within {seconds:g} s"

    return Check(f"latency<={seconds:g}s", run)


def check(fn: Callable[[pd.DataFrame], Any], name: str | None = None) -> Check:
    """A check of your own: ``fn(df)`` on the conversation's DataFrame returns a bool, or
    ``(bool, reason)``."""

    def run(t: Transcript) -> Outcome:
        result = fn(t.df)
        if isinstance(result, tuple):
            return bool(result[0]), str(result[1])
        return bool(result), ""

    return Check(str(name or getattr(fn, "__name__", "check")), run)
