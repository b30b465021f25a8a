"""End to end: the first-sample-played span of a trace comes from the page. JupyterLab started
by ``scripts/lab``, headless Chromium, the local server speaking with its tone voice; a turn
typed in the widget is answered with audio the page plays, the page reports when its first
sample played, and ``rt.telemetry``'s span for that stage lasts exactly ``played_s`` of the
DataFrame. The widget shows the session's cost, priced with a table entry the notebook adds for
the server it talks to (a URL endpoint has no price of its own). Loopback only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .lab import (
    CHROMIUM,
    OUTPUT,
    REQUIRED,
    fake_mic_page,
    kernel_json,
    lab,
    open_and_run_all,
    silence,
    write_notebook,
    write_wav,
)

if not CHROMIUM:
    if REQUIRED:
        raise RuntimeError("the telemetry browser test needs chromium (apt-get install "
                           "chromium); .ci/run installs it")
    pytest.skip("chromium is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)

SETUP = """%load_ext rtwidget
import rtwidget as rt
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rtwidget.server import LocalServer

server = LocalServer().start_in_thread()
rt.prices.update("url", "local/scripted", source="this test", text_in=1000, text_out=1000,
                 text_cached_in=1000, audio_in=1000, audio_cached_in=1000, audio_out=1000)
spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))"""
SHOW = """chat = rt.chat(url=server.url, transcription=None)
watch = rt.telemetry(tracer_provider).watch(chat)
chat"""

PLAYED = """(lambda c: {
    "reported": [e.payload.get("at") for e in c.log if e.type == "rtwidget.playback_started"],
})(chat.session.conversation)"""

FACTS = """(lambda stopped: {
    "spans_ms": [(s.end_time - s.start_time) / 1e6 for s in spans.get_finished_spans()
                 if s.name == "rtwidget.stage.first_played"],
    "played_s": [float(v) for v in chat.df["played_s"].dropna()],
    "names": sorted({s.name for s in spans.get_finished_spans()}),
    "cost": chat.cost.usd, "basis": chat.cost.basis,
})(watch.stop())"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root / "trace.ipynb", SETUP, SHOW)
    with lab(root, tmp_path) as (url, _):
        yield url.split("/lab/")[0], tmp_path


def test_the_played_first_sample_span_comes_from_the_page(served: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, tmp = served
    wav = write_wav(tmp / "quiet.wav", silence(3.0))
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p, fake_mic_page(p, wav, "telemetry") as page:
        widget = open_and_run_all(page, f"{url}/lab/tree/trace.ipynb?reset")
        box = widget.locator(".rtw-text-input")
        box.fill("hello there")
        box.press("Enter")
        page.wait_for_function("() => +document.querySelector('.rtw').dataset.playedMs > 300",
                               timeout=60_000)
        for _ in range(60):  # the page's report reaches the kernel
            if kernel_json(page, PLAYED)["reported"]:
                break
            page.wait_for_timeout(250)
        page.wait_for_function("() => document.querySelector('.rtw-cost')"
                               ".textContent.startsWith('cost: $')", timeout=30_000)
        shown_cost = widget.locator(".rtw-cost").inner_text()
        facts = kernel_json(page, FACTS)
        widget.screenshot(path=str(OUTPUT / "telemetry.png"))
    assert facts["played_s"], facts  # the page reported playing
    assert len(facts["spans_ms"]) == len(facts["played_s"]) == 1, facts
    assert abs(facts["spans_ms"][0] - facts["played_s"][0] * 1000) < 1e-3, facts
    assert 0 < facts["played_s"][0] < 30, facts
    assert {"rtwidget.session", "rtwidget.turn", "rtwidget.stage.first_audio"} <= \
        set(facts["names"]), facts
    assert facts["cost"] > 0 and "this test" in facts["basis"], facts
    assert shown_cost == f"cost: ${facts['cost']:.4f}"
