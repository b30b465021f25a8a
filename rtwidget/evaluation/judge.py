"""An LLM judge: a rubric, the conversation as text, and a verdict with its reason, through any
provider rtwidget speaks (the embedded local server when none is set).

The judge is asked to begin its answer with PASS or FAIL; the first of those words it writes is
the verdict, the rest the reason. An answer with neither is ``None`` (undecided), which fails
the conversation: a judge that cannot say is no evidence it passed. SmolLM2-135M, the local
server's model, follows the format but its verdicts are close to chance: use it to try the
plumbing, and a hosted model to judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..client.providers import resolve
from ..client.session import AsyncRealtimeSession
from ..protocol.errors import ConfigError


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: ``passed`` (``None`` when it gave no verdict) and its reason."""

    passed: bool | None
    reason: str


def transcript_text(df: pd.DataFrame) -> str:
    """The conversation as lines a judge reads: who said what, and each tool call."""
    lines = []
    for _, row in df.iterrows():
        if row["type"] == "function_call":
            lines.append(f"[tool call] {row['tool_name']}({row['arguments']})")
        elif row["type"] == "function_call_output":
            lines.append(f"[tool result] {row['output']}")
        elif row["type"] == "message" and not pd.isna(row["text"]):
            lines.append(f"{'Caller' if row['role'] == 'user' else 'Agent'}: {row['text']}")
    return "\n".join(lines)


def parse_verdict(text: str) -> Verdict:
    """The verdict in a judge's answer (see the module docs)."""
    found = re.search(r"\b(PASS|FAIL)\b", text, re.IGNORECASE)
    if found is None:
        return Verdict(None, text.strip()[:500])
    reason = (text[:found.start()] + text[found.end():]).strip(" :.-\n")
    return Verdict(found.group(1).upper() == "PASS", reason[:500])


@dataclass(frozen=True)
class Judge:
    """Grades each conversation against ``rubric``; ``provider``/``url``/``model`` as for a
    session, ``temperature`` passed through where the provider takes one (the local server,
    Inworld). Its verdict goes in ``run.df["judge"]`` and its reason in ``judge_reason``."""

    rubric: str
    provider: str | None = None
    url: str | None = None
    model: str | None = None
    temperature: float | None = 0.0
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.rubric, str) or not self.rubric.strip():
            raise ConfigError("a judge needs a rubric: what a good conversation does")

    async def judge(self, conversation: str, goal: str = "") -> Verdict:
        """The verdict on one conversation (its text, see :func:`transcript_text`)."""
        endpoint = resolve(self.provider, url=self.url)
        settings: dict[str, Any] = {
            "instructions": "You grade conversations between a caller and a voice agent. "
                            "Begin your answer with PASS or FAIL, then give the reason in one "
                            "sentence.",
            "output_modalities": ["text"], "run_tools": False, "reconnect": False}
        if self.model:
            settings["model"] = self.model
        if self.temperature is not None and endpoint.provider != "openai":
            settings["temperature"] = self.temperature
        question = (f"Rubric: {self.rubric}\n" + (f"The caller's goal: {goal}\n" if goal else "")
                    + f"Conversation:\n{conversation or '(nothing was said)'}\n"
                    "Does the agent meet the rubric? PASS or FAIL, then why.")
        try:
            async with AsyncRealtimeSession(endpoint, **settings) as session:
                return parse_verdict(await session.ask(question, timeout=self.timeout))
        except Exception as exc:  # no verdict, and why
            return Verdict(None, f"the judge failed: {type(exc).__name__}: {exc}")
