"""Evaluation suites offline: 20 three-turn spoken scenarios (Flite callers through the local
server's VAD and PocketSphinx, SmolLM2 replies spoken by Flite), run in-process (one local
server, 4 conversations at a time) and on a Dask ``LocalCluster`` with 2 worker processes (one
local server each); wall time of each, and the callers' audio against real time: over a whole run
(caller audio pushed, in seconds, over the run's wall time, which includes the agent's replies)
and through the server's VAD and transcriber alone (15 turns pushed at once into one session that
makes no replies, until the last transcript). ``--quick``: 4 scenarios."""

from __future__ import annotations

import time
from typing import Any

from ._util import table

CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Dublin",
          "Oslo", "Prague", "Warsaw", "Athens", "Cairo", "Delhi", "Lima", "Sydney", "Toronto",
          "Boston", "Chicago"]


def _suite(n: int) -> Any:
    import rtwidget as rt

    return rt.EvalSuite([
        rt.Scenario(f"weather-{city}", user=["Hello there.", f"What is the weather in {city}?",
                                             "Thank you, goodbye."],
                    checks=[rt.checks.tool_called("get_weather", {"city": city}),
                            rt.checks.no_errors()])
        for city in CITIES[:n]])


def _agent() -> dict[str, Any]:
    import rtwidget as rt

    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        return {"city": city, "sky": "sunny", "celsius": 21}

    return {"instructions": "Be brief.", "tools": [rt.build_tool(get_weather)]}


def _audio_s(run: Any) -> float:
    from rtwidget.evaluation.caller import TRAILING_SILENCE_MS
    from rtwidget.evaluation.voices import speak

    pcm = sum(len(speak(u)) for u in run.turns["user"])
    return pcm / 48000 + len(run.turns) * TRAILING_SILENCE_MS / 1000


def _figures(run: Any) -> dict[str, Any]:
    audio = _audio_s(run)
    return {"wall_s": run.wall_s, "conversations": len(run.df), "turns": len(run.turns),
            "pass_rate": run.pass_rate(), "audio_s": audio, "speed": audio / run.wall_s,
            "latency_p50_s": float(run.turns["latency_s"].median())}


async def _hear(url: str, turns: list[str]) -> tuple[float, float]:
    """Seconds from the first frame of ``turns`` spoken and pushed at once (each followed by
    the caller's trailing silence) into one session with server VAD and transcription, and no
    replies, to the last turn's transcript: the server's VAD and transcriber alone; and the CPU
    seconds this process spent meanwhile (the server runs in one of its threads)."""
    import asyncio
    import resource

    from rtwidget.client.providers import resolve
    from rtwidget.client.session import AsyncRealtimeSession
    from rtwidget.evaluation.caller import TRAILING_SILENCE_MS
    from rtwidget.evaluation.voices import frames, silence, speak

    pcm = [speak(t) + silence(TRAILING_SILENCE_MS) for t in turns]
    async with AsyncRealtimeSession(
            resolve("local", url=url), output_modalities=["text"],
            turn_detection={"type": "server_vad", "create_response": False},
            transcription={"model": "whisper-1"}, reconnect=False) as session:
        started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        for chunk in pcm:
            for frame in frames(chunk):
                session.send_audio(frame)
        deadline = started + 600
        while time.monotonic() < deadline:
            df = session.df
            heard = df[(df["role"] == "user") & (df["type"] == "message")]["text"].notna()
            if int(heard.sum()) >= len(turns):
                break
            await asyncio.sleep(0.02)
        wall, used = time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF)
        return wall, used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime


def run(quick: bool = False) -> dict[str, Any]:
    import asyncio
    import os

    import distributed

    from rtwidget.evaluation.caller import TRAILING_SILENCE_MS
    from rtwidget.evaluation.voices import speak
    from rtwidget.server import offline_server

    n = 4 if quick else 20
    load_before = os.getloadavg()[0]
    suite = _suite(n)
    server = offline_server().start_in_thread()
    try:
        agent = dict(_agent(), provider="local", url=server.url)
        rt_warm = _suite(1)
        rt_warm.run(agent=agent, mode="spoken", progress=False)  # warm-up: voices, model
        here = suite.run(agent=agent, mode="spoken", progress=False)
        listened = list(here.turns["user"][:15])
        hear_s, hear_cpu_s = asyncio.run(_hear(server.url, listened))
        hear_audio_s = sum(len(speak(t)) for t in listened) / 48000 + \
            len(listened) * TRAILING_SILENCE_MS / 1000
    finally:
        server.stop_in_thread()
    started = time.monotonic()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(_start_server)
        up_s = time.monotonic() - started
        spread = suite.run(agent=_agent(), mode="spoken", executor=client, progress=False)
    return {"scenarios": n, "in_process": _figures(here), "dask": _figures(spread),
            "dask_start_s": up_s, "hear": [len(listened), hear_audio_s, hear_s, hear_cpu_s],
            "load": [load_before, os.getloadavg()[0]],
            "same_outcomes": bool(here.repeatable().equals(spread.repeatable()))}


def _start_server() -> str:
    import rtwidget as rt

    return rt.local_server().url


def report(figures: dict[str, Any]) -> str:
    rows = []
    for name, label in (("in_process", "in-process, 1 local server, 4 at a time"),
                        ("dask", "Dask LocalCluster, 2 worker processes")):
        f = figures[name]
        rows.append([label, f["conversations"], f["turns"], f"{f['wall_s']:.1f}",
                     f"{f['audio_s']:.0f}", f"{f['speed']:.1f}x", f"{f['pass_rate']:.0%}",
                     f"{f['latency_p50_s']:.2f}"])
    text = table(f"Evaluation: {figures['scenarios']} three-turn spoken scenarios, offline",
                 ["where", "conversations", "turns", "wall s", "caller audio s",
                  "audio vs real time", "pass rate", "turn latency p50 s"], rows)
    hear = figures.get("hear")
    if hear:
        text += "\n" + table("Caller audio through the server's VAD and transcriber alone "
                             "(pushed at once, one session, no replies)",
                             ["turns", "caller audio s", "wall s", "audio vs real time",
                              "CPU s", "audio vs CPU time"],
                             [[hear[0], f"{hear[1]:.0f}", f"{hear[2]:.1f}",
                               f"{hear[1] / hear[2]:.1f}x", f"{hear[3]:.1f}",
                               f"{hear[1] / hear[3]:.1f}x"]])
    load = figures.get("load")
    if load:
        text += (f"\nthe machine's load average (1 min) before / after: {load[0]:.1f} / "
                 f"{load[1]:.1f}")
    return (text + f"\nDask cluster and its 2 local servers started in "
            f"{figures['dask_start_s']:.1f} s (not in the wall time); same outcomes in both: "
            f"{figures['same_outcomes']}")
