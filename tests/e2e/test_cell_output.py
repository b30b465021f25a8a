"""Output stays in its cell, in a real JupyterLab (started by ``scripts/lab``) and headless
Chromium: cells print after ``%rtchat`` while the page is still loading the widget, while a
blocking cell runs, while reply audio flows to the page and while a tool the agent calls fails;
each line lands under the cell that printed it, and the failing tool's traceback lands in no
cell (the widget and ``session.events`` have it). Then the chat is closed: the widget stays on
the page, read-only, marked closed, with its transcript. Loopback only."""

from __future__ import annotations

import re
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
        raise RuntimeError("the cell output test needs chromium (apt-get install chromium)")
    pytest.skip("chromium is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(400)

STORY = " ".join(["The sea was calm and the boat drifted slowly under a pale sky."] * 3)
CELLS = [
    f"""%load_ext rtwidget
import sys, time
import rtwidget as rt
from rtwidget.server import LocalServer, ScriptedReplyEngine, Rule
server = LocalServer(engine=ScriptedReplyEngine(rules=[
    Rule("explode", calls=[("explode", {{}})]), Rule("story", say={STORY!r})])).start_in_thread()

@rt.tool
def explode() -> str:
    \"\"\"Always fails.\"\"\"
    raise ZeroDivisionError("the tool failed on purpose")""",
    "%rtchat --url {server.url} --tools explode",
    'print("out-2: while the page loads the widget")',
    'time.sleep(3); print("out-3: after a blocking sleep")',
    'chat.say("Tell me a story."); time.sleep(2.5); print("out-4: while audio flows")',
    'chat.say("Please explode."); time.sleep(3); print("out-5: while the tool fails")\n'
    'print("err-5: to stderr", file=sys.stderr)',
    'time.sleep(1); print("out-6: after it all")',
]
EXPECTED = {2: ["out-2"], 3: ["out-3"], 4: ["out-4"], 5: ["out-5", "err-5"], 6: ["out-6"]}

CELL_OUTPUTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map((c) => {
    const outs = [...c.querySelectorAll('.jp-OutputArea-output')];
    // the text of its outputs, the widget's own view left out
    const text = outs.filter((o) => !o.querySelector('.rtw')).map((o) => o.textContent);
    return {text: text.join('\\n'), widgets: c.querySelectorAll('.rtw').length,
            count: (c.querySelector('.jp-InputPrompt') || {}).textContent || ''};
})"""
WIDGET = """() => { const w = document.querySelector('.rtw'); return w && {
    status: w.dataset.status, ended: w.dataset.ended, ready: w.dataset.ready,
    notice: w.querySelector('.rtw-notice').textContent,
    error: w.querySelector('.rtw-error').textContent,
    rows: [...w.querySelectorAll('.rtw-row')].map((r) => r.textContent),
    disabled: [...w.querySelectorAll('button, input, select')].every((e) => e.disabled)}; }"""


def outputs(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(CELL_OUTPUTS)


def wait_done(page: Any, count: int, timeout: float = 120_000) -> None:
    """Wait until the first ``count`` cells have run to the end (an execution count each)."""
    page.wait_for_function(
        f"() => {{ const cells = ({CELL_OUTPUTS})(); return cells.length >= {count} && "
        f"cells.slice(0, {count}).every((c) => /\\[\\d+\\]/.test(c.count)); }}",
        timeout=timeout)


def open_notebook(page: Any, url: str, name: str) -> None:
    page.goto(url.split("/lab")[0] + f"/lab/tree/{name}", timeout=90_000)
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                           timeout=90_000)
    page.add_style_tag(content=".Toastify { display: none !important; }")


@pytest.mark.parametrize("comms", ["subshell", "main shell"])
def test_each_cells_output_stays_in_its_cell(tmp_path: Path, comms: str) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "home"
    root.mkdir()
    write_notebook(root / "cells.ipynb", *CELLS)
    wav = write_wav(tmp_path / "quiet.wav", silence(5.0))
    OUTPUT.mkdir(exist_ok=True)
    # JupyterLab sends the widget's messages on a kernel subshell by default; the main shell
    # is the other way (and the one older set-ups use)
    settings = None if comms == "subshell" else {
        "@jupyterlab/apputils-extension:kernels-settings": {"commsOverSubshells": "disabled"}}
    name = "cell-output" + ("" if comms == "subshell" else "-main-shell")
    with lab(root, tmp_path, settings=settings) as (url, _), sync_playwright() as p, \
            fake_mic_page(p, wav, name) as page:
        open_notebook(page, url, "cells.ipynb")
        run_cell(page, 0)
        wait_done(page, 1)
        # %rtchat and the next cell at once: the second prints while the page loads the widget
        run_cell(page, 1)
        run_cell(page, 2)
        run_cell(page, 3)
        wait_done(page, 4)
        page.wait_for_function(f"() => {{ const w = ({WIDGET})(); "
                               "return w && w.status === 'connected'; }", timeout=60_000)
        run_cell(page, 4)
        run_cell(page, 5)
        run_cell(page, 6)
        wait_done(page, 7, timeout=180_000)
        page.wait_for_function(f"() => {{ const w = ({WIDGET})(); "
                               "return w.notice.includes('ZeroDivisionError'); }",
                               timeout=60_000)
        cells = outputs(page)
        widget = page.evaluate(WIDGET)
        facts = kernel_json(page, "{'messages': [e['message'] for e in chat.events['payload']"
                                  " if isinstance(e, dict) and e.get('type') =="
                                  " 'rtwidget.message'], 'played': chat.stats['audio_out']}")
        page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)
        # Space on a focused button of the widget presses that button, not push-to-talk
        page.locator(".rtw-stop").focus()
        page.keyboard.down("Space")
        page.wait_for_timeout(500)  # a push-to-talk press would show by now
        held = page.evaluate("() => { const w = document.querySelector('.rtw'); return"
                             " w.dataset.ptt === 'true' ||"
                             " w.textContent.includes('Push-to-talk'); }")
        page.keyboard.up("Space")

    for index, cell in enumerate(cells):
        marks = sorted(set(re.findall(r"\b(?:out|err)-\d\b", cell["text"])))
        assert marks == sorted(f"{m}" for m in EXPECTED.get(index, [])), (index, cell)
        assert "Traceback" not in cell["text"] and "ZeroDivisionError" not in cell["text"], \
            (index, cell)
    assert cells[1]["widgets"] == 1 and not cells[1]["text"].strip(), cells[1]
    assert facts["played"] > 0, facts  # audio flowed to the page while cells printed
    assert any("ZeroDivisionError" in m for m in facts["messages"]), facts
    assert any("explode" in r for r in widget["rows"]), widget
    assert held is False, "Space on a button started push-to-talk"


def test_a_closed_chat_stays_on_the_page_read_only_with_its_transcript(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "home"
    root.mkdir()
    write_notebook(root / "close.ipynb", CELLS[0], CELLS[1], 'chat.ask("Hello there.")',
                   "chat.close()")
    wav = write_wav(tmp_path / "quiet.wav", silence(5.0))
    OUTPUT.mkdir(exist_ok=True)
    with lab(root, tmp_path) as (url, _), sync_playwright() as p, \
            fake_mic_page(p, wav, "closed-chat") as page:
        open_notebook(page, url, "close.ipynb")
        run_cell(page, 0)
        wait_done(page, 1)
        run_cell(page, 1)
        page.wait_for_function(f"() => {{ const w = ({WIDGET})(); "
                               "return w && w.status === 'connected'; }", timeout=60_000)
        run_cell(page, 2)
        wait_done(page, 3)
        page.wait_for_function(f"() => {{ const w = ({WIDGET})(); "
                               "return w.rows.some((r) => r.includes('You said: Hello')); }",
                               timeout=30_000)
        run_cell(page, 3)
        wait_done(page, 4)
        page.wait_for_function(f"() => {{ const w = ({WIDGET})(); "
                               "return w && w.ended === 'true'; }", timeout=30_000)
        widget = page.evaluate(WIDGET)
        page.screenshot(path=str(OUTPUT / "closed-chat.png"), full_page=True)
        # saved and reloaded: the closed chat is drawn again from the kernel, transcript and all
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                               timeout=30_000)
        page.reload()
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                               timeout=90_000)
        page.wait_for_function(f"() => {{ const w = ({WIDGET})(); return w && "
                               "w.ended === 'true' && w.rows.length >= 2; }", timeout=60_000)
        reloaded = page.evaluate(WIDGET)

    assert widget["status"] == "closed" and widget["disabled"], widget
    assert "closed" in widget["notice"], widget
    assert any("Hello there." in r for r in widget["rows"]), widget
    assert any("You said: Hello" in r for r in widget["rows"]), widget
    assert reloaded["rows"] == widget["rows"] and reloaded["disabled"], reloaded
