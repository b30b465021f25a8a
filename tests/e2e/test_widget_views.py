"""Widgets and views in a real JupyterLab (started by ``scripts/lab``) and headless Chromium:
two chats on one page keep their own conversations and audio, one chat shown in two cells has
one engine behind both views, and a view drawn again (its cell run again) finds the
conversation and the audio engine as they were. Typed turns only; loopback only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .lab import (
    CHROMIUM,
    OUTPUT,
    REQUIRED,
    fake_mic_page,
    kernel_json,
    lab,
    silence,
    write_notebook,
    write_wav,
)
from .test_browser import run_cell

if not CHROMIUM:
    if REQUIRED:
        raise RuntimeError("the widget views test needs chromium (apt-get install chromium)")
    pytest.skip("chromium is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)

CELLS = [
    """import rtwidget as rt
from rtwidget.server import LocalServer, ScriptedReplyEngine
server = LocalServer(engine=ScriptedReplyEngine()).start_in_thread()
first = rt.chat(url=server.url, voice="test")
second = rt.chat(url=server.url, voice="test")""",
    "first",
    "first",  # the same widget again: a second view of one model
    "second",
]
# JupyterLab sends widget messages to a kernel subshell by default and can send the first ones
# before the kernel knows that subshell: ipykernel drops them ("Cannot handle comm_msg ...:
# Unknown subshell_id", seen in a fresh-clone run of this test). This test is about models and
# views, so its JupyterLab sends comm messages on the main shell (the README's Troubleshooting
# tells users the same setting); the other browser tests keep the default.
NO_COMM_SUBSHELLS: dict[str, dict[str, object]] = {
    "@jupyterlab/apputils-extension:kernels-settings": {"commsOverSubshells": "disabled"}}
FACTS = "{name: {'stats': w.stats, 'transport': w.transport, 'error': w.error}" \
        " for name, w in (('first', first), ('second', second))}"

VIEWS = """() => [...document.querySelectorAll('.rtw')].map((w) => ({
    ready: w.dataset.ready === 'true', status: w.dataset.status, fresh: !w.dataset.mark,
    started: +w.dataset.started, playedMs: +w.dataset.playedMs,
    rows: [...w.querySelectorAll('.rtw-row')].map((r) => r.textContent)}))"""


def views(page: Any) -> list[dict[str, Any]]:
    """Each widget view on the page, in notebook order: its state and its transcript."""
    return page.evaluate(VIEWS)


def wait_for_views(page: Any, test: str, timeout: float = 60_000) -> None:
    """Wait until ``test`` (JavaScript, over ``views``, the list ``VIEWS`` returns) holds."""
    page.wait_for_function(f"() => {{ const views = ({VIEWS})(); return {test}; }}",
                           timeout=timeout)


def type_into(page: Any, view: int, text: str) -> None:
    box = page.locator(".rtw-text-input").nth(view)
    box.fill(text)
    box.press("Enter")


def said(view: dict[str, Any], word: str) -> bool:
    return any(f"You said: {word}" in row for row in view["rows"])


def test_two_widgets_two_views_of_one_and_a_view_drawn_again(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "home"
    root.mkdir()
    write_notebook(root / "views.ipynb", *CELLS)
    wav = write_wav(tmp_path / "quiet.wav", silence(5.0))
    OUTPUT.mkdir(exist_ok=True)
    with lab(root, tmp_path, settings=NO_COMM_SUBSHELLS) as (url, _), \
            sync_playwright() as p, \
            fake_mic_page(p, wav, "widget-views") as page:
        page.goto(url.split("/lab")[0] + "/lab/tree/views.ipynb", timeout=90_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                               timeout=90_000)
        page.add_style_tag(content=".Toastify { display: none !important; }")
        for index in range(len(CELLS)):
            run_cell(page, index)
        wait_for_views(page, "views.length === 3 && views.every((v) => v.ready &&"
                             " v.status === 'connected')", timeout=120_000)

        # a turn typed in the first view: both views of that chat show it and play its reply
        type_into(page, 0, "alpha")
        wait_for_views(page, "views[0].rows.some((r) => r.includes('You said: alpha'))"
                             " && views[1].rows.some((r) => r.includes('You said: alpha'))"
                             " && views[0].playedMs > 0")
        # a turn in the other chat stays in that chat
        type_into(page, 2, "beta")
        wait_for_views(page, "views[2].rows.some((r) => r.includes('You said: beta'))"
                             " && views[2].playedMs > 0")
        page.wait_for_timeout(1000)
        before = views(page)

        # the second view of the first chat is drawn again: it finds the conversation as it was,
        # and a turn typed there plays through the same engine
        page.evaluate("() => { document.querySelectorAll('.rtw')[1].dataset.mark = 'old'; }")
        run_cell(page, 2)
        wait_for_views(page, "views.length === 3 && views[1].fresh && views[1].ready"
                             " && views[1].rows.some((r) => r.includes('You said: alpha'))")
        type_into(page, 1, "gamma")
        wait_for_views(page, "views[0].rows.some((r) => r.includes('You said: gamma'))"
                             " && views[1].rows.some((r) => r.includes('You said: gamma'))"
                             f" && views[1].started > {before[0]['started']}")
        page.wait_for_timeout(1000)
        after = views(page)
        facts = kernel_json(page, FACTS)
        page.screenshot(path=str(OUTPUT / "widget-views.png"), full_page=True)

    first, again, second = before
    assert first["rows"] == again["rows"] and said(first, "alpha"), before
    assert not said(first, "beta") and said(second, "beta") and not said(second, "alpha"), before
    # one engine behind both views of a chat: the same audio counters in each
    assert first["started"] == again["started"] >= 1, before
    assert first["playedMs"] == again["playedMs"] > 0, before
    assert second["started"] >= 1, before
    assert after[0]["rows"] == after[1]["rows"] and said(after[1], "gamma"), after
    assert after[1]["started"] == after[0]["started"] > first["started"], after
    assert not any(said(after[2], w) for w in ("alpha", "gamma")), after
    for name, fact in facts.items():
        assert fact["transport"] == "binary" and not fact["error"], (name, fact)
        assert fact["stats"]["audio_out"] > 0 and fact["stats"]["audio_dropped"] == 0, fact
