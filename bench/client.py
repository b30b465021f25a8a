"""Client cost per event: CPU time in this process to send 20 ms ``input_audio_buffer.append``
frames and to receive 100 ms audio deltas, for rtwidget's session, the floor (bare websockets +
json + base64 doing the same I/O) and the official ``openai`` realtime client, all against the
local server running in another process (so only client work is counted)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._util import table

FRAME = b"\x00\x01" * 480  # 20 ms of PCM16 at 24 kHz
WORDS_PER_MINUTE_OF_TONES = 200  # ToneSynthesizer speaks roughly this many short words a minute


@contextmanager
def server_process() -> Iterator[str]:
    """The local server (scripted engine, tones) in a child process; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "rtwidget.server", "--scripted", "--port",
                             "0"], stdout=subprocess.PIPE, text=True)
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
            s.commit_audio()
            s.wait_for("input_audio_buffer.committed", timeout=600)
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
        widget = widget_paths(url, frames, minutes)
        tools = tool_overhead(url, 3 if quick else 10)
    out: dict[str, Any] = {"audio_minutes": minutes, "widget": widget, "tools": tools,
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
    w, t = results["widget"], results["tools"]
    live = (50 * w["mic_frame_us"] + 10 * w["audio_delta_us"]) / 1e6 * 100
    extra = table("Kernel side", ["path", "figure"], [
        ["mic frame: widget handler → socket (CPU)", f"{w['mic_frame_us']:.1f} µs"],
        ["audio delta: socket → widget message (CPU)", f"{w['audio_delta_us']:.1f} µs"],
        ["live talk, 50 frames + 10 deltas a second", f"{live:.2f} % of one core"],
        ["a recording of streamed mic audio, on disk",
         f"{results['recording_mb_per_audio_minute']:.2f} MB per minute"],
        [f"no-op tool, call → result, sync ({t['sync_calls']} calls)", f"{t['sync_us']:.0f} µs"],
        [f"no-op tool, call → result, async ({t['async_calls']} calls)",
         f"{t['async_us']:.0f} µs"],
    ])
    return main + "\n\n" + extra


def widget_paths(url: str, frames: int, minutes: float) -> dict[str, float]:
    """CPU µs per mic frame from the widget's message handler to the socket, and per received
    audio delta through to the widget's outgoing binary message (the kernel-side comm path,
    with the kernel-less DummyComm standing in for the browser)."""
    import rtwidget as rt

    chat = rt.VoiceChat(rt.RealtimeSession("local", url=url, turn_detection=None, tools=False,
                                           connect=False), connect=False)
    chat.session.connect()
    chat._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "ready"}}},
                      "buffers": []})
    message = {"content": {"data": {"method": "custom", "content": {"type": "audio", "seq": 1}}},
               "buffers": [memoryview(FRAME)]}

    def send_all() -> None:
        for _ in range(frames):
            chat._handle_msg(message)
        chat.session.commit_audio()
        chat.session.wait_for("input_audio_buffer.committed", timeout=600)

    per_frame = _cpu(send_all) / frames
    chat.session.conversation.keep_audio = False
    before = chat.stats["audio_out"]
    cpu = _cpu(lambda: chat.session.ask(_story(minutes), timeout=600))
    per_delta = cpu / max(1, chat.stats["audio_out"] - before)
    chat.close()
    return {"mic_frame_us": per_frame * 1e6, "audio_delta_us": per_delta * 1e6}


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
