"""How audio travels between page and kernel (binary buffers, or base64 where the front end
drops them, as Colab's widget manager does) and push-to-talk, through the widget's own message
handler against a real local server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import frames, utterance
from support.fake_browser import FakeBrowser, vad

import rtwidget as rt
from rtwidget.notebook.transport import PROBE
from rtwidget.server import LocalServer


class BufferlessBrowser(FakeBrowser):
    """A front end whose widget manager drops binary buffers both ways (Colab's, today)."""

    def message(self, content: dict[str, Any], buffers: list[bytes] = ()) -> None:  # type: ignore[assignment]
        super().message(content, [])

    def of_type(self, kind: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        return [(m, []) for m, _ in super().of_type(kind)]


def start(chat: rt.VoiceChat, browser: FakeBrowser) -> None:
    """What the page does on start: ``ready`` with the probe, then it answers the kernel's."""
    browser.wait(lambda: chat.status == "connected")
    browser.message({"type": "ready", "probe": list(PROBE)}, [PROBE])
    (hello, bufs), = browser.wait(lambda: browser.of_type("transport_check"))
    down = bool(bufs) and bufs[0] == bytes(hello["probe"])
    browser.message({"type": "transport", "up": hello["up"], "down": down})
    browser.wait(lambda: chat.transport)


@pytest.fixture
def bufferless(server: LocalServer) -> Iterator[tuple[rt.VoiceChat, FakeBrowser]]:
    chat = rt.chat("local", url=server.url)
    browser = BufferlessBrowser(chat)
    start(chat, browser)
    yield chat, browser
    chat.close()


def reply_done(chat: rt.VoiceChat) -> bool:
    last = chat.session.conversation.last_response()
    return last is not None and last.status == "completed"


def test_intact_buffers_keep_binary_transport(server: LocalServer) -> None:
    chat = rt.chat("local", url=server.url)
    browser = FakeBrowser(chat)
    start(chat, browser)
    assert chat.transport == "binary"
    chat.say("Hello binary.")
    browser.wait(lambda: reply_done(chat))
    audio = browser.wait(lambda: browser.of_type("reply_audio"))
    assert all(bufs and "b64" not in m for m, bufs in audio)
    chat.close()


def test_a_front_end_that_drops_buffers_gets_base64_both_ways(bufferless) -> None:
    chat, browser = bufferless
    assert chat.transport == "base64"
    # a spoken turn, as base64 frames (same framing, same acknowledgements)
    browser.message({"type": "mic", "on": True})
    for seq, frame in enumerate(frames(utterance(), ms=40), start=1):
        browser.message({"type": "mic_audio", "seq": seq,
                         "b64": base64.b64encode(frame).decode("ascii")})
    browser.wait(lambda: reply_done(chat))
    assert chat.stats["bad_frames"] == 0 and chat.stats["frames_in"] > 40
    assert [m["seq"] for m, _ in browser.of_type("mic_audio_ack")][:2] == [10, 20]
    assert chat.df.iloc[0]["audio_in_s"] > 1.0
    # the reply's audio arrives whole, as base64 in the JSON
    audio = browser.wait(lambda: browser.of_type("reply_audio"))
    pcm = b"".join(base64.b64decode(m["b64"]) for m, _ in audio)
    assert len(pcm) == chat.session.conversation.get(audio[0][0]["item_id"]).audio_out_bytes
    assert browser.wait(lambda: browser.of_type("reply_audio_done"))
    json.dumps([m for m, _ in audio])  # plain JSON: nothing a buffer-less manager would drop


def test_bad_base64_is_refused_visibly_and_the_session_goes_on(bufferless) -> None:
    chat, browser = bufferless
    browser.message({"type": "mic_audio", "seq": 1, "b64": "not base64!"})
    assert chat.stats["bad_frames"] == 1 and chat.stats["frames_in"] == 0
    browser.wait(lambda: "base64" in chat.error)
    assert chat.ask("still here?") == "You said: still here?"


def test_push_to_talk_turns_vad_off_commits_on_release_and_answers(bufferless) -> None:
    chat, browser = bufferless
    assert vad(chat) not in (None, "unset")
    browser.message({"type": "ptt", "on": True})
    browser.wait(lambda: vad(chat) is None)
    browser.message({"type": "mic", "on": True, "ptt": True})
    for seq, frame in enumerate(frames(utterance(tail_ms=2500), ms=40), start=1):
        browser.message({"type": "mic_audio", "seq": seq,
                         "b64": base64.b64encode(frame).decode("ascii")})
    assert chat.session.conversation.last_response() is None  # no VAD: nothing ends the turn
    committed = chat.session.expect("input_audio_buffer.committed")
    browser.message({"type": "ptt", "on": False})
    committed.wait()
    browser.wait(lambda: reply_done(chat))
    assert chat.df.iloc[0]["role"] == "user" and chat.df.iloc[0]["audio_in_s"] > 3.0
    assert not browser.of_type("flush")  # no speech_started: the server's VAD was off


def test_push_to_talk_interrupts_the_agent_and_a_tap_asks_nothing(engine) -> None:
    with LocalServer(engine=engine, pace=0.02) as srv:
        chat = rt.chat("local", url=srv.url)
        browser = FakeBrowser(chat)
        start(chat, browser)
        chat.say("tell me a long story")
        browser.wait(lambda: len(browser.of_type("reply_audio")) >= 3)
        story = chat.session.conversation.last_response()
        browser.message({"type": "ptt", "on": True})
        browser.wait(lambda: story.status == "cancelled")
        browser.message({"type": "ptt", "on": False})  # a tap: no audio, so no turn
        browser.message({"type": "mic", "on": True})  # hands-free again: VAD comes back
        browser.wait(lambda: vad(chat) not in (None, "unset"))
        assert chat.session.conversation.last_response() is story
        assert not [e for e in chat.session.conversation.errors]
        chat.close()


def test_in_colab_the_custom_widget_manager_is_enabled(server: LocalServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Colab itself cannot run here: its ``google.colab.output`` module is stood in for by one
    that records the call that must happen when the widget is created in Colab (anywidget
    makes it), and outside Colab must not."""
    import sys
    import types

    calls: list[str] = []
    chat = rt.chat("local", url=server.url)
    chat.close()
    assert calls == []  # not in Colab: nothing is touched
    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("enabled")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    chat = rt.chat("local", url=server.url)
    chat.close()
    assert calls == ["enabled"]
