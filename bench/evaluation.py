"""Evaluation suites offline: 20 three-turn spoken scenarios (Flite callers through the local
server's VAD and PocketSphinx, SmolLM2 replies spoken by Flite), run in-process (one local
server, 4 conversations at a time) and on a Dask ``LocalCluster`` with 2 worker processes (one
local server each); wall time of each, and the simulated audio's speed against real time (caller
audio pushed, in seconds, over the run's wall time). ``--quick``: 4 scenarios."""

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


def run(quick: bool = False) -> dict[str, Any]:
    import distributed

    from rtwidget.server import offline_server

    n = 4 if quick else 20
    suite = _suite(n)
    server = offline_server().start_in_thread()
    try:
        agent = dict(_agent(), provider="local", url=server.url)
        rt_warm = _suite(1)
        rt_warm.run(agent=agent, mode="spoken", progress=False)  # warm-up: voices, model
        here = suite.run(agent=agent, mode="spoken", progress=False)
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
            "dask_start_s": up_s,
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
    return (text + f"\nDask cluster and its 2 local servers started in "
            f"{figures['dask_start_s']:.1f} s (not in the wall time); same outcomes in both: "
            f"{figures['same_outcomes']}")
