"""How well the offline reply engine answers everyday spoken questions: the question set of
``bench/questions.json`` (with its answer key) asked of the real SmolLM2 model, greedily so the
score repeats, with the prompt's example exchanges (``new``) and without them (``old``, the
prompt before they were added), on the tuning half and on the held-out half.

Each reply is judged right, wrong (on topic) or off-topic by the answer key (:func:`judge`);
tool questions are right when the engine calls the expected tool. Time to the first sentence
is measured per question (the prompts' shared beginning reused from the reply before, as in a
conversation) and the two prompts are run in turn, several rounds when not ``quick``, so a
busy machine slows both alike.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._util import table

QUESTIONS = Path(__file__).with_name("questions.json")
HALVES = ("tune", "held")
VERDICTS = ("right", "wrong", "off-topic")
PROMPTS = ("old", "new")


def load() -> dict[str, Any]:
    """The question set: ``tools`` by name and ``questions``, each with its ``half``."""
    data: dict[str, Any] = json.loads(QUESTIONS.read_text())
    return data


def judge(question: dict[str, Any], text: str, called: str | None) -> str:
    """``right``, ``wrong`` or ``off-topic`` for a reply (its words and the tool it called)."""
    if question.get("call"):
        return "right" if called == question["call"] else "wrong"
    if called:
        return "wrong"  # a tool called where words were wanted
    if any(re.search(p, text, re.I) for p in question["right"]):
        return "right"
    if any(re.search(p, text, re.I) for p in question["topic"]):
        return "wrong"
    return "off-topic"


@dataclass
class Answer:
    """One reply: its words, the tool it called, seconds to its first sentence."""

    text: str = ""
    called: str | None = None
    first_s: float | None = None
    usage: dict[str, int] = field(default_factory=dict)


async def _ask(engine: Any, question: dict[str, Any], tools: dict[str, Any]) -> Answer:
    from rtwidget.server.engines import HistoryTurn, ReplyContext, TextDelta, ToolCall

    context = ReplyContext(
        instructions="", history=[HistoryTurn("user", "message", question["ask"])],
        tools=[tools[name] for name in question.get("tools", ())], tool_choice="auto",
        max_output_tokens=None, temperature=0.0)
    answer = Answer()
    start = time.perf_counter()
    async for chunk in engine.reply(context):  # to the end: the model's thread finishes first
        if isinstance(chunk, TextDelta):
            if answer.first_s is None:
                answer.first_s = time.perf_counter() - start
            answer.text += chunk.text
        elif isinstance(chunk, ToolCall):
            answer.called = chunk.name
    if answer.called is None:
        answer.usage = dict(engine.last_usage)
    return answer


def ask_all(engine: Any, questions: list[dict[str, Any]],
            tools: dict[str, Any]) -> list[Answer]:
    """Each question asked on its own (a new conversation), in order."""
    return [asyncio.run(_ask(engine, q, tools)) for q in questions]


def tally(questions: list[dict[str, Any]], answers: list[Answer]) -> dict[str, int]:
    """How many replies were right, wrong and off-topic."""
    counts = dict.fromkeys(VERDICTS, 0)
    for question, answer in zip(questions, answers, strict=True):
        counts[judge(question, answer.text, answer.called)] += 1
    return counts


def run(quick: bool = False) -> dict[str, Any]:
    """Score both prompts on both halves; time each prompt's first sentences, the prompts run in
    turn (2 rounds, 1 when ``quick``)."""
    from rtwidget.server.llm import LlamaReplyEngine
    from rtwidget.server.reply_prompt import EXAMPLES

    data = load()
    questions = data["questions"]
    engine = LlamaReplyEngine()
    shots = {"old": (), "new": EXAMPLES}
    firsts: dict[str, list[float | None]] = {p: [] for p in PROMPTS}
    usage: dict[str, list[dict[str, int]]] = {p: [] for p in PROMPTS}
    out: dict[str, Any] = {"questions": {h: sum(q["half"] == h for q in questions)
                                         for h in HALVES}}
    try:
        for round_ in range(1 if quick else 2):
            for prompt in PROMPTS:
                engine.examples = shots[prompt]
                answers = ask_all(engine, questions, data["tools"])
                firsts[prompt] += [None if a.called else a.first_s  # the first fills the cache
                                   for a in answers[1:]]
                usage[prompt] += [a.usage for a in answers if a.usage]
                if round_:
                    continue  # greedy: the same replies every round
                out[prompt] = {half: tally(*zip(*[(q, a) for q, a in zip(
                    questions, answers, strict=True) if q["half"] == half], strict=True))
                    for half in HALVES}
                out[prompt]["replies"] = [
                    [q["ask"], a.called or a.text, judge(q, a.text, a.called)]
                    for q, a in zip(questions, answers, strict=True)]
    finally:
        engine.close()
    for prompt in PROMPTS:
        out[prompt]["first_sentence_s"] = statistics.median(
            t for t in firsts[prompt] if t is not None)
        out[prompt]["prompt_tokens"] = statistics.median(u["prompt_tokens"]
                                                         for u in usage[prompt])
        out[prompt]["new_prompt_tokens"] = statistics.median(
            u["prompt_tokens"] - u["cached_tokens"] for u in usage[prompt])
    out["first_sentence_ratio"] = statistics.median(
        n / o for o, n in zip(firsts["old"], firsts["new"], strict=True) if o and n)
    return out


def _score(counts: dict[str, int]) -> str:
    return " / ".join(str(counts[v]) for v in VERDICTS)


def report(results: dict[str, Any]) -> str:
    n = results["questions"]
    rows = [[f"{name} prompt ({'no examples' if name == 'old' else 'example exchanges'})",
             _score(results[name]["tune"]), _score(results[name]["held"]),
             f"{results[name]['prompt_tokens']:.0f} ({results[name]['new_prompt_tokens']:.0f})",
             f"{results[name]['first_sentence_s']:.2f} s"] for name in PROMPTS]
    rows.append(["new ÷ old, time to first sentence (median of per-question ratios)", "", "", "",
                 f"{results['first_sentence_ratio']:.2f}"])
    return table("Everyday questions to SmolLM2-135M (bench/questions.json, greedy)", [
        "prompt", f"tuning half ({n['tune']}): right / wrong / off-topic",
        f"held-out half ({n['held']}): right / wrong / off-topic",
        "prompt tokens (not cached)", "first sentence, median"], rows)
