"""A finished evaluation run as DataFrames: ``df`` one row per conversation, ``turns`` one row
per caller turn, ``checks`` one row per check of each conversation; each conversation's
recording to play, replay and ``diff``.

``df``'s timing columns (``TIMING_COLUMNS``: latencies and wall time) are measured on the
clock and differ from run to run; :meth:`EvalRun.repeatable` is the rest, which the local
server reproduces exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..protocol.audio import SAMPLE_RATE
from ..protocol.errors import NotFound
from .caller import Outcome
from .checks import Transcript

if TYPE_CHECKING:
    from ..recording.reader import Recording
    from ..recording.replay import Replay

TIMING_COLUMNS = ("latency_p50_s", "latency_p95_s", "wall_s", "recording")
"""Columns of ``run.df`` that depend on the clock (or the folder), not on the conversation."""


def _percentile(values: list[float], q: float) -> float:
    good = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.percentile(good, q)) if good else math.nan


class EvalRun:
    """The conversations of one :meth:`EvalSuite.run` (``suite``), in scenario-then-repeat
    order."""

    def __init__(self, suite: Any, agent: dict[str, Any], outcomes: list[Outcome], *,
                 mode: str, folder: Path, wall_s: float) -> None:
        self.suite, self.agent, self.outcomes = suite, agent, outcomes
        self.mode, self.folder, self.wall_s = mode, folder, wall_s
        by_name = {s.name: s for s in suite.scenarios}
        rows, checks, turns = [], [], []
        for i, outcome in enumerate(outcomes):
            scenario = by_name[outcome.scenario]
            latencies = [t.get("latency_s") for t in outcome.turns]
            transcript = Transcript(outcome.df, outcome.errors, len(outcome.turns),
                                    [math.nan if v is None else v for v in latencies])
            row: dict[str, Any] = {"conversation": i, "scenario": outcome.scenario,
                                   "repeat": outcome.repeat}
            results = {}
            for check in scenario.checks:
                passed, reason = check(transcript)
                results[check.name] = passed
                checks.append({"conversation": i, "scenario": outcome.scenario,
                               "repeat": outcome.repeat, "check": check.name,
                               "passed": passed, "reason": reason})
            verdict = outcome.verdict
            judged = [] if verdict is None else [verdict.passed is True]
            row["passed"] = all(results.values()) and not outcome.problems and all(judged)
            row.update(results)
            if verdict is not None:
                row["judge"], row["judge_reason"] = verdict.passed, verdict.reason
            df = outcome.df
            row["turns"] = len(outcome.turns)
            row["tool_calls"] = int((df["type"] == "function_call").sum())
            row["interrupted"] = outcome.interrupted
            row["tokens"] = int(df["total_tokens"].fillna(0).sum())
            row["errors"] = len(outcome.errors)
            row["problems"] = "; ".join(outcome.problems)
            row["latency_p50_s"] = _percentile(latencies, 50)  # type: ignore[arg-type]
            row["latency_p95_s"] = _percentile(latencies, 95)  # type: ignore[arg-type]
            row["wall_s"] = outcome.wall_s
            row["recording"] = outcome.recording
            rows.append(row)
            for n, turn in enumerate(outcome.turns):
                turns.append({"conversation": i, "scenario": outcome.scenario,
                              "repeat": outcome.repeat, "turn": n, "kind": turn["kind"],
                              "user": turn["user"], "heard": turn.get("heard"),
                              "latency_s": turn.get("latency_s")})
        self.df = pd.DataFrame(rows)
        self.checks = pd.DataFrame(checks, columns=["conversation", "scenario", "repeat",
                                                    "check", "passed", "reason"])
        self.turns = pd.DataFrame(turns, columns=["conversation", "scenario", "repeat", "turn",
                                                  "kind", "user", "heard", "latency_s"])

    def __repr__(self) -> str:
        return (f"<EvalRun: {len(self.df)} conversations, pass rate "
                f"{self.pass_rate():.0%}, {self.wall_s:.1f} s>")

    def repeatable(self) -> pd.DataFrame:
        """``df`` without the columns measured on the clock (see ``TIMING_COLUMNS``)."""
        return self.df.drop(columns=[c for c in TIMING_COLUMNS if c in self.df.columns])

    def pass_rate(self, scenario: str | None = None, check: str | None = None) -> float:
        """The share of conversations that passed (of ``scenario`` only, if given), or that
        passed ``check``."""
        if check is not None:
            rows = self.checks[self.checks["check"] == check]
            if scenario is not None:
                rows = rows[rows["scenario"] == scenario]
            values = rows["passed"]
        else:
            rows = self.df if scenario is None else self.df[self.df["scenario"] == scenario]
            values = rows["passed"] if len(rows) else pd.Series(dtype=bool)
        if not len(values):
            raise NotFound(f"no conversation of scenario {scenario!r} / check {check!r}")
        return float(values.astype(bool).mean())

    def failed(self) -> pd.DataFrame:
        """The conversations that did not pass."""
        return self.df[~self.df["passed"].astype(bool)]

    def recording(self, i: int) -> Recording:
        """Conversation ``i``'s recording, loaded."""
        from ..recording.reader import load_recording

        path = self.df.loc[i, "recording"] if 0 <= i < len(self.df) else None
        if not isinstance(path, str):
            raise NotFound(f"conversation {i} has no recording")
        return load_recording(path)

    def conversation(self, i: int) -> pd.DataFrame:
        """Conversation ``i`` as its DataFrame (``rtwidget.COLUMNS``)."""
        return self.outcomes[i].df

    def audio(self, i: int, gap_ms: int = 300) -> bytes:
        """Conversation ``i`` as one PCM16 24 kHz track: each item's audio in order (the
        caller's turns as the server heard them, the agent's replies as received)."""
        recording = self.recording(i)
        gap = bytes(SAMPLE_RATE * gap_ms // 1000 * 2)
        parts = [recording.audio(n) for n in range(len(recording.conversation))]
        return gap.join(p for p in parts if p)

    def play(self, i: int) -> Any:
        """An inline player (``IPython.display.Audio``) for conversation ``i``."""
        from IPython.display import Audio

        from ..protocol.record_format import wav_bytes

        pcm = self.audio(i)
        if not pcm:
            raise NotFound(f"conversation {i} has no audio (mode='text'?): see "
                           f"run.conversation({i})")
        return Audio(data=wav_bytes(pcm), autoplay=False)

    def replay(self, i: int, **options: Any) -> Replay:
        """Send the caller's side of conversation ``i`` again, with the run's tools and
        endpoint unless ``options`` say otherwise (see :meth:`rtwidget.Recording.replay`)."""
        import math as _math

        for key in ("provider", "url", "tools"):
            if key in self.agent:
                options.setdefault(key, self.agent[key])
        options.setdefault("speed", _math.inf)
        return self.recording(i).replay(**options)
