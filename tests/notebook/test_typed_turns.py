"""Typing while the agent talks, with real parts: the local server on 127.0.0.1 (it refuses a
second active response as hosted providers do), a real session, and the widget's own message
handler. A typed turn interrupts the reply; ``ask()`` waits for it; no ``error`` either way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FAST_RETRY, eventually, frames, utterance
from support.fake_browser import FakeBrowser, vad

import rtwidget as rt
from rtwidget import RealtimeSession
from rtwidget.protocol.errors import WaitTimeout
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine

STORY = "tell me a long story"


@pytest.fixture
def slow() -> Iterator[LocalServer]:
    """The server with replies slowed down, so the story (about 3 s) is still going when we
    type."""
    story = " ".join(f"Sentence number {i} of the story." for i in range(25))
    engine = ScriptedReplyEngine(rules=[Rule(r"long story", say=story)])
    with LocalServer(engine=engine, pace=0.02) as srv:
        yield srv


@pytest.fixture
def talk(slow: LocalServer) -> Iterator[RealtimeSession]:
    with RealtimeSession("local", url=slow.url, reconnect=FAST_RETRY,
                         output_modalities=["text"]) as s:
        yield s


def story_underway(session: RealtimeSession) -> str:
    """Start the long story and return its response id once its words are coming."""
    words = session.expect("response.output_text.delta")
    session.say(STORY)
    return str(words.wait()["response_id"])


def log_of(session: RealtimeSession) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.direction, e.type, e.payload) for e in list(session.conversation.log)]


def position(log: list[tuple[str, str, dict[str, Any]]], direction: str, kind: str,
             test: Any = lambda payload: True) -> int:
    return next(i for i, (d, k, p) in enumerate(log) if d == direction and k == kind
                and test(p))


def answer_to(session: RealtimeSession, text: str) -> str:
    """The reply that follows the user's ``text``, once complete."""
    def reply() -> str:
        items = list(session.conversation)
        for i, item in enumerate(items):
            if item.role == "user" and item.text == text and i + 1 < len(items):
                after = items[i + 1]
                return after.display_text if after.status == "completed" else ""
        return ""
    return str(eventually(reply, 20, f"the reply to {text!r}"))


def test_say_during_a_reply_interrupts_it_and_is_answered(talk: RealtimeSession) -> None:
    story = story_underway(talk)
    talk.say("hello")
    assert answer_to(talk, "hello") == "You said: hello"
    assert talk.conversation.responses[story].status == "cancelled"
    assert talk.errors == []
    log = log_of(talk)
    story_done = position(log, "in", "response.done", lambda p: p["response"]["id"] == story)
    cancel = position(log, "out", "response.cancel")
    typed = position(log, "out", "conversation.item.create",
                     lambda p: p["item"]["content"][0].get("text") == "hello")
    creates = [i for i, (d, k, _) in enumerate(log) if d == "out" and k == "response.create"]
    assert cancel < story_done < typed < creates[-1]  # the server never saw two at once
    assert [i.text for i in talk.conversation if i.role == "user"] == [STORY, "hello"]


def test_ask_during_a_reply_waits_for_it_and_gets_its_own_answer(talk: RealtimeSession
                                                                 ) -> None:
    story = story_underway(talk)
    assert talk.ask("and now?") == "You said: and now?"
    response = talk.conversation.responses[story]
    assert response.status == "completed"  # not interrupted
    assert talk.errors == []
    log = log_of(talk)
    story_done = position(log, "in", "response.done", lambda p: p["response"]["id"] == story)
    asked = position(log, "out", "conversation.item.create",
                     lambda p: p["item"]["content"][0].get("text") == "and now?")
    assert story_done < asked


def test_an_ask_that_runs_out_of_time_while_waiting_is_not_sent(talk: RealtimeSession) -> None:
    story = story_underway(talk)
    with pytest.raises(WaitTimeout):
        talk.ask("never mind", timeout=0.3)
    done = talk.expect(lambda ev: ev.get("type") == "response.done")
    talk.cancel(story)
    done.wait()
    assert talk.ask("after all") == "You said: after all"
    assert "never mind" not in [i.text for i in talk.conversation]
    assert talk.errors == []


def test_turns_typed_one_after_another_are_all_answered(talk: RealtimeSession) -> None:
    for text in ("one", "two", "three"):
        talk.say(text)
    assert answer_to(talk, "three") == "You said: three"
    assert [i.text for i in talk.conversation if i.role == "user"] == ["one", "two", "three"]
    assert talk.errors == []


def test_create_response_waits_for_the_reply_in_progress(talk: RealtimeSession) -> None:
    story = story_underway(talk)
    second = talk.expect(lambda ev: ev.get("type") == "response.done"
                         and ev["response"]["id"] != story, timeout=30)
    talk.create_response(max_output_tokens=3)  # (the story again, cut short)
    assert second.wait()["response"]["status"] == "incomplete"
    assert talk.conversation.responses[story].status == "completed"
    assert talk.errors == []


# --- the widget ------------------------------------------------------------------------------


@pytest.fixture
def shown(slow: LocalServer) -> Iterator[tuple[rt.VoiceChat, FakeBrowser]]:
    chat = rt.chat("local", url=slow.url)
    browser = FakeBrowser(chat)
    browser.answers_stops = False  # the tests answer as the page would, or not at all
    browser.wait(lambda: chat.status == "connected")
    browser.message({"type": "ready"})
    yield chat, browser
    chat.close()


def spoken_story(chat: rt.VoiceChat, browser: FakeBrowser) -> tuple[str, str]:
    """The story, its audio reaching the page: its response id and item id."""
    chat.say(STORY)
    first = browser.wait(lambda: browser.of_type("reply_audio"))
    browser.wait(lambda: len(browser.of_type("reply_audio")) >= 5)
    assert not browser.of_type("flush")  # nothing was playing: nothing to stop or wait for
    item_id = first[0][0]["item_id"]
    item = chat.session.conversation.get(item_id)
    assert item is not None and item.response_id is not None
    return item.response_id, item_id


def test_typing_in_the_widget_during_a_reply_cuts_it_where_heard(shown) -> None:
    chat, browser = shown
    story, item_id = spoken_story(chat, browser)
    truncated = chat.session.expect("conversation.item.truncated")
    browser.message({"type": "text", "text": "hello"})
    # the page is told to stop; it reports what it played, then that it has stopped
    browser.wait(lambda: [m for m, _ in browser.of_type("flush") if m["reason"] == "turn"])
    browser.message({"type": "playback_stopped", "item_id": item_id, "audio_end_ms": 300,
                     "reason": "turn"})
    browser.message({"type": "turn_flushed"})
    assert truncated.wait()["audio_end_ms"] == 300
    assert answer_to(chat.session, "hello") == "You said: hello"
    assert chat.session.conversation.responses[story].status == "cancelled"
    assert chat.error == "" and chat.session.errors == []
    row = chat.df.set_index("item_id").loc[item_id]
    assert row["truncated_ms"] == 300 and row["audio_out_s"] == pytest.approx(0.3)
    log = log_of(chat.session)
    cut = position(log, "out", "conversation.item.truncate")
    creates = [i for i, (d, k, _) in enumerate(log) if d == "out" and k == "response.create"]
    assert cut < creates[-1]  # the model answers knowing what was heard


def test_say_from_code_stops_the_page_too(shown) -> None:
    chat, browser = shown
    story, item_id = spoken_story(chat, browser)
    truncated = chat.session.expect("conversation.item.truncated")
    chat.say("hello from code")
    browser.wait(lambda: [m for m, _ in browser.of_type("flush") if m["reason"] == "turn"])
    browser.message({"type": "playback_stopped", "item_id": item_id, "audio_end_ms": 120,
                     "reason": "turn"})
    browser.message({"type": "turn_flushed"})
    assert truncated.wait()["audio_end_ms"] == 120
    assert answer_to(chat.session, "hello from code") == "You said: hello from code"
    assert chat.session.conversation.responses[story].status == "cancelled"
    assert chat.error == "" and chat.session.errors == []


def test_a_reply_the_server_has_finished_is_still_cut_where_the_page_is(shown) -> None:
    """Replies are made faster than they are spoken: one the server has ended may still be
    playing when the turn is typed. It is not cancelled (nothing to cancel), but the page
    stops and the reply is cut where it was heard, before the turn goes out."""
    chat, browser = shown
    done = chat.session.expect("response.done")
    chat.say("a short one")
    reply = done.wait()["response"]
    (item_id,) = [o["id"] for o in reply["output"]]
    truncated = chat.session.expect("conversation.item.truncated")
    browser.message({"type": "text", "text": "next"})
    browser.wait(lambda: [m for m, _ in browser.of_type("flush") if m["reason"] == "turn"])
    browser.message({"type": "playback_stopped", "item_id": item_id, "audio_end_ms": 400,
                     "reason": "turn"})
    browser.message({"type": "turn_flushed"})
    assert truncated.wait()["audio_end_ms"] == 400
    assert answer_to(chat.session, "next") == "You said: next"
    assert chat.session.conversation.responses[reply["id"]].status == "completed"
    log = log_of(chat.session)
    assert not [e for e in log if e[:2] == ("out", "response.cancel")]
    cut = position(log, "out", "conversation.item.truncate")
    creates = [i for i, (d, k, _) in enumerate(log) if d == "out" and k == "response.create"]
    assert cut < creates[-1]
    assert chat.session.errors == [] and chat.error == ""


def test_a_page_that_never_reports_holds_the_turn_back_only_briefly(shown) -> None:
    chat, browser = shown
    chat._link.interrupts.report_wait = 0.2
    story, _ = spoken_story(chat, browser)
    browser.message({"type": "text", "text": "anyone there?"})
    assert answer_to(chat.session, "anyone there?") == "You said: anyone there?"
    assert chat.session.conversation.responses[story].status == "cancelled"
    assert chat.error == "" and chat.session.errors == []


def test_stop_then_the_pages_report_cancel_the_reply_once(shown) -> None:
    chat, browser = shown
    _, item_id = spoken_story(chat, browser)
    done = chat.session.expect(lambda ev: ev.get("type") == "response.done")
    browser.message({"type": "interrupt"})  # ■ Stop
    browser.message({"type": "playback_stopped", "item_id": item_id, "audio_end_ms": 200,
                     "reason": "user"})
    assert done.wait()["response"]["status"] == "cancelled"
    assert chat.ask("still there?") == "You said: still there?"
    cancels = [e for e in log_of(chat.session) if e[:2] == ("out", "response.cancel")]
    assert len(cancels) == 1 and chat.session.errors == [] and chat.error == ""


def test_push_to_talk_over_a_reply_asks_once_it_has_ended(shown) -> None:
    chat, browser = shown
    story, _ = spoken_story(chat, browser)
    browser.message({"type": "ptt", "on": True})
    browser.wait(lambda: vad(chat) is None)  # the server's turn detection is off
    browser.message({"type": "mic", "on": True, "ptt": True})
    for seq, frame in enumerate(frames(utterance(tail_ms=300), ms=40), start=1):
        browser.message({"type": "mic_audio", "seq": seq}, [frame])
    committed = chat.session.expect("input_audio_buffer.committed")
    browser.message({"type": "ptt", "on": False})
    committed.wait()
    eventually(lambda: len(chat.session.conversation.responses) == 2
               and all(r.status != "in_progress"
                       for r in chat.session.conversation.responses.values()), 20,
               "the held turn answered")
    assert chat.session.conversation.responses[story].status == "cancelled"
    log = log_of(chat.session)
    story_done = position(log, "in", "response.done", lambda p: p["response"]["id"] == story)
    creates = [i for i, (d, k, _) in enumerate(log) if d == "out" and k == "response.create"]
    assert story_done < creates[-1]
    assert len([e for e in log if e[:2] == ("out", "response.cancel")]) == 1
    assert chat.session.errors == [] and chat.error == ""


def test_a_cancel_that_raced_the_replys_end_shows_no_error(shown) -> None:
    """Typed just as the reply ends, the cancel reaches a server that has already finished it
    and is refused: harmless (the reply ended), so the widget does not show it; any other
    refusal it does."""
    chat, browser = shown
    spoken_story(chat, browser)
    chat.session.call(lambda: _interrupt(chat.session))
    cancel_id = chat.session.aio.turns.floor._cancels[-1]

    def refused(event_id: str) -> None:
        error = {"type": "error", "error": {"type": "invalid_request_error",
                                            "code": "response_cancel_not_active",
                                            "message": "no active response",
                                            "event_id": event_id}}
        chat.session.call(lambda: _handle(chat.session, error))

    refused(cancel_id)
    assert chat.error == ""
    refused("evt_not_ours")
    assert "no active response" in chat.error


async def _interrupt(session: RealtimeSession) -> None:
    session.aio.turns.interrupt()


async def _handle(session: RealtimeSession, event: dict[str, Any]) -> None:
    session.aio._handle(event, 0)
