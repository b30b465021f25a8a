"""The widget's latency probe in a real headless Chromium whose fake microphone plays chirps:
the shipped bundle's probe opens the mic without echo cancellation, plays its chirp, stamps the
captured blocks on the audio clock and finds the chirp by cross-correlation. The fake mic cannot
hear the page, so the delay found is where the file's chirp happened to be, not a device's
latency; what this proves is the pipeline, end to end, in the browser users run."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATIC = Path(__file__).resolve().parents[2] / "rtwidget" / "notebook" / "static"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

if not CHROMIUM:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError("the probe test needs chromium (apt-get install chromium)")
    pytest.skip("chromium is not installed", allow_module_level=True)

PAGE = """<!doctype html><meta charset="utf-8"><title>probe</title>
<script type="module">
import { Engine } from "./widget.js";
const sent = [];
const model = { send: (msg) => sent.push(msg), get: () => "", on() {}, off() {} };
window.runProbe = async () => {
  const engine = new Engine(model);
  const result = await engine.probe();
  return { result, sent };
};
window.ready = true;
</script>"""


def chirps_wav(path: Path, rate: int = 48_000) -> None:
    """Half-second periods, each with the probe's own chirp (800 → 6000 Hz, 60 ms) at 0.3."""
    n = int(rate * 0.06)
    t = np.arange(n) / rate
    phase = 2 * np.pi * (800 * t + (6000 - 800) * t * t / (2 * n / rate))
    chirp = 0.3 * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))) * np.sin(phase)
    period = np.zeros(rate // 2)
    period[:n] = chirp
    audio = np.tile(period, 8)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((audio * 32767).astype("<i2").tobytes())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The shipped bundle and a tiny page, served on 127.0.0.1 (a secure context)."""
    (tmp_path / "widget.js").write_bytes((STATIC / "widget.js").read_bytes())
    (tmp_path / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    thread.join(5)


@pytest.mark.timeout(120)
def test_the_probe_finds_a_chirp_through_a_real_browser_mic(site: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    wav = tmp_path / "chirps.wav"
    chirps_wav(wav)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-gpu",
            "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(site)
            page.wait_for_function("() => window.ready === true", timeout=30_000)
            outcome = page.evaluate("() => window.runProbe()")
        finally:
            browser.close()
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "probe.json").write_text(json.dumps(outcome["result"]))
    result = outcome["result"]
    assert outcome["sent"] == [{"type": "latency_result", **result}]
    assert "error" not in result, result
    assert result["heard"] is True and result["score"] > 0.5, result
    # the first chirp of the file after the probe's own: within one period (500 ms)
    assert 0 <= result["roundtrip_ms"] <= 520, result
    assert result["rate"] > 0 and result["output_ms"] >= 0
