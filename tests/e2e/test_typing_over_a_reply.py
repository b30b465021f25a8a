"""End to end: typing a turn in the widget while a long spoken reply plays. JupyterLab started
by ``scripts/lab``, headless Chromium (its fake mic is not used), the local server with a
scripted story spoken by Flite. Two cases: the server is still making the story when the turn
is typed (slowed down: the story is cancelled), and the server has finished it while the page
still plays it (as providers make audio faster than it is spoken: nothing to cancel). Either
way the story must be cut where the page had played it, the typed turn answered, and no error
shown (the server refuses a second active response, as hosted providers do). Loopback only."""

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
        raise RuntimeError("the typing test needs chromium and flite (apt-get install chromium "
                           "flite); .ci/run installs them")
    pytest.skip("chromium or flite is not installed", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)

TYPED = "what time is it"
SETUP = """%load_ext rtwidget
import rtwidget as rt
from rtwidget.server import FliteSynthesizer, LocalServer, Rule, ScriptedReplyEngine

story = " ".join(f"This is sentence number {{i}} of a long story about the sea." for i in range(40))
server = LocalServer(engine=ScriptedReplyEngine(rules=[Rule(r"long story", say=story)]),
                     synthesizer=FliteSynthesizer(), pace={pace}).start_in_thread()"""
SHOW = """chat = rt.chat(url=server.url, transcription=None)
chat"""
CASES = {"being made": (0.05, "cancelled"), "made, still playing": (0.0, "completed")}

# a copy (list(...)) of the responses, which the session's thread adds to while this reads them
# (the event log copies itself when iterated)
FACTS = """(lambda c: {
    "error": chat.error, "errors": [str(e) for e in chat.session.errors],
    "stats": chat.stats,
    "items": [{"id": i.id, "role": i.role, "text": i.display_text, "transcript": i.transcript,
               "status": i.status, "received_ms": i.audio_out_bytes // 48,
               "truncated_ms": i.truncated_ms, "response_id": i.response_id} for i in c],
    "responses": {r.id: r.status for r in list(c.responses.values())},
    "log": [[e.direction, e.type, e.payload.get("audio_end_ms"),
             (e.payload.get("response") or {}).get("id")] for e in c.log
            if e.type in ("response.create", "response.cancel", "response.done",
                          "conversation.item.create", "conversation.item.truncate",
                          "conversation.item.truncated", "error")],
})(chat.session.conversation)"""


@pytest.fixture(params=list(CASES))
def served(request: pytest.FixtureRequest, tmp_path: Path
           ) -> Iterator[tuple[str, Path, str]]:
    root = tmp_path / "lab"
    root.mkdir()
    pace, _ = CASES[request.param]
    write_notebook(root / "typing.ipynb", SETUP.format(pace=pace), SHOW)
    with lab(root, tmp_path) as (url, _):
        yield url.split("/lab/")[0], tmp_path, request.param


def facts(page: Any) -> dict[str, Any]:
    return dict(kernel_json(page, FACTS))


def test_typing_while_the_agent_talks_cuts_the_reply_and_answers(
        served: tuple[str, Path, str]) -> None:
    from playwright.sync_api import sync_playwright

    url, tmp, case = served
    _, story_status = CASES[case]
    name = "typing-over-a-reply" + ("" if story_status == "cancelled" else "-made")
    wav = write_wav(tmp / "quiet.wav", silence(5.0))
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p, fake_mic_page(p, wav, name) as page:
        widget = open_and_run_all(page, f"{url}/lab/tree/typing.ipynb?reset")
        box = widget.locator(".rtw-text-input")

        box.fill("tell me a long story")
        box.press("Enter")
        # the story is being spoken: let the page play a good stretch of it
        page.wait_for_function("() => { const w = document.querySelector('.rtw');"
                               " return w.dataset.state === 'speaking'"
                               " && +w.dataset.playedMs > 2500; }", timeout=120_000)
        if story_status == "completed":  # the server has made all of it; the page plays on
            for _ in range(60):
                if "in_progress" not in facts(page)["responses"].values():
                    break
                page.wait_for_timeout(250)
            assert widget.get_attribute("data-state") == "speaking"
        played_before = int(widget.get_attribute("data-played-ms") or 0)
        box.fill(TYPED)
        box.press("Enter")
        try:
            page.wait_for_function(
                "(typed) => [...document.querySelectorAll('.rtw-assistant .rtw-text')]"
                ".some(e => e.textContent.includes('You said: ' + typed))", arg=TYPED,
                timeout=60_000)
        except Exception:  # say what the kernel and the page had, to tell why
            widget.screenshot(path=str(OUTPUT / f"{name}-no-answer.png"))
            raise AssertionError(f"the typed turn was not answered on the page: "
                                 f"{json.dumps(facts(page))[-3000:]}; rows: "
                                 f"{json.dumps(widget_rows(page))[-1500:]}") from None

        def finished(seen: dict[str, Any]) -> bool:
            return all(s != "in_progress" for s in seen["responses"].values())

        seen = facts(page)
        for _ in range(60):
            if finished(seen):
                break
            page.wait_for_timeout(500)
            seen = facts(page)
        rows = widget_rows(page)
        shown_error = page.locator(".rtw-error").inner_text().strip()
        widget.screenshot(path=str(OUTPUT / f"{name}.png"))
    (OUTPUT / f"{name}.json").write_text(json.dumps(
        {"facts": seen, "rows": rows, "played_before": played_before}, indent=1))

    # no error anywhere: on screen, on the widget, in the session
    assert shown_error == "" and seen["error"] == "" and seen["errors"] == [], seen
    assert finished(seen), seen["responses"]
    story = next(i for i in seen["items"] if i["role"] == "assistant")
    assert seen["responses"][story["response_id"]] == story_status
    # cut where it was heard: after what the page had played when the turn was typed, before
    # the end of what the kernel had received of it, and the words heard kept
    cut = story["truncated_ms"]
    assert cut is not None and 0 < cut < story["received_ms"], story
    assert cut >= played_before - 1000, (cut, played_before)
    assert story["text"] and story["text"] != story["transcript"]
    assert story["transcript"].startswith(story["text"]), story
    assert any(r["cut"] and r["text"] == story["text"] for r in rows), rows
    # then the typed turn, answered
    users = [i["text"] for i in seen["items"] if i["role"] == "user"]
    assert users == ["tell me a long story", TYPED], users
    answer = seen["items"][-1]
    assert answer["role"] == "assistant" and answer["text"] == f"You said: {TYPED}", answer
    assert answer["truncated_ms"] is None
    # the order on the wire: (the cancel,) the story's end, the cut, then the typed turn's create
    log = seen["log"]
    cancels = [n for n, e in enumerate(log) if e[:2] == ["out", "response.cancel"]]
    ended = next(n for n, e in enumerate(log) if e[:2] == ["in", "response.done"]
                 and e[3] == story["response_id"])
    truncate = next(n for n, e in enumerate(log) if e[:2] == ["out",
                                                             "conversation.item.truncate"])
    creates = [n for n, e in enumerate(log) if e[:2] == ["out", "response.create"]]
    assert len(creates) == 2 and ended < creates[1] and truncate < creates[1], log
    if story_status == "cancelled":
        assert len(cancels) == 1 and cancels[0] < ended, log
    else:
        assert cancels == [], log
    assert seen["stats"]["truncations"] == 1
