"""The browser path, measured in the real JupyterLab + headless Chromium session of the
end-to-end test (fake microphone playing speech): a mic frame from the browser to the kernel,
and the kernel's first audio of an item to the playback worklet's first sample."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._util import table

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "test-output" / "browser-latency.json"


def run(quick: bool = False) -> dict[str, Any]:
    """Run the browser session ``1`` (quick) or ``3`` times; medians of its figures."""
    runs: list[dict[str, float]] = []
    for _ in range(1 if quick else 3):
        FIGURES.unlink(missing_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/e2e/test_browser.py"], cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "RTWIDGET_REQUIRE_E2E": "1"}, check=False)
        if done.returncode != 0 or not FIGURES.exists():
            raise ImportError("the browser session failed (needs chromium and espeak-ng): "
                              + done.stdout[-300:])
        runs.append(json.loads(FIGURES.read_text()))
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
