"""Load and soak, measured by the suite's own bounded test (``tests/test_load.py``): eight
sessions streaming mic audio at real-time rate in one process, and ten minutes of conversation
at 20x speed with memory and CPU sampled every turn. The server runs in a child process."""

from __future__ import annotations

from typing import Any

from ._util import ROOT, figures_from_test, table

FIGURES = ROOT / "test-output" / "load.json"


def run(quick: bool = False) -> dict[str, Any]:
    """One run of the load test (it is long enough to be its own repeat)."""
    return figures_from_test("tests/test_load.py", FIGURES)


def report(results: dict[str, Any]) -> str:
    eight, soak = results["eight_sessions"], results["soak"]
    return table("Load (server in another process; client figures)", ["what", "figure"], [
        [f"{eight['sessions']} sessions streaming at real time: CPU",
         f"{eight['cpu_percent_of_one_core']:.1f} % of one core "
         f"({eight['cpu_percent_per_session']:.2f} % a session)"],
        ["  20 ms send tick, lateness p50 / p99",
         f"{eight['tick_lateness_ms_p50']:.2f} / {eight['tick_lateness_ms_p99']:.2f} ms"],
        [f"soak: {soak['simulated_minutes']:.0f} min of talk at {soak['speed']:g}x, "
         f"{soak['turns']} turns", f"{soak['wall_s']:.0f} s wall"],
        ["  RSS start → end", f"{soak['rss_mb_start']:.0f} → {soak['rss_mb_end']:.0f} MB"],
        ["  RSS per turn, second half (bounded log, no kept audio)",
         f"{soak['rss_kb_per_turn_second_half']:.1f} kB"],
        ["  CPU per turn, first → last quarter",
         f"{soak['cpu_ms_per_turn_first_quarter']:.0f} → "
         f"{soak['cpu_ms_per_turn_last_quarter']:.0f} ms"],
    ])
