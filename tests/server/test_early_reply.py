"""A reply begun before its turn ends (:mod:`rtwidget.server.early_reply`): it writes what the
engine writes, hands on the engine's error, stops the engine when cancelled, and is matched to
a response only by what the reply depends on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from rtwidget.server.early_reply import EarlyReply, context_key
from rtwidget.server.engines import (
    HistoryTurn,
    ReplyChunk,
    ReplyContext,
    ScriptedReplyEngine,
    TextDelta,
)


def context(words: str, audio_ms: float = 0.0) -> ReplyContext:
    return ReplyContext(instructions="Be brief.", tools=[], tool_choice="auto",
                        max_output_tokens=None,
                        history=[HistoryTurn("user", "message", words, audio_ms=audio_ms)])


async def read(early: EarlyReply) -> list[ReplyChunk]:
    return [chunk async for chunk in early.chunks()]


def test_it_writes_what_the_engine_writes() -> None:
    engine = ScriptedReplyEngine()

    async def run() -> tuple[list[ReplyChunk], list[ReplyChunk]]:
        wanted = [chunk async for chunk in engine.reply(context("hello there"))]
        early = EarlyReply(engine, context("hello there"))
        await asyncio.sleep(0.05)  # it writes before anyone reads
        got = await read(early)
        assert early.taken
        return wanted, got

    wanted, got = asyncio.run(run())
    assert got == wanted and got


class Failing:
    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        yield TextDelta("The first words.", whole=True)
        raise RuntimeError("the model fell over")


def test_the_engine_s_error_is_raised_where_the_reply_is_read() -> None:
    async def run() -> list[ReplyChunk]:
        got: list[ReplyChunk] = []
        with pytest.raises(RuntimeError, match="fell over"):
            async for chunk in EarlyReply(Failing(), context("hi")).chunks():
                got.append(chunk)
        return got

    assert asyncio.run(run()) == [TextDelta("The first words.", whole=True)]


class Endless:
    def __init__(self) -> None:
        self.written = 0
        self.stopped = False

    async def reply(self, context: ReplyContext) -> AsyncIterator[ReplyChunk]:
        try:
            while True:
                self.written += 1
                yield TextDelta("more ")
                await asyncio.sleep(0.01)
        finally:
            self.stopped = True


def test_cancelling_it_stops_the_engine() -> None:
    engine = Endless()

    async def run() -> None:
        early = EarlyReply(engine, context("tell me everything"))
        await asyncio.sleep(0.1)
        await early.cancel()
        written = engine.written
        await asyncio.sleep(0.1)
        assert engine.stopped and engine.written == written

    asyncio.run(run())


def test_a_reply_is_matched_by_what_it_depends_on() -> None:
    guessed = context("what is the capital of france")
    # the committed turn has its audio's length; the words are what count
    assert context_key(guessed) == context_key(context("what is the capital of france", 2100))
    assert context_key(guessed) != context_key(context("what is the capital of frank"))
    assert context_key(guessed) != context_key(replace(guessed, instructions="Be long."))
    assert context_key(guessed) != context_key(replace(guessed, temperature=0.0))
