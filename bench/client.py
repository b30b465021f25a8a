"""Client cost per event: CPU time in this process to send 20 ms ``input_audio_buffer.append``
frames and to receive 100 ms audio deltas, for rtwidget's session, the floor (bare websockets +
json + base64 doing the same I/O) and the official ``openai`` realtime client, all against the
local server running in another process (so only client work is counted).

The kernel side is the :class:`VoiceChat` with a simulated page that acknowledges audio as the
browser does (without it the widget stops sending after 30 s of unconfirmed audio): CPU per
second of reply audio at three reply lengths and three conversation lengths, every figure
divided by the events actually sent, and a live conversation run at real time (CPU over wall
time)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._util import SimulatedPage, table

FRAME = b"\x00\x01" * 480  # 20 ms of PCM16 at 24 kHz
MIC_FRAME = FRAME * 2  # the page sends 40 ms frames
REPLY_MINUTES = (0.25, 1.0, 3.0)
CONVERSATION_ITEMS = (10, 100, 1_000)
WORDS_PER_MINUTE_OF_TONES = 150  # ToneSynthesizer speaks about this many short words a minute


@contextmanager
def server_process(pace: float = 0.0) -> Iterator[str]:
    """The local server (scripted engine, tones) in a child process; yields its URL. ``pace``:
    seconds between streamed deltas (0.1 streams 100 ms audio deltas at about real time)."""
    proc = subprocess.Popen([sys.executable, "-m", "rtwidget.server", "--scripted", "--port",
                             "0", "--pace", str(pace)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"ws://\S+", line)
        if match is None:
            raise RuntimeError(f"the server did not start: {line!r}")
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(10)


def _cpu(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _story(minutes: float) -> str:
    return " ".join(["ocean"] * int(minutes * WORDS_PER_MINUTE_OF_TONES))


# --- rtwidget ---------------------------------------------------------------------------------


def rtwidget_send(url: str, frames: int, record: Path | None = None) -> float:
    import rtwidget as rt

    with rt.RealtimeSession("local", url=url, turn_detection=None, tools=False,
                            record=record) as s:
        def work() -> None:
            for _ in range(frames):
                s.send_audio(FRAME)
            committed = s.expect("input_audio_buffer.committed", timeout=120)  # before it comes
            s.commit_audio()
            try:
                committed.wait()
            except TimeoutError:
                raise RuntimeError(
                    f"no commit after {frames} frames: {s.aio.dropped_audio_frames} dropped, "
                    f"errors {s.errors[-3:]}, problems {s.conversation.problems[-3:]}, "
                    f"log {[e.type for e in list(s.conversation.log)[-5:]]}") from None
            s.close()  # the recording, if any, is written to the end

        return _cpu(work)


def rtwidget_receive(url: str, minutes: float, record: Path | None = None
                     ) -> tuple[float, int]:
    import rtwidget as rt

    with rt.RealtimeSession("local", url=url, turn_detection=None, tools=False,
                            record=record) as s:
        s.conversation.keep_audio = False
        count = 0

        def on_audio(item_id: str, pcm: bytes) -> None:
            nonlocal count
            count += 1

        s.on_audio(on_audio)
        text = _story(minutes)

        def work() -> None:
            s.ask(text, timeout=600)
            s.close()

        return _cpu(work), count


# --- the floor --------------------------------------------------------------------------------


async def _floor_send(url: str, frames: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, compression=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None}}}}))
        for _ in range(frames):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(FRAME).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        async for raw in ws:
            if json.loads(raw)["type"] == "input_audio_buffer.committed":
                break


async def _floor_receive(url: str, minutes: float) -> int:
    from websockets.asyncio.client import connect

    count = 0
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": _story(minutes)}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "response.output_audio.delta":
                base64.b64decode(event["delta"])
                count += 1
            elif event["type"] == "response.done":
                break
    return count


# --- the openai package ---------------------------------------------------------------------


def _openai_client(url: str) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key="unused", websocket_base_url=url.removesuffix("/realtime"))


async def _openai_send(url: str, frames: int) -> None:
    async with _openai_client(url).realtime.connect(model="local") as conn:
        await conn.session.update(session={"type": "realtime",
                                           "audio": {"input": {"turn_detection": None}}})
        for _ in range(frames):
            await conn.input_audio_buffer.append(audio=base64.b64encode(FRAME).decode())
        await conn.input_audio_buffer.commit()
        async for event in conn:
            if event.type == "input_audio_buffer.committed":
                break


async def _openai_receive(url: str, minutes: float) -> int:
    count = 0
    async with _openai_client(url).realtime.connect(model="local") as conn:
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": _story(minutes)}]})
        await conn.response.create()
        async for event in conn:
            if event.type == "response.output_audio.delta":
                base64.b64decode(event.delta)
                count += 1
            elif event.type == "response.done":
                break
    return count


def run(quick: bool = False) -> dict[str, Any]:
    """Median CPU µs per sent frame and per received delta, and ratios to the floor."""
    minutes = 2.0 if quick else 10.0
    frames = int(minutes * 60 * 50)
    repeats = 1 if quick else 3
    send: dict[str, list[float]] = {"floor": [], "rtwidget": [], "recording": [], "openai": []}
    receive: dict[str, list[float]] = {"floor": [], "rtwidget": [], "recording": [],
                                       "openai": []}
    recorded_bytes: list[int] = []
    with server_process() as url, tempfile.TemporaryDirectory() as tmp:
        for run_index in range(repeats):
            send["floor"].append(_cpu(lambda: asyncio.run(_floor_send(url, frames))) / frames)
            send["rtwidget"].append(rtwidget_send(url, frames) / frames)
            folder = Path(tmp) / f"send-{run_index}"
            send["recording"].append(rtwidget_send(url, frames, folder) / frames)
            recorded_bytes.append(sum(f.stat().st_size for f in folder.iterdir()))
            send["openai"].append(_cpu(lambda: asyncio.run(_openai_send(url, frames))) / frames)
            for who, fn in (("floor", _floor_receive), ("openai", _openai_receive)):
                box: list[int] = []
                cpu = _cpu(lambda fn=fn, box=box: box.append(asyncio.run(fn(url, minutes))))
                receive[who].append(cpu / max(1, box[0]))
            cpu, n = rtwidget_receive(url, minutes)
            receive["rtwidget"].append(cpu / max(1, n))
            cpu, n = rtwidget_receive(url, minutes, Path(tmp) / f"receive-{run_index}")
            receive["recording"].append(cpu / max(1, n))
        widget = widget_paths(url, frames // 2)
        tools = tool_overhead(url, 3 if quick else 10)
    grown = scaling(quick)
    live = live_conversation(30.0 if quick else 60.0)
    out: dict[str, Any] = {"audio_minutes": minutes, "widget": widget, "tools": tools,
                           "live": live, **grown,
                           "recording_mb_per_audio_minute":
                           statistics.median(recorded_bytes) / minutes / 1e6}
    for kind, data in (("send", send), ("receive", receive)):
        med = {k: statistics.median(v) * 1e6 for k, v in data.items()}
        out[kind] = {"us_per_event": med,
                     "ratio_to_floor": {k: v / med["floor"] for k, v in med.items()}}
    return out


def report(results: dict[str, Any]) -> str:
    rows = []
    for kind, label in (("send", "send one 20 ms frame"), ("receive", "receive one 100 ms delta")):
        for who in ("floor", "rtwidget", "recording", "openai"):
            rows.append([label if who == "floor" else "",
                         "rtwidget, recording" if who == "recording" else who,
                         f"{results[kind]['us_per_event'][who]:.1f}",
                         f"{results[kind]['ratio_to_floor'][who]:.2f}x"])
    main = table(f"Client CPU per event ({results['audio_minutes']:g} min of audio each way, "
                 "median of runs)", ["", "client", "µs/event", "vs floor"], rows)
    w, t, live = results["widget"], results["tools"], results["live"]
    extra = table("Kernel side (the widget, with a simulated page acknowledging audio)",
                  ["path", "figure"], [
        ["mic frame: widget handler → socket (CPU)", f"{w['mic_frame_us']:.1f} µs"],
        ["audio delta: socket → widget message (CPU, a 1 min reply streamed at full speed)",
         f"{w['audio_delta_us']:.1f} µs"],
        [f"live talk, measured over {live['wall_s']:.0f} s at real time: mic 25 frames/s, "
         f"the agent speaking {live['speaking_percent']:.0f} % of the time",
         f"{live['cpu_percent']:.2f} % of one core"],
        ["a recording of streamed mic audio, on disk",
         f"{results['recording_mb_per_audio_minute']:.2f} MB per minute"],
        [f"no-op tool, call → result, sync ({t['sync_calls']} calls)", f"{t['sync_us']:.0f} µs"],
        [f"no-op tool, call → result, async ({t['async_calls']} calls)",
         f"{t['async_us']:.0f} µs"],
    ])
    return "\n\n".join([main, extra, _scaling_table(
        "Kernel CPU per second of reply audio streamed at real time, by reply length",
        "reply", results["by_reply"], results["floor"]), _scaling_table(
        "Kernel CPU per second of reply audio streamed at real time, by conversation length",
        "items before the reply", results["by_conversation"], results["floor"])])


def _scaling_table(title: str, what: str, runs: dict[str, dict[str, float]],
                   floor: dict[str, float]) -> str:
    first = next(iter(runs.values()))["ms_per_audio_s"]
    rows = [[name, f"{r['audio_s']:.0f}", f"{r['deltas']:,.0f}", f"{r['dropped']:.0f}",
             f"{r['ms_per_audio_s']:.2f}", f"{r['us_per_delta']:.0f}",
             f"{r['ms_per_audio_s'] / first:.2f}"] for name, r in runs.items()]
    rows.append(["floor (bare websockets+json+base64)", f"{floor['audio_s']:.0f}",
                 f"{floor['deltas']:,.0f}", "", f"{floor['ms_per_audio_s']:.2f}",
                 f"{floor['us_per_delta']:.0f}", ""])
    return table(title, [what, "audio s", "deltas sent", "dropped", "ms CPU / audio s",
                         "µs / delta", "x first"], rows)


@contextmanager
def voice_chat(url: str) -> Iterator[tuple[Any, SimulatedPage]]:
    """A :class:`VoiceChat` on ``url`` with a simulated page taking its messages."""
    import rtwidget as rt

    chat = rt.VoiceChat(rt.RealtimeSession("local", url=url, turn_detection=None, tools=False,
                                           connect=False), connect=False)
    chat.session.connect()
    chat.session.conversation.keep_audio = False
    try:
        yield chat, SimulatedPage(chat)
    finally:
        chat.close()


def reply_cost(chat: Any, page: SimulatedPage, minutes: float) -> dict[str, float]:
    """CPU of this process for one spoken reply of about ``minutes``, per second of audio and
    per delta the page received (the server runs in another process)."""
    chunks, received, dropped = page.audio_chunks, page.audio_bytes, chat.stats["audio_dropped"]
    cpu = _cpu(lambda: chat.session.ask(_story(minutes), timeout=600))
    deltas = page.audio_chunks - chunks
    seconds = (page.audio_bytes - received) / 48_000
    return {"audio_s": seconds, "deltas": deltas, "dropped": chat.stats["audio_dropped"] - dropped,
            "ms_per_audio_s": cpu * 1e3 / max(seconds, 1e-9),
            "us_per_delta": cpu * 1e6 / max(deltas, 1)}


def preload(chat: Any, page: SimulatedPage, items: int) -> None:
    """Grow the conversation to ``items`` typed messages, and wait for the page to show them."""
    for n in range(items):
        chat.session.say(f"note {n}: a line of earlier conversation", respond=False)
    page.wait_for_rows(lambda rows: len(rows) >= items, timeout=120)


def scaling(quick: bool) -> dict[str, dict[str, dict[str, float]]]:
    """Cost per second of reply audio streamed at about real time (what a user hears): replies
    of 15 s, 1 min and 3 min, and a 30 s reply after 10, 100 and 1,000 items; a fresh widget
    each. ``quick`` divides the lengths by 4."""
    scale = 0.25 if quick else 1.0
    by_reply: dict[str, dict[str, float]] = {}
    by_conversation: dict[str, dict[str, float]] = {}
    with server_process(pace=0.1) as url:
        for minutes in REPLY_MINUTES:
            with voice_chat(url) as (chat, page):
                run = reply_cost(chat, page, minutes * scale)
                by_reply[f"{run['audio_s']:.0f} s"] = run
        for items in CONVERSATION_ITEMS:
            with voice_chat(url) as (chat, page):
                preload(chat, page, items)
                by_conversation[f"{items:,}"] = reply_cost(chat, page, 0.5 * scale)
        floor = floor_at_real_time(url, 0.5 * scale)
    return {"by_reply": by_reply, "by_conversation": by_conversation, "floor": floor}


def floor_at_real_time(url: str, minutes: float) -> dict[str, float]:
    """The floor (bare websockets + json + base64) receiving a reply streamed at real time:
    at 10 deltas a second, waking up costs more than the work itself."""
    box: list[int] = []
    cpu = _cpu(lambda: box.append(asyncio.run(_floor_receive(url, minutes))))
    return {"audio_s": box[0] / 10, "deltas": box[0], "dropped": 0,
            "ms_per_audio_s": cpu * 1e3 / max(box[0] / 10, 1e-9),
            "us_per_delta": cpu * 1e6 / max(box[0], 1)}


def widget_paths(url: str, frames: int) -> dict[str, float]:
    """CPU µs per mic frame from the widget's message handler to the socket, and per audio
    delta through to the widget's outgoing binary message, with a simulated page."""
    with voice_chat(url) as (chat, page):
        def send_all() -> None:
            for _ in range(frames):
                page.mic_frame(MIC_FRAME)
            chat.session.commit_audio()
            chat.session.wait_for("input_audio_buffer.committed", timeout=600)

        per_frame = _cpu(send_all) / frames
        per_delta = reply_cost(chat, page, 1.0)["us_per_delta"]
    return {"mic_frame_us": per_frame * 1e6, "audio_delta_us": per_delta}


def live_conversation(seconds: float) -> dict[str, float]:
    """A conversation at real time: the page sends a 40 ms mic frame every 40 ms throughout
    (it sends silence while the agent speaks), and the agent answers with 10 s replies that
    the server streams at real time, 3 s after the previous one ended. CPU of this process
    over wall time."""
    stop = threading.Event()
    with server_process(pace=0.1) as url, voice_chat(url) as (chat, page):
        def mic() -> None:
            next_at = time.monotonic()
            while not stop.is_set():
                page.mic_frame(MIC_FRAME)
                next_at += 0.04
                stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=mic, daemon=True)
        wall, cpu = time.monotonic(), time.process_time()
        thread.start()
        speaking = 0.0
        while time.monotonic() - wall < seconds:
            started = time.monotonic()
            chat.session.ask(_story(10 / 60), timeout=120)
            speaking += time.monotonic() - started
            stop.wait(3.0)
        stop.set()
        thread.join()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        return {"wall_s": wall, "cpu_percent": cpu / wall * 100,
                "speaking_percent": speaking / wall * 100,
                "audio_s": page.audio_seconds, "mic_frames": page.seq,
                "dropped": chat.stats["audio_dropped"]}


def tool_overhead(url: str, rounds: int) -> dict[str, float]:
    """Median seconds from a call's arguments arriving to its result being ready, for a no-op
    tool, sync (worker thread) and async (session loop)."""
    import rtwidget as rt

    def noop_sync() -> str:
        return "ok"

    async def noop_async() -> str:
        return "ok"

    out = {}
    for name, fn in (("sync", noop_sync), ("async", noop_async)):
        tool = rt.build_tool(fn, name="noop")
        with rt.RealtimeSession("local", url=url, tools=[tool], tool_choice="required",
                                output_modalities=["text"]) as s:
            for _ in range(rounds):
                s.ask("go", timeout=60)  # 9 calls: the round cap ends each ask
            seconds = [r.seconds for r in s.tool_results.values()]
        out[f"{name}_us"] = statistics.median(seconds) * 1e6
        out[f"{name}_calls"] = len(seconds)
    return out
