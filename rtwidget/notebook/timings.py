"""The browser path's timings, by the browser's and the kernel's wall clocks (same machine, or
synchronised clocks): mic frame to kernel, kernel to first sample played, device latency."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocol.errors import UsageError, WaitTimeout
from . import messages

PROBE_FIELDS = ("heard", "roundtrip_ms", "output_ms", "input_ms", "rate", "score", "error")


class BrowserTimings:
    """Samples of each figure, bounded; :meth:`medians` sums them up."""

    def __init__(self) -> None:
        self.samples: dict[str, deque[float]] = {
            "frame_ms": deque(maxlen=2000), "playback_start_ms": deque(maxlen=200),
            "device_out_ms": deque(maxlen=200)}
        self._first_sent: dict[str, float] = {}

    def frame(self, sent_at_ms: float) -> None:
        """A mic frame the browser sent at ``sent_at_ms`` reached the kernel now."""
        self.samples["frame_ms"].append(time.time() * 1000 - sent_at_ms)

    def audio_sent(self, item_id: str) -> None:
        """The kernel sent audio of ``item_id`` to the page now (its first counts)."""
        if item_id not in self._first_sent:
            self._first_sent[item_id] = time.time()
            if len(self._first_sent) > 500:
                self._first_sent.pop(next(iter(self._first_sent)))

    def playback_started(self, item_id: str, at_ms: float, device_ms: object) -> None:
        """The browser played the first sample of ``item_id`` at ``at_ms`` (its clock),
        reporting ``device_ms`` of output latency."""
        if isinstance(device_ms, (int, float)) and 0 <= device_ms < 10_000:
            self.samples["device_out_ms"].append(float(device_ms))
        sent = self._first_sent.get(item_id)
        if sent is not None:
            self.samples["playback_start_ms"].append(at_ms - sent * 1000)

    def medians(self, roundtrip_ms: float = float("nan")) -> dict[str, float]:
        """Each figure's median in ms, the first playback start, and ``roundtrip_ms``."""
        out = {name: float(statistics.median(values)) if values else float("nan")
               for name, values in self.samples.items()}
        starts = self.samples["playback_start_ms"]
        out["first_playback_start_ms"] = float(starts[0]) if starts else float("nan")
        out["device_roundtrip_ms"] = float(roundtrip_ms)
        return out


class LatencyProbe:
    """The page's audio round trip test (the Latency test button, or ``chat.probe_latency()``):
    the page plays a chirp, listens for it and sends the result, kept in :attr:`result`."""

    def __init__(self, send: Callable[[dict[str, Any]], None], front_ready: threading.Event,
                 note: Callable[..., None]) -> None:
        self._send, self._front_ready, self._note = send, front_ready, note
        self.result: dict[str, Any] = {}
        self._done = threading.Event()

    def answered(self, content: dict[str, Any]) -> None:
        """The page's result arrived (after the button or :meth:`run`)."""
        self.result = {k: content.get(k) for k in PROBE_FIELDS if content.get(k) is not None}
        self._done.set()
        self._note("rtwidget.latency_probe", **self.result)

    def run(self, timeout: float) -> dict[str, Any]:
        """Ask the page to run the test and wait for its result."""
        if not self._front_ready.is_set():
            raise UsageError("the widget is not on screen yet: display it first")
        self._done.clear()
        self._send({"type": messages.LATENCY_TEST})
        if not self._done.wait(timeout):
            raise WaitTimeout(f"the browser sent no probe result within {timeout:g} s "
                               "(press Latency test; the result lands in chat.probe)")
        return dict(self.result)
