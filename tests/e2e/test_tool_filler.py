"""End to end: a slow tool in the widget is not dead air. JupyterLab started by
``scripts/lab``, headless Chromium, the local server with scripted words spoken by Flite and a
4 s tool that reports progress. A typed question calls the tool; the page plays the spoken
filler (its played-samples counter moves) while the tool still runs, then the reply with the
result; the call's row shows its progress and ✕ while it runs. Loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import (
    CHROMIUM,
    FLITE,
    OUTPUT,
    REQUIRED,
    fake_mic_page,
    kernel_json,
    lab,
    open_and_run_all,
    silence,
    widget_rows,
    write_notebook,
    write_wav,
)

if not (CHROMIUM and FLITE):
    if REQUIRED:
        raise RuntimeError("the filler test needs chromium and flite (apt-get install chromium "
                           "flite); .ci/run installs them")
    pytest.skip("chromium or flite is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)

SETUP = """%load_ext rtwidget
import time
import rtwidget as rt
from rtwidget.server import FliteSynthesizer, LocalServer, Rule, ScriptedReplyEngine

rules = [Rule(r"weather in (?P<city>\\w+)", calls=[("get_weather", {"city": "{city}"})]),
         Rule(r"still running", say="One moment, let me check that.", on="instructions")]
server = LocalServer(engine=ScriptedReplyEngine(rules=rules),
                     synthesizer=FliteSynthesizer()).start_in_thread()


@rt.tool
def get_weather(city: str, ctx: rt.CallContext) -> dict:
    \"\"\"Current weather in a city.\"\"\"
    for step in range(4):
        ctx.progress("asking the weather service", step / 4)
        time.sleep(1)
    return {"city": city, "sky": "sunny"}"""
SHOW = """chat = rt.chat(url=server.url, transcription=None)
chat"""
STATE = """(lambda c: {
    "tools": {k: v.get("status") for k, v in c.tool_outcomes.items()},
    "fillers": [r.id for r in c.responses.values() if (r.metadata or {}).get("rtwidget")],
    "errors": [str(e) for e in chat.session.errors], "error": chat.error,
    "played": chat.df["played_s"].dropna().tolist(),
})(chat.session.conversation)"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root / "filler.ipynb", SETUP, SHOW)
    with lab(root, tmp_path) as (url, _):
        yield url.split("/lab/")[0], tmp_path


def state(page: Any) -> dict[str, Any]:
    return dict(kernel_json(page, STATE))


def test_the_filler_plays_while_the_tool_runs_then_the_result(
        served: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, tmp = served
    wav = write_wav(tmp / "quiet.wav", silence(5.0))
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p, fake_mic_page(p, wav, "tool-filler") as page:
        widget = open_and_run_all(page, f"{url}/lab/tree/filler.ipynb?reset")
        box = widget.locator(".rtw-text-input")
        box.fill("what is the weather in paris")
        box.press("Enter")
        # the page plays the filler: its played-samples counter moves
        page.wait_for_function("() => +document.querySelector('.rtw').dataset.playedMs > 300",
                               timeout=60_000)
        during = state(page)
        page.wait_for_selector(".rtw-tool-running", timeout=10_000)
        running_row = widget.locator(".rtw-tool-running").first.inner_text()
        widget.screenshot(path=str(OUTPUT / "tool-filler-running.png"))
        page.wait_for_function(
            "() => [...document.querySelectorAll('.rtw-assistant .rtw-text')]"
            ".some(e => e.textContent.includes('sunny'))", timeout=60_000)
        after = state(page)
        rows = widget_rows(page)
        shown_error = page.locator(".rtw-error").inner_text().strip()
        widget.screenshot(path=str(OUTPUT / "tool-filler.png"))
    (OUTPUT / "tool-filler.json").write_text(json.dumps(
        {"during": during, "after": after, "rows": rows, "running_row": running_row},
        indent=1))

    # the filler was heard while the tool still ran
    assert list(during["tools"].values()) == ["running"], during
    assert len(during["fillers"]) == 1, during
    assert "asking the weather service" in running_row and "✕" in running_row
    # then the result and its reply, with no error anywhere
    assert list(after["tools"].values()) == ["done"], after
    texts = [r["text"] for r in rows]
    assert "One moment, let me check that." in texts, texts
    assert texts.index("One moment, let me check that.") < len(texts) - 1
    assert shown_error == "" and after["error"] == "" and after["errors"] == [], after
