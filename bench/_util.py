"""Timing helpers shared by the benchmarks: medians over repeats, CPU and wall clocks."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def median_time(fn: Callable[[], Any], repeats: int = 5, clock: Callable[[], float] =
                time.perf_counter) -> float:
    """The median of ``repeats`` timings of ``fn()``, in seconds."""
    samples = []
    for _ in range(repeats):
        start = clock()
        fn()
        samples.append(clock() - start)
    return statistics.median(samples)


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table."""
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(lines)


ROOT = Path(__file__).resolve().parent.parent


def figures_from_test(test: str, figures: Path) -> dict[str, Any]:
    """Run one test file of the suite, which writes its measurements to ``figures`` (JSON),
    and return them; ImportError (the section is skipped) when it cannot run here."""
    figures.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "RTWIDGET_REQUIRE_E2E": "1"})
    if done.returncode != 0 or not figures.exists():
        raise ImportError(f"{test} failed: " + done.stdout[-300:])
    result: dict[str, Any] = json.loads(figures.read_text())
    return result
