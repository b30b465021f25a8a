"""The browser side, in the headless Chromium of the end-to-end tests: the path through a real
JupyterLab (a mic frame from the browser to the kernel, the kernel's first audio of an item to
the playback worklet's first sample), and the widget's transcript as conversations grow (the
main-thread time per second and the playback underruns while a reply streams under 10 and
1,000 rows, on a page of its own)."""

from __future__ import annotations

import statistics
from typing import Any

from ._util import ROOT, figures_from_test, table

FIGURES = ROOT / "test-output" / "browser-latency.json"
RENDER_FIGURES = ROOT / "test-output" / "browser-render.json"


def run(quick: bool = False) -> dict[str, Any]:
    """Run the browser session and the transcript test ``1`` (quick) or ``3`` times; medians."""
    repeats = 1 if quick else 3
    runs = [figures_from_test("tests/e2e/test_browser.py", FIGURES) for _ in range(repeats)]
    renders = [figures_from_test("tests/e2e/test_transcript_render.py", RENDER_FIGURES)["runs"]
               for _ in range(repeats)]
    transcript = {rows: {key: statistics.median(r[rows][key] for r in renders)
                         for key in ("main_thread_percent", "underruns", "dom_rows", "chunks")}
                  for rows in renders[0]}
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {
        "runs": len(runs), "transcript": transcript}


def report(results: dict[str, Any]) -> str:
    path = table(f"Browser path (JupyterLab + headless Chromium, {results['runs']} run(s), "
                 "medians)", ["path", "ms"], [
        ["mic frame: browser → kernel handler", f"{results['frame_ms']:.1f}"],
        ["first audio: kernel send → first sample played (idle player)",
         f"{results['first_playback_start_ms']:.0f}"],
        ["any item: kernel send → first sample played (waits behind earlier audio)",
         f"{results['playback_start_ms']:.0f}"],
    ])
    if "transcript" not in results:
        return path
    runs = results["transcript"]
    rows = [[f"{int(n):,}", f"{r['dom_rows']:.0f}", f"{r['main_thread_percent']:.1f} %",
             f"{r['underruns']:.0f}"] for n, r in runs.items()]
    first = next(iter(runs.values()))
    chunks = first["chunks"]
    render = table(f"Browser main thread while a reply streams ({chunks / 10:.0f} s of audio, "
                   f"transcript updated every 150 ms; headless Chromium, medians of "
                   f"{results['runs']} run(s))",
                   ["rows in the talk", "rows in the page", "main thread, of one core",
                    "playback underruns"], rows)
    return path + "\n\n" + render
