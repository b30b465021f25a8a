"""Per-event cost must not grow with the reply or the conversation: the kernel side of the
widget (session thread: socket, parsing, the conversation, the widget's audio and transcript
messages) with a simulated page that acknowledges audio as the browser does. Figures are CPU
time of the session's thread per audio delta, compared within one run (no wall-clock limit)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

import rtwidget as rt
from bench._util import SimulatedPage
from bench.client import preload, voice_chat
from rtwidget.server import LocalServer, ScriptedReplyEngine

pytestmark = pytest.mark.timeout(240)
GROWTH_BOUND = 1.5  # generous: the costs compared are the same code path, measured in one run


async def _thread_cpu() -> float:
    return time.thread_time()


def cpu_per_delta(chat: rt.VoiceChat, page: SimulatedPage, words: int) -> dict[str, float]:
    """The session thread's CPU per audio delta the page received, for one spoken reply."""
    session = chat.session
    chunks = page.audio_chunks
    start = session._run(_thread_cpu())
    session.ask(" ".join(["ocean"] * words), timeout=300)
    reply = list(session.conversation)[-1]
    # the transcript's last rows go out after the reply: their cost is the reply's too
    page.wait_for_rows(lambda rows: rows.get(reply.id, {}).get("status") == "completed")
    cpu = session._run(_thread_cpu()) - start
    deltas = page.audio_chunks - chunks
    assert chat.stats["audio_dropped"] == 0 and deltas > 0
    return {"cpu_per_delta": cpu / deltas, "deltas": deltas}


def test_cost_per_audio_delta_does_not_grow_with_the_reply() -> None:
    # the whole reply reaches the page: every delta sent, none held back unacknowledged
    with LocalServer(engine=ScriptedReplyEngine()) as server:
        short, long = [], []
        for _ in range(3):
            with voice_chat(server.url) as (chat, page):
                short.append(cpu_per_delta(chat, page, 40))   # about 15 s of audio
                long.append(cpu_per_delta(chat, page, 450))   # about 3 min of audio
                assert page.audio_chunks == chat.stats["audio_out"]
    assert long[0]["deltas"] > 10 * short[0]["deltas"]
    ratio = (statistics.median(r["cpu_per_delta"] for r in long)
             / statistics.median(r["cpu_per_delta"] for r in short))
    assert ratio <= GROWTH_BOUND, (ratio, short, long)


def test_cost_per_audio_delta_does_not_grow_with_the_conversation() -> None:
    # streamed at about real time, so the transcript is redrawn while the reply plays
    with LocalServer(engine=ScriptedReplyEngine(), pace=0.1) as server:
        runs: dict[int, list[dict[str, Any]]] = {10: [], 2_000: []}
        for _ in range(2):
            for items in runs:
                with voice_chat(server.url) as (chat, page):
                    preload(chat, page, items)
                    assert len(chat.session.conversation) >= items
                    runs[items].append(cpu_per_delta(chat, page, 15))  # about 6 s of audio
    ratio = (statistics.median(r["cpu_per_delta"] for r in runs[2_000])
             / statistics.median(r["cpu_per_delta"] for r in runs[10]))
    assert ratio <= GROWTH_BOUND, (ratio, runs)
