"""The voice chat beyond JupyterLab's defaults, end to end in headless Chromium with a fake
microphone speaking in Flite's voice, the local server with PocketSphinx, and a tool:

- Jupyter Notebook 7: a spoken turn is transcribed, answered through a tool call, and the reply
  is played;
- a front end whose widget manager drops binary comm buffers, as Colab's does (simulated on the
  kernel's side of the comm, where every buffer is dropped both ways): page and kernel agree on
  base64 and the same spoken turn and playback go through;
- marimo (``marimo run``): the same spoken turn, tool call and playback, the widget shown with
  ``mo.ui.anywidget(rt.chat())``;
- push-to-talk in JupyterLab: a turn spoken while the button is held, then Space held while the
  agent tells a story cuts it, and the turn is answered on release.

Loopback only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually

from .lab import (
    CHROMIUM,
    FLITE,
    OUTPUT,
    REQUIRED,
    fake_mic_page,
    kernel_json,
    lab,
    marimo_app,
    notebook7,
    open_and_run_all,
    silence,
    speech,
    widget_rows,
    write_notebook,
    write_wav,
)

NEEDED = ("pocketsphinx", "notebook", "marimo")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if not (CHROMIUM and FLITE) or MISSING:
    if REQUIRED:
        raise RuntimeError(f"the front-end browser tests need chromium, flite, pocketsphinx, "
                           f"notebook and marimo (missing: {MISSING}); .ci/run installs them")
    pytest.skip("chromium, flite, pocketsphinx, notebook or marimo is missing",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(600)

QUESTION = "what time is it"
STORY = " ".join(["Once upon a time a small boat sailed across a wide grey sea."] * 12)
SETUP = f'''import rtwidget as rt
from rtwidget.server import LocalServer, PocketsphinxTranscriber, Rule, ScriptedReplyEngine

@rt.tool
def what_time() -> str:
    """The time right now."""
    return "half past ten"

rules = [Rule(r"story", say={STORY!r}), Rule(r"\\w", calls=[("what_time", {{}})])]
server = LocalServer(engine=ScriptedReplyEngine(rules=rules, after_tool="It is {{output}}."),
                     transcriber=PocketsphinxTranscriber()).start_in_thread()
chat = rt.chat(url=server.url, voice="test", transcription="pocketsphinx")'''
# what Colab's widget manager does to comm messages, done on the kernel's side of the comm
DROP_BUFFERS = '''_send, _handle = chat.comm.send, chat.comm.handle_msg
chat.comm.send = lambda data=None, metadata=None, buffers=None: _send(data=data,
                                                                     metadata=metadata)
chat.comm.handle_msg = lambda msg: _handle({**msg, "buffers": []})'''
FACTS = ("{'transport': chat.transport, 'stats': chat.stats, 'error': chat.error, "
         "'rows': _j.loads(chat.df[['role', 'type', 'status', 'text', 'audio_in_s', "
         "'truncated_ms', 'output']].to_json(orient='records'))}")


def wait_for_tool_reply(page: Any, timeout: float = 120_000) -> None:
    """A tool was called and the reply stating its result was played."""
    page.wait_for_selector(".rtw-function_call_output .rtw-tool-output", timeout=timeout)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rtw-assistant .rtw-text')]"
        ".some(e => e.textContent.includes('half past ten'))"
        " && +document.querySelector('.rtw').dataset.playedMs > 200", timeout=timeout)


def run_spoken_turn(name: str, url_of: Any, cells: list[str], tmp: Path,
                    serve: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The hands-free turn: press Start mic, the fake mic asks the question, the reply (after
    a tool call) plays. Returns the kernel's facts and the rows the widget shows."""
    from playwright.sync_api import sync_playwright

    root = tmp / "home"
    root.mkdir()
    write_notebook(root / "voice.ipynb", *cells)
    wav = write_wav(tmp / "question.wav", silence(1.0), speech(QUESTION), silence(60.0))
    OUTPUT.mkdir(exist_ok=True)
    with serve(root, tmp) as served, sync_playwright() as p, fake_mic_page(p, wav, name) as page:
        widget = open_and_run_all(page, url_of(served))
        page.locator(".rtw-mic").click()
        wait_for_tool_reply(page)
        facts = kernel_json(page, FACTS)
        shown = widget_rows(page)
        widget.screenshot(path=str(OUTPUT / f"{name}.png"))
    return facts, shown


def check_spoken_turn(facts: dict[str, Any], shown: list[dict[str, str]]) -> None:
    rows = facts["rows"]
    spoken = [r for r in rows if r["role"] == "user" and r["audio_in_s"] > 0.5]
    assert spoken and spoken[0]["text"], rows  # the turn was heard and transcribed
    assert spoken[0]["text"] in [r["text"] for r in shown if r["role"] == "user"]
    assert any(r["type"] == "function_call_output" and r["output"] == "half past ten"
               for r in rows), rows
    assert facts["stats"]["bad_frames"] == 0 and facts["stats"]["frames_in"] > 25
    assert facts["stats"]["audio_out"] > 0 and not facts["error"], facts


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def test_notebook7_spoken_turn_tool_call_and_playback(tmp: Path) -> None:
    facts, shown = run_spoken_turn(
        "notebook7", lambda base: f"{base}/notebooks/voice.ipynb", [SETUP, "chat"], tmp,
        notebook7)
    check_spoken_turn(facts, shown)
    assert facts["transport"] == "binary"


def test_a_front_end_that_drops_buffers_talks_and_plays_in_base64(tmp: Path) -> None:
    facts, shown = run_spoken_turn(
        "bufferless", lambda served: served[0].split("/lab")[0] + "/lab/tree/voice.ipynb",
        [SETUP, DROP_BUFFERS, "chat"], tmp, lab)
    check_spoken_turn(facts, shown)
    assert facts["transport"] == "base64"


CENTRE = """(selector) => {
    const el = document.querySelector(selector);
    const box = el.getBoundingClientRect();
    return [box.x + box.width / 2, box.y + box.height / 2];
}"""


def test_push_to_talk_button_and_space_key(tmp: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp / "home"
    root.mkdir()
    write_notebook(root / "voice.ipynb", SETUP, "chat")
    question = speech(QUESTION)
    seconds = len(question) / 48_000
    # the fake mic starts its file when the first press opens the mic, and loops it
    wav = write_wav(tmp / "ptt.wav", silence(0.5), question, silence(1.5))
    OUTPUT.mkdir(exist_ok=True)
    with lab(root, tmp) as (url, _), sync_playwright() as p, \
            fake_mic_page(p, wav, "push-to-talk") as page:
        widget = open_and_run_all(page, url.split("/lab")[0] + "/lab/tree/voice.ipynb")
        x, y = page.evaluate(CENTRE, ".rtw-ptt")
        page.mouse.move(x, y)
        page.mouse.down()
        page.wait_for_selector('.rtw[data-ptt="true"]', timeout=10_000)
        page.wait_for_timeout(int((0.5 + seconds + 0.6) * 1000))
        page.mouse.up()
        wait_for_tool_reply(page)
        first = kernel_json(page, FACTS)
        # a story, then Space held over it: the agent stops where it was heard
        page.locator(".rtw-text-input").fill("tell me a story")
        page.locator(".rtw-text-input").press("Enter")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.rtw-assistant .rtw-text')]"
            ".some(e => e.textContent.includes('small boat'))"
            " && document.querySelector('.rtw').dataset.state === 'speaking'",
            timeout=60_000)
        page.wait_for_timeout(1500)
        page.locator(".rtw-transport").click()  # focus the widget (not the text box)
        page.keyboard.down("Space")
        page.wait_for_selector(".rtw-assistant.rtw-cut", timeout=20_000)
        page.wait_for_timeout(int((2 * (2.0 + seconds) + 0.5) * 1000))  # the question, whole
        page.keyboard.up("Space")
        page.wait_for_function(
            "() => document.querySelectorAll('.rtw-function_call_output').length >= 2",
            timeout=120_000)
        facts = kernel_json(page, FACTS)
        vad = kernel_json(page, "chat.session.conversation.session['audio']['input']"
                                ".get('turn_detection', 'unset')")
        widget.screenshot(path=str(OUTPUT / "push-to-talk.png"))

    check_spoken_turn(first, [{"role": "user", "text": r["text"]} for r in first["rows"]])
    assert vad is None  # push-to-talk turned the server's VAD off
    rows = facts["rows"]
    cut = [r for r in rows if r["role"] == "assistant" and r["truncated_ms"] is not None]
    assert len(cut) == 1 and cut[0]["truncated_ms"] > 500, rows
    assert STORY.startswith(cut[0]["text"]) and len(cut[0]["text"]) < len(STORY)  # words heard
    users = [r for r in rows if r["role"] == "user" and r["audio_in_s"] > 0.5]
    assert len(users) == 2, rows  # two held turns, each committed on release
    assert first["stats"]["frames_in"] < facts["stats"]["frames_in"]
    assert not facts["error"] and facts["stats"]["bad_frames"] == 0, facts


# a marimo app: the chat in a cell; a thread writes the kernel's facts where the test reads them
MARIMO_APP = """import marimo

app = marimo.App()


@app.cell
def _():
    import json
    import os
    import threading
    import time

    import marimo as mo

{setup}

    def report():
        path = os.environ["RT_FACTS"]
        while True:
            facts = {facts}
            with open(path + ".tmp", "w") as f:
                json.dump(facts, f)
            os.replace(path + ".tmp", path)
            time.sleep(0.5)

    threading.Thread(target=report, daemon=True).start()
    shown = mo.ui.anywidget(chat)
    shown
    return
"""


def test_marimo_spoken_turn_tool_call_and_playback(tmp: Path) -> None:
    from playwright.sync_api import sync_playwright

    setup = "\n".join("    " + line if line else "" for line in SETUP.splitlines())
    app = tmp / "voice.py"
    app.write_text(MARIMO_APP.format(setup=setup, facts=FACTS.replace("_j.", "json.")))
    facts_path = tmp / "facts.json"
    wav = write_wav(tmp / "question.wav", silence(1.0), speech(QUESTION), silence(60.0))
    OUTPUT.mkdir(exist_ok=True)
    with marimo_app(app, tmp, {"RT_FACTS": str(facts_path)}) as url, sync_playwright() as p, \
            fake_mic_page(p, wav, "marimo") as page:
        page.goto(url, timeout=90_000)
        widget = page.locator(".rtw[data-ready=true]")  # (inside marimo's shadow root)
        widget.wait_for(timeout=120_000)
        page.locator('.rtw[data-status="connected"]').wait_for(timeout=60_000)
        page.locator(".rtw[data-transport]").wait_for(timeout=30_000)
        page.locator(".rtw-mic").click()
        page.locator(".rtw-function_call_output .rtw-tool-output").wait_for(
            timeout=120_000)
        page.locator(".rtw-assistant .rtw-text", has_text="half past ten").wait_for(
            timeout=120_000)
        eventually(lambda: float(widget.get_attribute("data-played-ms") or 0) > 200, 60,
                   "the reply being played")
        shown = [{"role": "user", "text": t}
                 for t in page.locator(".rtw-user .rtw-text").all_text_contents()]
        transport = widget.get_attribute("data-transport")
        widget.screenshot(path=str(OUTPUT / "marimo.png"))

        def facts_of_the_turn() -> dict[str, Any]:  # the file is rewritten every 0.5 s
            facts: dict[str, Any] = json.loads(facts_path.read_text())
            check_spoken_turn(facts, shown)
            return facts

        facts = eventually(facts_of_the_turn, 30)
    assert facts["transport"] == transport == "binary"  # marimo carries buffers both ways
