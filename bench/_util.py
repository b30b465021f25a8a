"""Helpers shared by the benchmarks: timing, tables, and a page that takes the widget's audio.

Every section's ``report()`` builds its output with :func:`table`; while :func:`collect_tables`
is active each table is also kept, so ``python -m bench --markdown`` can write the same tables
into docs/performance.md without the sections knowing about Markdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass
class Table:
    """One table of figures, as a section's report printed it."""

    title: str
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        """The table in Markdown, its title in bold above it."""
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        return "\n".join([f"**{self.title}**", "", line(self.header),
                          line(["---"] * len(self.header)), *map(line, self.rows)])


_collected: list[list[Table]] = []


@contextlib.contextmanager
def collect_tables() -> Iterator[list[Table]]:
    """Keep every :func:`table` made inside the block, in order."""
    tables: list[Table] = []
    _collected.append(tables)
    try:
        yield tables
    finally:
        _collected.remove(tables)


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (and, inside :func:`collect_tables`, a kept :class:`Table`)."""
    body = [[_cell(c) for c in r] for r in rows]
    for tables in _collected:
        tables.append(Table(title, list(header), body))
    cells = [header, *body]
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


AUDIO_ACK_EVERY = 5  # audio chunks between the page's acknowledgements (js/engine.js)


def _custom(content: dict[str, Any], buffers: list[Any] | None = None) -> dict[str, Any]:
    return {"content": {"data": {"method": "custom", "content": content}},
            "buffers": buffers or []}


class SimulatedPage:
    """Stands in for the browser page of a :class:`~rtwidget.VoiceChat`: says it is ready,
    takes every message the widget sends (through the widget's real ``send``), acknowledges
    audio every few chunks with the bytes taken, as ``js/engine.js`` does, and sends mic frames
    the way the page's messages arrive. ``rows`` is the transcript it has been sent, by item id;
    :meth:`wait_for_rows` waits for it to show something."""

    def __init__(self, chat: Any) -> None:
        self.chat = chat
        self.audio_chunks = self.audio_bytes = self.messages = self.seq = 0
        self.rows: dict[str, dict[str, Any]] = {}
        self._rows_changed = threading.Condition()
        self._send = chat.send
        chat.send = self._receive  # the widget's messages reach the page after the real send
        chat._handle_msg(_custom({"type": "ready"}))

    def _receive(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        self._send(content, buffers=buffers)
        self.messages += 1
        if content.get("type") == "rows":
            self._take_rows(content)
        if content.get("type") == "reply_audio" and buffers:
            self.audio_chunks += 1
            self.audio_bytes += len(buffers[0])
            if self.audio_chunks % AUDIO_ACK_EVERY == 0:
                self.chat._handle_msg(_custom({"type": "reply_audio_ack",
                                               "bytes": self.audio_bytes}))

    def _take_rows(self, content: dict[str, Any]) -> None:
        with self._rows_changed:
            if content.get("reset"):
                self.rows.clear()
            self.rows.update((row["id"], row) for row in content.get("rows", []))
            for item_id in content.get("removed", []):
                self.rows.pop(item_id, None)
            self._rows_changed.notify_all()

    def wait_for_rows(self, shown: Callable[[dict[str, dict[str, Any]]], bool],
                      timeout: float = 60.0) -> None:
        """Block until ``shown(rows)`` is true of the transcript the page has been sent (the
        widget sends rows a moment after the session has them); ``TimeoutError`` if not."""
        with self._rows_changed:
            if not self._rows_changed.wait_for(lambda: shown(self.rows), timeout):
                raise TimeoutError(f"the page's transcript did not get there in {timeout:g} s "
                                   f"({len(self.rows)} rows)")

    def mic_frame(self, pcm: bytes) -> None:
        """One mic frame from the page, as the kernel's comm hands it to the widget."""
        self.seq += 1
        self.chat._handle_msg(_custom({"type": "mic_audio", "seq": self.seq},
                                      [memoryview(pcm)]))

    @property
    def audio_seconds(self) -> float:
        """Seconds of reply audio the page received."""
        return self.audio_bytes / 48_000
