"""Slow tools, as a user waiting on one meets them, on the local server (scripted words, Flite's
voice, 127.0.0.1):

- filler: from the end of the typed turn to the first audio of the spoken filler, while a 3 s
  tool runs, beside the first audio of a plain spoken reply in the same run (the baseline: what
  a reply with no tool takes) and the ratio of the two;
- cancel: from the user's speech starting (the server VAD's ``speech_started`` received) to an
  async tool's ``CancelledError`` and to a polling sync tool (``CallContext.wait``) waking;
- the 1,000-interleaving race test's rate: interleavings per second and sessions stuck (none
  is the only acceptable figure).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import rtwidget as rt

from ._util import table


def _server() -> Any:
    from rtwidget.server import FliteSynthesizer, LocalServer, Rule, ScriptedReplyEngine

    rules = [Rule(r"weather in (?P<city>\w+)", calls=[("get_weather", {"city": "{city}"})]),
             Rule(r"slow and poll", calls=[("slow", {}), ("poll", {})]),
             Rule(r"still running", say="One moment, let me check that.", on="instructions")]
    return LocalServer(engine=ScriptedReplyEngine(rules=rules),
                       synthesizer=FliteSynthesizer()).start_in_thread()


def _first_audio_after(session: Any, response: Any, start: float) -> float:
    deadline = time.time() + 30
    while response.first_audio_at is None and time.time() < deadline:
        time.sleep(0.005)
    return (response.first_audio_at or float("nan")) - start


def _filler(server: Any, rounds: int) -> dict[str, Any]:
    def get_weather(city: str) -> str:
        """Weather."""
        time.sleep(3)
        return "sunny"

    fillers, plain = [], []
    with rt.RealtimeSession("local", url=server.url, tools=[rt.build_tool(get_weather)]) as s:
        for n in range(rounds):
            before = len(s.conversation.responses)
            started = time.time()
            s.say(f"Hello number {n}.")
            response = _wait_response(s, before, lambda r: True)
            plain.append(_first_audio_after(s, response, started))
            _settle(s)
            before = len(s.conversation.responses)
            started = time.time()
            s.say("What is the weather in Paris?")
            filler = _wait_response(s, before, lambda r: (r.metadata or {}).get("rtwidget"))
            fillers.append(_first_audio_after(s, filler, started))
            _settle(s)
    median_filler, median_plain = statistics.median(fillers), statistics.median(plain)
    return {"rounds": rounds, "filler_s": median_filler, "plain_s": median_plain,
            "filler_max_s": max(fillers), "ratio": median_filler / median_plain}


def _wait_response(session: Any, before: int, test: Any) -> Any:
    deadline = time.time() + 30
    while time.time() < deadline:
        found = [r for r in list(session.conversation.responses.values())[before:] if test(r)]
        if found:
            return found[0]
        time.sleep(0.002)
    raise TimeoutError("no response")


def _settle(session: Any) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if not session.running_tools and all(
                r.status != "in_progress" for r in session.conversation.responses.values()):
            return
        time.sleep(0.01)


def _cancel(server: Any, rounds: int) -> dict[str, Any]:
    from rtwidget.server import ToneSynthesizer

    noticed: dict[str, float] = {}
    started = threading.Event()

    async def slow() -> str:
        """Slow."""
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            noticed["async"] = time.time()
            raise
        return ""

    def poll(ctx: rt.CallContext) -> str:
        """Polls."""
        ctx.wait(60)
        noticed["sync"] = time.time()
        return ""

    speech = ToneSynthesizer().synthesize("stop that please", None, 1.0)
    quiet = bytes(48 * 400)
    samples: dict[str, list[float]] = {"async": [], "sync": []}
    tools = [rt.build_tool(slow), rt.build_tool(poll)]
    with rt.RealtimeSession("local", url=server.url, tools=tools, filler_after=None,
                            output_modalities=["text"]) as s:
        for _ in range(rounds):
            noticed.clear()
            started.clear()
            s.say("slow and poll")
            started.wait(10)
            while len(s.running_tools) < 2:
                time.sleep(0.002)
            heard = s.expect("input_audio_buffer.speech_started", timeout=10)
            for i in range(0, len(quiet + speech + quiet), 960):
                s.send_audio((quiet + speech + quiet)[i:i + 960])
            heard.wait()
            # when the session's loop took the event in (its log's time), not when this
            # thread woke: the cancel happens on the loop as it takes the event
            at = next(e.at for e in reversed(s.conversation.log)
                      if e.type == "input_audio_buffer.speech_started")
            deadline = time.time() + 10
            while len(noticed) < 2 and time.time() < deadline:
                time.sleep(0.001)
            for kind in ("async", "sync"):
                samples[kind].append(noticed.get(kind, float("nan")) - at)
            _settle(s)
    return {"rounds": rounds, **{f"{k}_ms": statistics.median(v) * 1000
                                 for k, v in samples.items()},
            **{f"{k}_max_ms": max(v) * 1000 for k, v in samples.items()}}


def _races() -> dict[str, Any]:
    import subprocess
    import sys

    from ._util import ROOT

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/tooling/test_tool_races.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    seconds = time.perf_counter() - start
    return {"interleavings": 1000, "seconds": seconds, "passed": done.returncode == 0}


def run(quick: bool = False) -> dict[str, Any]:
    import os

    load_before = os.getloadavg()[0]
    server = _server()
    try:
        figures = {"filler": _filler(server, 3 if quick else 8),
                   "cancel": _cancel(server, 3 if quick else 10)}
    finally:
        server.stop_in_thread()
    if not quick:
        figures["races"] = _races()
    figures["load"] = [load_before, os.getloadavg()[0]]
    return figures


def report(figures: dict[str, Any]) -> str:
    f, c = figures["filler"], figures["cancel"]
    text = table(
        f"Slow tools: filler and cancel ({f['rounds']} and {c['rounds']} rounds; load "
        f"{figures['load'][0]:.1f} → {figures['load'][1]:.1f})",
        ["measure", "median", "max", "baseline / note"],
        [["turn end → filler's first audio (3 s tool)", f"{f['filler_s'] * 1000:.0f} ms",
          f"{f['filler_max_s'] * 1000:.0f} ms",
          f"plain reply's first audio {f['plain_s'] * 1000:.0f} ms; ratio {f['ratio']:.1f}x"],
         ["speech_started → async tool cancelled", f"{c['async_ms']:.1f} ms",
          f"{c['async_max_ms']:.1f} ms", ""],
         ["speech_started → polling sync tool woken", f"{c['sync_ms']:.1f} ms",
          f"{c['sync_max_ms']:.1f} ms", "CallContext.wait"]])
    races = figures.get("races")
    if races:
        text += "\n\n" + table("Random interleavings of tools, turns, barge-ins and cancels",
                               ["interleavings", "seconds", "all settled, answered once"],
                               [[races["interleavings"], f"{races['seconds']:.0f}",
                                 "yes" if races["passed"] else "NO"]])
    return text
