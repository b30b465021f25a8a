"""The embedded server as a notebook kernel meets it: in a supervised process of its own (the
default with no API key) beside the same server on a thread in the kernel (how it ran before).

- ready: from ``rt.chat()`` to a connected chat, with the server's start (first chat of a
  kernel) and with the server already running;
- kernel CPU: this process's CPU (it stands in for the kernel) during 30 s of spoken exchange
  with the offline engines: questions in Flite's voice streamed at real time as a mic sends
  them, spoken replies back; the server in the kernel, then in its own process (whose own CPU
  is reported beside);
- memory: the server process's resident memory with its engines loaded, after turn 10 and after
  turn 50 of one conversation (typed questions, spoken replies), and its peak.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._util import table
from .offline import QUESTIONS, _speech, _stream

EXCHANGE_S = 30.0
TURNS = 50


def _status(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (MB), from ``/proc/<pid>/status``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _fresh_shared_server() -> Iterator[None]:
    """The shared local server stopped before and after, so a chat starts its own."""
    from rtwidget.client.local_process import stop_local_server

    stop_local_server()
    try:
        yield
    finally:
        stop_local_server()


def _time_to_ready(timeout: float = 180.0) -> float:
    """Seconds from ``rt.chat()`` to its status ``connected``."""
    import rtwidget as rt

    start = time.perf_counter()
    chat = rt.chat()
    try:
        while chat.status != "connected":
            if chat.status == "closed" or time.perf_counter() - start > timeout:
                raise RuntimeError(f"the chat did not connect: {chat.error}")
            time.sleep(0.005)
        return time.perf_counter() - start
    finally:
        chat.close()


def _ready() -> dict[str, float]:
    with _fresh_shared_server():
        cold = _time_to_ready()
        warm = min(_time_to_ready() for _ in range(3))
    return {"cold_s": cold, "warm_s": warm}


def _exchange(session: Any, speech: Any, seconds: float) -> int:
    """Speak questions at real time for ``seconds``, each followed by its spoken reply (not
    interrupted); returns how many replies came."""
    clips = [speech.in_room(speech.trim(speech.speak(q)), 300, 1500) for q in QUESTIONS]
    replies = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done = session.expect("response.done", timeout=60)
        _stream(session, clips[replies % len(clips)])
        with contextlib.suppress(Exception):
            done.wait()
            replies += 1
        # silence while the reply "plays", as a gated mic sends
        _stream(session, speech.silence(500))
    return replies


def _kernel_cpu(speech: Any) -> dict[str, Any]:
    import rtwidget as rt
    from rtwidget.client.local_process import LocalServerProcess
    from rtwidget.server import offline_server

    options: dict[str, Any] = {"tools": False, "transcription": "pocketsphinx",
               "instructions": "You are a helpful voice assistant. Answer in one sentence."}
    out: dict[str, Any] = {"seconds": EXCHANGE_S}
    with offline_server() as server, rt.RealtimeSession("local", url=server.url,
                                                         **options) as s:
        before, wall = time.process_time(), time.perf_counter()
        replies = _exchange(s, speech, EXCHANGE_S)
        out["in_kernel"] = {"kernel_cpu_s": time.process_time() - before,
                            "wall_s": time.perf_counter() - wall, "replies": replies}
    child = LocalServerProcess().start()
    try:
        assert child.pid is not None
        with rt.RealtimeSession(endpoint=child.endpoint(), **options) as s:
            before, wall = time.process_time(), time.perf_counter()
            server_before = _cpu_s(child.pid)
            replies = _exchange(s, speech, EXCHANGE_S)
            out["own_process"] = {"kernel_cpu_s": time.process_time() - before,
                                  "wall_s": time.perf_counter() - wall, "replies": replies,
                                  "server_cpu_s": _cpu_s(child.pid) - server_before}
    finally:
        child.stop()
    return out


def _memory(quick: bool) -> dict[str, Any]:
    import rtwidget as rt
    from rtwidget.client.local_process import LocalServerProcess

    turns = 12 if quick else TURNS
    child = LocalServerProcess().start()
    out: dict[str, Any] = {"turns": turns}
    try:
        assert child.pid is not None
        out["loaded"] = _status(child.pid)
        with rt.RealtimeSession(endpoint=child.endpoint(), tools=False,
                                output_modalities=["audio"],
                                instructions="Answer in one short sentence.") as s:
            for turn in range(1, turns + 1):
                done = s.expect("response.done", timeout=120)
                s.say(QUESTIONS[turn % len(QUESTIONS)])
                done.wait()
                if turn in (10, turns):
                    out[f"turn_{turn}"] = _status(child.pid)
        out["last"] = out.pop(f"turn_{turns}")
    finally:
        child.stop()
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (raises EngineUnavailable without rtwidget[local])."""
    import rtwidget.server.llm  # noqa: F401  (EngineUnavailable here when not installed)

    speech = _speech()
    return {"ready": _ready(), "cpu": _kernel_cpu(speech), "memory": _memory(quick)}


def report(results: dict[str, Any]) -> str:
    ready, cpu, memory = results["ready"], results["cpu"], results["memory"]
    rows = [
        ["rt.chat() → connected, first chat (the server starts)",
         f"{ready['cold_s']:.2f} s"],
        ["rt.chat() → connected, server running", f"{ready['warm_s'] * 1000:.0f} ms"],
    ]
    for name, label in (("in_kernel", "server on a thread in the kernel"),
                        ("own_process", "server in its own process")):
        f = cpu[name]
        rows.append([f"kernel CPU, {cpu['seconds']:.0f} s spoken exchange, {label}",
                     f"{100 * f['kernel_cpu_s'] / f['wall_s']:.1f} % of one core "
                     f"({f['replies']} replies)"])
    own = cpu["own_process"]
    rows.append(["  the server process's own CPU in that exchange",
                 f"{100 * own['server_cpu_s'] / own['wall_s']:.1f} % of one core"])
    rows += [
        ["server RSS: engines loaded / after turn 10 / after turn "
         f"{memory['turns']}", " / ".join(f"{memory[k]['rss']:.0f}"
                                          for k in ("loaded", "turn_10", "last")) + " MB"],
        ["server peak RSS over the conversation", f"{memory['last']['peak']:.0f} MB"],
    ]
    return table("The embedded server in its own process (what the kernel pays)",
                 ["figure", "value"], rows)
