"""A reply started before its turn has ended: from the words the server guessed during the
end-of-turn silence, the reply engine starts writing at once, and the response that answers the
turn takes over what it wrote if the turn's final words are the guessed ones (otherwise it is
dropped and the reply is written afresh). Voice agents call this preemptive generation; here it
wins the silence the turn detector waits for, and the time the final transcript takes.

Only engines that say so (``starts_early = True``) are started early: their replies depend on
the context alone and have no effect of their own until read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from .engines import ReplyChunk, ReplyContext

_END = object()


def context_key(context: ReplyContext) -> str:
    """What a reply depends on, as text: two contexts with the same key get the same reply."""
    turns = [(t.role, t.type, t.text, t.name, t.arguments, t.output, t.call_id)
             for t in context.history]
    return json.dumps([context.instructions, turns, list(context.tools), context.tool_choice,
                       context.max_output_tokens, context.temperature, context.model],
                      default=repr)


class EarlyReply:
    """The chunks of ``engine.reply(context)``, written into a queue from now on by a task of
    its own; :meth:`chunks` reads them (once), :meth:`cancel` stops the engine."""

    def __init__(self, engine: Any, context: ReplyContext) -> None:
        self.engine = engine
        self.key = context_key(context)
        self.taken = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._write(context), name="early reply")

    async def _write(self, context: ReplyContext) -> None:
        chunks = aiter(self.engine.reply(context))
        try:
            async for chunk in chunks:
                self._queue.put_nowait(chunk)
        except Exception as exc:  # raised where the chunks are read, as a reply's faults are
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_END)
            with contextlib.suppress(Exception):
                await chunks.aclose()

    async def chunks(self) -> AsyncIterator[ReplyChunk]:
        """What the engine wrote and goes on writing, to its end (its error raised here)."""
        self.taken = True
        try:
            while (chunk := await self._queue.get()) is not _END:
                if isinstance(chunk, Exception):
                    raise chunk
                yield chunk
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        """Stop writing (the engine stops at its next token)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
