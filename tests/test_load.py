"""Load and soak, bounded in time, loopback only, with the server in a child process so only the
client is measured: eight sessions in one process streaming mic audio at real-time rate, then
ten minutes of conversation played at 20x speed with memory and CPU sampled every turn.

Nothing here asserts a speed. The figures land in ``test-output/load.json`` (``python -m bench
--only load`` prints them); the assertions are about correctness under load and about memory
not growing from turn to turn once the bounded buffers are full."""

from __future__ import annotations

import gc
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import eventually, frames, free_port, utterance, wait_until_serving

import rtwidget as rt
from rtwidget import RealtimeSession
from rtwidget.protocol.conversation import Conversation

pytestmark = pytest.mark.timeout(240)
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
FRAME_S = 0.02


@pytest.fixture(scope="module")
def child_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m rtwidget.server --scripted`` in its own process."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rtwidget.server", "--scripted",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
        wait_until_serving(f"http://127.0.0.1:{port}/voices/v1/voices", proc, 30, log)
        try:
            yield f"ws://127.0.0.1:{port}/v1/realtime"
        finally:
            proc.terminate()
            proc.wait(10)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _record(name: str, figures: dict[str, object]) -> None:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / "load.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2))


def test_eight_sessions_stream_at_real_time_in_one_process(child_server: str) -> None:
    speech = frames(utterance("one two three four five six seven", lead_ms=300,
                              tail_ms=900), ms=20)
    turns = 3
    sessions = [RealtimeSession("local", url=child_server, output_modalities=["text"],
                                tools=False) for _ in range(8)]
    answered = [0] * len(sessions)
    for i, s in enumerate(sessions):
        s.on("response.done", lambda _e, i=i: answered.__setitem__(i, answered[i] + 1))
    lateness: list[float] = []
    cpu0, wall0 = _cpu_s(), time.monotonic()
    try:
        start = time.monotonic()
        tick = 0
        for _ in range(turns):  # every session speaks each frame in the same 20 ms tick
            for frame in speech:
                lateness.append(max(0.0, time.monotonic() - (start + tick * FRAME_S)))
                for s in sessions:
                    s.send_audio(frame)
                tick += 1
                time.sleep(max(0.0, start + tick * FRAME_S - time.monotonic()))
        eventually(lambda: min(answered) >= turns, 30, f"{turns} answers in every session")
        cpu, wall = _cpu_s() - cpu0, time.monotonic() - wall0
        assert answered == [turns] * len(sessions)
        for s in sessions:
            users = s.df[s.df["role"] == "user"]
            assert len(users) == turns and (users["audio_in_s"] > 1.0).all()
            assert s.aio.dropped_audio_frames == 0 and not s.conversation.errors
            assert s.aio.reconnects == 0
    finally:
        for s in sessions:
            s.close()
    audio_s = turns * len(speech) * FRAME_S
    _record("eight_sessions", {
        "sessions": len(sessions), "audio_s_each": audio_s,
        "cpu_percent_of_one_core": 100 * cpu / wall,
        "cpu_percent_per_session": 100 * cpu / wall / len(sessions),
        "tick_lateness_ms_p50": 1000 * statistics.median(lateness),
        "tick_lateness_ms_p99": 1000 * float(np.percentile(lateness, 99)),
    })


def test_a_ten_minute_conversation_at_20x_does_not_grow_per_turn(child_server: str) -> None:
    rt.tools.clear()

    def lookup(city: str) -> dict[str, object]:
        """The weather in a city."""
        return {"city": city, "sky": "clear", "readings": list(range(20))}

    speed, simulated_s = 20.0, 600.0
    speech = frames(utterance("what should I cook for dinner tonight", lead_ms=300,
                              tail_ms=900), ms=20)
    turn_s = len(speech) * FRAME_S * 2  # the user speaks, then listens as long
    samples: list[tuple[int, float, float]] = []
    conversation = Conversation(keep_audio=False, max_log=3000)  # the bounded settings
    session = RealtimeSession("local", url=child_server, tools=[lookup],
                              conversation=conversation)
    started = time.monotonic()
    simulated = 0.0
    turn = 0
    try:
        while simulated < simulated_s:
            answered = session.expect(lambda e: e["type"] == "response.done" and not any(
                o.get("type") == "function_call" for o in e["response"]["output"]),
                timeout=30)
            if turn % 5 == 4:  # now and then a typed turn that calls a tool
                session.say("what is the weather in Paris")
            else:
                for frame in speech:
                    session.send_audio(frame)
                    time.sleep(FRAME_S / speed)
            answered.wait()
            turn += 1
            simulated += turn_s
            gc.collect()
            samples.append((turn, _rss_mb(), _cpu_s()))
        wall = time.monotonic() - started
        df = session.df
    finally:
        session.close()
    assert len(conversation.log) == 3000  # the log stayed at its bound
    assert (df["role"] == "user").sum() == turn and not conversation.errors
    # memory: after the first half (log and caches filled), RSS per turn stays flat
    half = samples[len(samples) // 2:]
    x = np.array([t for t, _, _ in half], dtype=float)
    rss = np.array([r for _, r, _ in half])
    slope_kb = float(np.polyfit(x, rss, 1)[0] * 1000)
    growth_mb = float(rss[-1] - rss[0])
    cpu_per_turn = [(b[2] - a[2]) * 1000 for a, b in itertools.pairwise(samples)]
    _record("soak", {
        "simulated_minutes": simulated / 60, "speed": speed, "turns": turn, "wall_s": wall,
        "rss_mb_start": samples[0][1], "rss_mb_end": samples[-1][1],
        "rss_kb_per_turn_second_half": slope_kb, "rss_growth_mb_second_half": growth_mb,
        "cpu_ms_per_turn_first_quarter": statistics.median(cpu_per_turn[:len(cpu_per_turn) // 4]),
        "cpu_ms_per_turn_last_quarter": statistics.median(cpu_per_turn[-len(cpu_per_turn) // 4:]),
    })
    # what a turn rightly adds is its two or three conversation items, about 5 kB measured;
    # a turn's audio kept by mistake (115 kB) or an unbounded log (about 14 kB) would show
    assert slope_kb < 12, samples
    # and CPU per turn does not climb with the conversation's length
    first = statistics.median(cpu_per_turn[: len(cpu_per_turn) // 4])
    last = statistics.median(cpu_per_turn[-len(cpu_per_turn) // 4:])
    assert last < 3 * first + 5, (first, last)
