"""The browser path, measured in the real JupyterLab + headless Chromium session of the
end-to-end test (fake microphone playing speech): a mic frame from the browser to the kernel,
and the kernel's first audio of an item to the playback worklet's first sample."""

from __future__ import annotations

import statistics
from typing import Any

from ._util import ROOT, figures_from_test, table

FIGURES = ROOT / "test-output" / "browser-latency.json"


def run(quick: bool = False) -> dict[str, Any]:
    """Run the browser session ``1`` (quick) or ``3`` times; medians of its figures."""
    runs = [figures_from_test("tests/e2e/test_browser.py", FIGURES)
            for _ in range(1 if quick else 3)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {
        "runs": len(runs)}


def report(results: dict[str, Any]) -> str:
    return table(f"Browser path (JupyterLab + headless Chromium, {results['runs']} run(s), "
                 "medians)", ["path", "ms"], [
        ["mic frame: browser → kernel handler", f"{results['frame_ms']:.1f}"],
        ["first audio: kernel send → first sample played (idle player)",
         f"{results['first_playback_start_ms']:.0f}"],
        ["any item: kernel send → first sample played (waits behind earlier audio)",
         f"{results['playback_start_ms']:.0f}"],
    ])
