"""End to end: a real JupyterLab started by ``scripts/lab``, a real headless Chromium with a
fake microphone playing eSpeak NG speech (the hard case for the ear; the natural voices are in
``test_voice_notebook``), driven by Playwright. Loopback only."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually

from .lab import (
    CHROMIUM,
    OUTPUT,
    REQUIRED,
    fake_mic_page,
    lab,
    silence,
    speech,
    write_notebook,
    write_wav,
)

ESPEAK = shutil.which("espeak-ng")

if not (CHROMIUM and ESPEAK):
    if REQUIRED:
        raise RuntimeError("the end-to-end test needs chromium and espeak-ng (apt-get install "
                           "chromium espeak-ng); .ci/run installs them")
    pytest.skip("chromium or espeak-ng is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)
KEY = "sk-e2e-" + os.urandom(12).hex()  # the server's token: it must never be written down

NOTEBOOK_CELLS = [
    """%load_ext rtwidget
import json
import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine

@rt.tool
def what_time() -> str:
    \"\"\"The time right now.\"\"\"
    return "half past ten"

rules = [Rule(r"time", calls=[("what_time", {})])]
try:  # the offline ear, so the spoken turn has a transcript and its latency a stage for it
    from rtwidget.server import PocketsphinxTranscriber
    ear = PocketsphinxTranscriber()
except Exception:
    ear = None
import os
server = LocalServer(engine=ScriptedReplyEngine(rules=rules), transcriber=ear,
                     token=os.environ["RT_E2E_KEY"]).start_in_thread()""",
    """chat = rt.chat(url=server.url, api_key=os.environ["RT_E2E_KEY"], voice="test",
             record="rec", transcription="pocketsphinx" if ear else None)
chat""",
    "import time\ntime.sleep(4)  # a busy cell: the widget must say so",
    """df = chat.df
facts = {
    "stats": chat.stats,
    "rows": json.loads(df[["role", "type", "text", "audio_in_s", "audio_out_s", "output"]]
                       .to_json(orient="records")),
    "tool_results": [r.output for r in chat.session.tool_results.values()],
    "state": chat.get_state(),
    "latency": chat.latency(),
    "playback_starts": list(chat._link.timings.samples["playback_start_ms"]),
    "probe": chat.probe,
    "turns": json.loads(df[df["role"] == "user"][["text", "audio_in_s", "vad_s",
                        "transcript_s", "response_s", "audio_s", "played_s"]]
                        .to_json(orient="records")),
    "table": rt.turn_latency(chat).drop(columns="speech_end_at").to_dict("records"),
}
chat.close()
import pandas as pd
try:
    pd.testing.assert_frame_equal(rt.load_recording("rec").df, chat.session.df)
    facts["recording"] = "equal"
except AssertionError as exc:
    facts["recording"] = str(exc)
with open("facts.tmp", "w") as out:  # whole, then renamed: the test reads it once it exists
    json.dump(facts, out, default=str)
os.replace("facts.tmp", "facts.json")""",
]


RUN_CELL = """async (index) => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.sessionContext.ready;
    panel.content.activeCellIndex = index;
    app.commands.execute("notebook:run-cell");  // not awaited: it resolves when the cell ends
}"""


WATCH_BUSY = """() => new Promise((resolve) => {
    const w = document.querySelector(".rtw");
    const start = +w.dataset.acked;
    const states = new Set();
    const timer = setInterval(() => states.add(w.dataset.state), 100);
    setTimeout(() => {
        clearInterval(timer);
        resolve({states: [...states], acked: +w.dataset.acked - start});
    }, 3500);
})"""


def run_cell(page: Any, index: int) -> None:
    """Run one cell through JupyterLab's own command (no key presses, no focus races)."""
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.content", timeout=60_000)
    page.evaluate(RUN_CELL, index)


def speech_wav(path: Path) -> None:
    """Two sentences of eSpeak NG speech, padded with quiet, for the fake microphone."""
    write_wav(path, silence(1.5), speech("Hello there. I would like to hear a short story about "
                                         "the sea.", "espeak"), silence(3.0))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``scripts/lab`` serving a folder with this test's notebook: its base URL and the
    folder."""
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root / "voice.ipynb", *NOTEBOOK_CELLS)
    with lab(root, tmp_path, {"RT_E2E_KEY": KEY}) as (url, _):
        yield url.split("/lab/")[0], root


def test_talk_through_the_widget_in_a_real_browser(served: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, root = served
    wav = tmp_path / "speech.wav"
    speech_wav(wav)
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p, fake_mic_page(p, wav, "widget") as page:
        page.goto(f"{url}/lab/tree/voice.ipynb?reset", timeout=60_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                               timeout=90_000)
        page.add_style_tag(content=".Toastify { display: none !important; }")  # lab's news
        run_cell(page, 0)
        run_cell(page, 1)
        widget = page.locator(".rtw[data-ready=true]")
        widget.wait_for(timeout=60_000)
        page.wait_for_selector('.rtw[data-status="connected"]', timeout=30_000)

        page.wait_for_selector(".rtw-voice option", state="attached", timeout=20_000)
        page.locator(".rtw-mic").click()
        # the fake mic talks; the server's VAD answers with audio the player must play
        page.wait_for_function(
            "() => { const w = document.querySelector('.rtw');"
            " return w && +w.dataset.framesSent > 50 && +w.dataset.playedMs > 200; }",
            timeout=60_000)
        page.wait_for_selector(".rtw-assistant .rtw-latency", timeout=20_000)
        # (data-played-ms follows the item playing now: read it while it is the spoken reply)
        played = float(widget.get_attribute("data-played-ms") or 0)
        started = int(widget.get_attribute("data-started") or 0)

        page.locator(".rtw-text-input").fill("what time is it")
        page.locator(".rtw-text-input").press("Enter")
        page.wait_for_selector(".rtw-function_call_output .rtw-tool-output",
                               timeout=30_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.rtw-assistant .rtw-text')]"
            ".some(e => e.textContent.includes('half past ten'))", timeout=30_000)
        # the latency probe: the fake mic plays a file, so the chirp is not heard back,
        # and the widget must say so (with what the browser reports) instead of hanging
        page.locator(".rtw-probe").click()
        page.wait_for_function(
            "() => /not heard back|round trip:|Latency probe:/.test("
            "document.querySelector('.rtw-notice').textContent)", timeout=20_000)
        widget.screenshot(path=str(OUTPUT / "widget.png"))
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme',"
                      " {theme: 'JupyterLab Dark'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                               timeout=20_000)
        page.wait_for_timeout(500)
        widget.screenshot(path=str(OUTPUT / "widget-dark.png"))

        # a cell blocks the kernel for 4 s while the mic streams: frames are either still
        # acknowledged (comms on a subshell) or the widget says the kernel is busy
        run_cell(page, 2)
        during = page.evaluate(WATCH_BUSY)
        (OUTPUT / "busy-cell.json").write_text(json.dumps(during))
        assert "kernel busy" in during["states"] or during["acked"] >= 40, during
        page.wait_for_function(
            "() => document.querySelector('.rtw').dataset.state !== 'kernel busy'",
            timeout=20_000)

        run_cell(page, 3)
        facts_path = root / "facts.json"
        eventually(facts_path.exists, 30, "the cell writing facts.json")
        facts = json.loads(facts_path.read_text())
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        saved = root / "voice.ipynb"
        eventually(lambda: "widget-view+json" in saved.read_text(), 20,
                   "the notebook saved with the widget's output")

    (OUTPUT / "browser-latency.json").write_text(json.dumps(facts["latency"]))
    assert 0 <= facts["latency"]["frame_ms"] < 5000
    assert 0 <= facts["latency"]["playback_start_ms"] < 5000
    stats = facts["stats"]
    assert stats["frames_in"] > 50 and stats["bad_frames"] == 0
    assert stats["bytes_in"] == stats["frames_in"] * 1920  # 40 ms PCM16 at 24 kHz
    users = [r for r in facts["rows"] if r["role"] == "user"]
    assert any(r["audio_in_s"] > 1.0 for r in users), facts["rows"]  # a spoken turn
    assert "half past ten" in facts["tool_results"]
    assert any(r["type"] == "function_call_output" for r in facts["rows"])
    assert played > 200 and started >= 1
    assert stats["audio_out"] > 0
    assert KEY not in json.dumps(facts["state"])

    # the saved notebook (widget state and outputs), the recording and the server's log hold
    # no trace of the key
    assert "widget-view+json" in saved.read_text()  # saved with the widget's output
    for file in [saved, *(root / "rec").iterdir(), tmp_path / "lab.log"]:
        assert KEY.encode() not in file.read_bytes(), file.name
    assert facts["recording"] == "equal", facts["recording"]

    # latency per turn: the spoken turn went through every stage, in order
    (OUTPUT / "turn-latency.json").write_text(json.dumps(facts["table"], default=str))
    spoken = [t for t in facts["turns"] if t["audio_in_s"] > 1.0]
    assert spoken, facts["turns"]
    stages = [spoken[0][k] for k in ("vad_s", "transcript_s", "response_s", "audio_s",
                                     "played_s")]
    assert all(v is not None for v in stages), spoken[0]
    assert stages == sorted(stages) and stages[0] >= 0, stages
    assert facts["probe"].get("heard") is False and "output_ms" in facts["probe"]
