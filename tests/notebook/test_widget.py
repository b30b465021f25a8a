"""The widget's message handling without a browser: the comm is the kernel-less DummyComm and
the browser's messages are fed through the widget's own handler."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import eventually, frames, utterance
from support.fake_browser import FakeBrowser

import rtwidget as rt
from rtwidget.data.cost import cost_label
from rtwidget.notebook.magics import chat_kwargs
from rtwidget.server import LocalServer


@pytest.fixture
def widget(server: LocalServer) -> Iterator[tuple[rt.VoiceChat, FakeBrowser]]:
    chat = rt.chat("local", url=server.url)
    browser = FakeBrowser(chat)
    browser.wait(lambda: chat.status == "connected")
    browser.message({"type": "ready"})
    yield chat, browser
    chat.close()
    assert browser.undeclared == []


def test_no_secret_or_audio_in_widget_state(server: LocalServer) -> None:
    chat = rt.chat("local", url=server.url, api_key="sk-very-secret")  # sent as a header only
    state = chat.get_state()
    assert "sk-very-secret" not in repr(state) and "sk-very-secret" not in repr(chat)
    chat.close()


def test_typed_turn_streams_rows_and_audio_to_the_browser(widget) -> None:
    chat, browser = widget
    browser.message({"type": "text", "text": "Hello widget."})
    browser.wait(lambda: chat.session.conversation.last_response() and
                 chat.session.conversation.last_response().status == "completed")
    audio = browser.wait(lambda: browser.of_type("reply_audio"))
    assert all(len(bufs[0]) > 0 and len(bufs[0]) % 2 == 0 for _, bufs in audio)
    assert browser.wait(lambda: browser.of_type("reply_audio_done"))
    rows = browser.wait(lambda: [r for m, _ in browser.of_type("rows") for r in m["rows"]
                                 if r["role"] == "assistant" and r["status"] == "completed"])
    assert rows[-1]["text"] == "You said: Hello widget."
    assert list(chat.df["text"]) == ["Hello widget.", "You said: Hello widget."]
    assert chat.status == "connected" and "local" in chat.provider
    # the label shown, kept as replies end, says what the DataFrame's cost says
    assert chat.cost_text == cost_label(chat.cost) == "cost: free (local)"


def test_mic_frames_reach_the_server_and_are_acknowledged(widget) -> None:
    chat, browser = widget
    browser.message({"type": "mic", "on": True})
    for seq, frame in enumerate(frames(utterance(), ms=40), start=1):
        browser.message({"type": "mic_audio", "seq": seq}, [frame])
    browser.wait(lambda: chat.session.conversation.last_response() and
                 chat.session.conversation.last_response().status == "completed")
    assert chat.stats["bad_frames"] == 0 and chat.stats["frames_in"] > 40
    assert [m["seq"] for m, _ in browser.of_type("mic_audio_ack")][:2] == [10, 20]
    assert browser.of_type("flush"), "speech_started must stop playback in the browser"
    user = chat.df.iloc[0]
    assert user["role"] == "user" and user["audio_in_s"] > 1.0


def test_broken_frames_are_counted_and_dropped(widget) -> None:
    chat, browser = widget
    browser.message({"type": "mic_audio", "seq": 1}, [b"\x01\x02\x03"])
    browser.message({"type": "mic_audio", "seq": 2}, [])
    browser.message({"type": "no-such-message"})
    assert chat.stats["bad_frames"] == 1 and chat.stats["frames_in"] == 0
    assert chat.ask("still working?") == "You said: still working?"


def test_barge_in_truncates_at_the_played_position(engine) -> None:
    with LocalServer(engine=engine, pace=0.02) as srv:
        chat = rt.chat("local", url=srv.url)
        browser = FakeBrowser(chat)
        browser.wait(lambda: chat.status == "connected")
        browser.message({"type": "ready"})
        chat.say("tell me a long story")
        first = browser.wait(lambda: browser.of_type("reply_audio"))
        item_id = first[0][0]["item_id"]
        browser.wait(lambda: len(browser.of_type("reply_audio")) >= 5)
        truncated = chat.session.expect("conversation.item.truncated")
        browser.message({"type": "playback_stopped", "item_id": item_id, "audio_end_ms": 250,
                         "reason": "user"})
        assert truncated.wait()["audio_end_ms"] == 250
        done = chat.session.conversation.last_response()
        browser.wait(lambda: done.status == "cancelled")
        row = chat.df.iloc[-1]
        assert row["truncated_ms"] == 250 and row["audio_out_s"] == pytest.approx(0.25)
        chat.close()


def test_a_stop_reported_after_a_reconnect_cuts_nothing_the_server_has_as_text(engine) -> None:
    """Audio that came over a lost connection went back to the new one as text: the page's late
    report of where it stopped playing asks the server for no cut it would have to refuse."""
    with LocalServer(engine=engine, pace=0.02) as srv:
        chat = rt.chat("local", url=srv.url)
        browser = FakeBrowser(chat)
        browser.wait(lambda: chat.status == "connected")
        browser.message({"type": "ready"})
        chat.say("tell me a long story")
        item_id = browser.wait(lambda: browser.of_type("reply_audio"))[0][0]["item_id"]
        browser.wait(lambda: len(browser.of_type("reply_audio")) >= 3)
        srv.close_connections(1011)
        browser.wait(lambda: chat.session.aio.reconnects == 1 and chat.status == "connected")
        browser.message({"type": "playback_stopped", "item_id": item_id, "audio_end_ms": 40,
                         "reason": "user"})
        assert chat.ask("still there?") == "You said: still there?"
        assert chat.stats["truncations"] == 0 and chat.error == ""
        assert not any("truncat" in p for p in chat.session.conversation.problems)
        chat.close()


def test_rerender_gets_the_whole_transcript_again(widget) -> None:
    chat, browser = widget
    chat.ask("one")
    chat.ask("two")
    browser.sent.clear()
    browser.message({"type": "ready"})  # a page reload: a fresh front end says ready
    resets = browser.wait(lambda: [m for m, _ in browser.of_type("rows") if m["reset"]])
    assert [r["text"] for r in resets[-1]["rows"]] == ["one", "You said: one", "two",
                                                        "You said: two"]


def test_disconnect_and_connect_keep_the_conversation(widget) -> None:
    chat, browser = widget
    chat.ask("before")
    browser.message({"type": "disconnect"})
    browser.wait(lambda: chat.status == "closed")
    browser.message({"type": "connect"})
    browser.wait(lambda: chat.status == "connected")
    assert chat.ask("after") == "You said: after"
    assert list(chat.df["text"])[:2] == ["before", "You said: before"]
    assert chat.session.retrieve(chat.df["item_id"].iloc[0])["content"][0]["text"] == "before"


def test_connection_failure_shows_in_the_widget(server: LocalServer) -> None:
    bad = server.url.replace("/v1/realtime", "/nowhere")
    chat = rt.chat("local", url=bad, reconnect=rt.NO_RECONNECT)
    browser = FakeBrowser(chat)
    browser.wait(lambda: chat.status == "closed")
    assert "Could not connect" in chat.error
    chat.close()


def test_rtchat_options_parse_into_chat_keywords() -> None:
    name, kwargs = chat_kwargs('--name talk --model openai/gpt-4.1-nano --voice Dennis '
                               '--tts-model inworld-tts-1.5-max --instructions "Be kind." '
                               '--modalities audio,text --tools a,b --max-output-tokens 200')
    assert name == "talk"
    assert kwargs == {"model": "openai/gpt-4.1-nano", "voice": "Dennis",
                      "tts_model": "inworld-tts-1.5-max", "instructions": "Be kind.",
                      "output_modalities": ["audio", "text"], "tools": ["a", "b"],
                      "max_output_tokens": 200}
    assert chat_kwargs("--tools none")[1]["tools"] is False
    assert chat_kwargs("--record")[1]["record"] is True
    assert chat_kwargs("--record runs/one")[1]["record"] == "runs/one"
    assert "record" not in chat_kwargs("")[1]


def test_voice_picker_gets_the_voices_and_changes_the_voice(widget) -> None:
    chat, browser = widget
    (message, _), *_ = browser.wait(lambda: browser.of_type("voices"))
    assert message["names"] == ["tone"]
    updated = chat.session.expect("session.updated")
    browser.message({"type": "voice", "voice": "tone"})
    assert updated.wait()["session"]["audio"]["output"]["voice"] == "tone"


def test_a_page_that_stops_taking_audio_is_not_flooded(widget) -> None:
    from rtwidget.notebook.page_link import MAX_UNACKED_AUDIO_BYTES

    chat, browser = widget  # this fake page never acknowledges audio: a frozen tab
    for _ in range(3):
        done = chat.session.expect("response.done", timeout=30)
        chat.say("long story")
        done.wait()
    chunks = [len(b[0]) for _, b in browser.of_type("reply_audio")]
    sent = sum(chunks)
    assert chat.stats["audio_dropped"] > 0
    assert sent <= MAX_UNACKED_AUDIO_BYTES + max(chunks)
    # the page catches up and says so: audio flows again; nothing was lost to the conversation
    browser.message({"type": "reply_audio_ack", "bytes": sent})
    before = len(browser.of_type("reply_audio"))
    done = chat.session.expect("response.done", timeout=30)
    chat.say("hello again")
    done.wait()
    browser.wait(lambda: len(browser.of_type("reply_audio")) > before)
    assert chat.df["audio_out_s"].iloc[1] > MAX_UNACKED_AUDIO_BYTES / 48_000 / 3


def test_playback_starts_land_in_the_dataframe(widget) -> None:
    chat, browser = widget
    done = chat.session.expect("response.done", timeout=30)
    chat.say("Hello widget.")
    done.wait()
    reply = chat.df.iloc[1]
    browser.message({"type": "playback_started", "item_id": reply["item_id"],
                     "t": time.time() * 1000, "device_ms": 21.5})
    browser.wait(lambda: chat.df.iloc[0]["played_s"] >= 0)
    user = chat.df.iloc[0]
    assert user["played_s"] >= user["audio_s"] >= user["response_s"] >= 0
    assert chat.latency()["device_out_ms"] == 21.5
    table = rt.turn_latency(chat)
    assert table.loc[0, "device_ms"] == 21.5 and table.loc[0, "total_ms"] > 21.5
    assert "rtwidget.playback_started" in set(chat.events["type"])
    shown = browser.wait(lambda: [r for m, _ in browser.of_type("rows") for r in m["rows"]
                                  if r["id"] == reply["item_id"] and r["latency"] is not None])
    assert shown[-1]["latency"] == pytest.approx(user["played_s"], abs=0.01)


def test_disconnect_and_connect_keep_every_session_setting(tmp_path) -> None:
    """Disconnect → Connect builds a new session: it keeps the tools, whether to run them,
    the tool round cap, the recording, keepalive, reconnect policy and the configuration as
    the server last confirmed it. A ``run_tools=False`` chat must not start running tools."""
    from rtwidget.server import Rule, ScriptedReplyEngine

    calls: list[str] = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "sunny"

    tools = rt.ToolRegistry()
    tools.register(get_weather)
    rules = [Rule(r"weather in (?P<city>\w+)", calls=[("get_weather", {"city": "{city}"})])]
    policy = rt.Reconnect(base_delay=0.01, max_delay=0.05, max_attempts=3)
    with LocalServer(engine=ScriptedReplyEngine(rules=rules)) as server:
        chat = rt.chat("local", url=server.url, tools=tools, run_tools=False, max_tool_rounds=3,
                       record=tmp_path / "talk", ping_interval=7.0, ping_timeout=9.0,
                       restore_history=False, reconnect=policy, open_timeout=4.0,
                       max_message_bytes=1 << 20, instructions="Be brief.",
                       output_modalities=["text"])
        browser = FakeBrowser(chat)
        try:
            browser.wait(lambda: chat.status == "connected")
            chat.session.update(instructions="Be briefer.")  # confirmed: kept for the next one
            before = chat.session.options
            browser.message({"type": "disconnect"})
            browser.wait(lambda: chat.status == "closed")
            browser.message({"type": "connect"})
            browser.wait(lambda: chat.status == "connected")
            after = chat.session.options
            assert after.replace(record=None) == before.replace(record=None)
            assert after.config["instructions"] == "Be briefer."
            assert (after.run_tools, after.max_tool_rounds, after.reconnect) == (False, 3, policy)
            assert (after.ping_interval, after.ping_timeout, after.open_timeout) == (7.0, 9.0, 4.0)
            assert after.tools.registry is tools and not after.restore_history
            assert after.record == tmp_path / "talk-2"  # the first folder holds the first session
            chat.session.say("what is the weather in Paris")
            call = browser.wait(lambda: [r for r in chat.df.itertuples()
                                         if r.type == "function_call"])
            assert call[0].tool_name == "get_weather"
            assert calls == [] and chat.session.tool_results == {}  # left to the caller
        finally:
            chat.close()
    assert rt.load_recording(tmp_path / "talk").meta["config"]["instructions"] == "Be briefer."
    assert (tmp_path / "talk-2" / "events.jsonl").exists()


def test_a_page_that_says_ready_gets_the_state_it_shows_again(server: LocalServer) -> None:
    """Trait changes sent while the page still loads the widget's code are dropped by the
    front end; its ``ready`` makes the kernel send the shown traits again."""
    chat = rt.chat("local", url=server.url)
    updates: list[dict[str, Any]] = []
    original = chat.comm.send

    def capture(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        if isinstance(data, dict) and data.get("method") == "update":
            updates.append(data["state"])
        return original(data=data, metadata=metadata, buffers=buffers)

    chat.comm.send = capture
    browser = FakeBrowser(chat)
    try:
        browser.wait(lambda: chat.status == "connected")
        updates.clear()  # as if every change so far had been lost on the way
        browser.message({"type": "ready"})
        state = browser.wait(lambda: next((u for u in updates if "status" in u), None))
        assert state["status"] == "connected" and "local" in state["provider"]
    finally:
        chat.close()


def test_a_second_connect_while_connected_changes_nothing(widget) -> None:
    chat, browser = widget
    first = chat.session
    chat.ask("before")
    for _ in range(3):  # a stale page, or a double click on Connect
        browser.message({"type": "connect"})
    assert chat.session is first and chat.status == "connected"
    browser.message({"type": "disconnect"})
    browser.wait(lambda: chat.status == "closed")
    browser.message({"type": "connect"})  # a double click: the second finds it connecting
    browser.message({"type": "connect"})
    browser.wait(lambda: chat.status == "connected")
    second = chat.session
    assert second is not first and first.aio.closed
    assert chat.ask("after") == "You said: after"
    chat.close()
    assert second.aio.closed
    eventually(lambda: not first._thread.is_alive() and not second._thread.is_alive(), 10,
               "both sessions' loop threads ending")


def test_closing_a_chat_after_connect_clicks_leaves_no_task_exception_behind() -> None:
    script = """
import gc, time
import rtwidget as rt
from rtwidget.server import LocalServer

def wait(check):
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)

with LocalServer() as server:
    chat = rt.chat("local", url=server.url)
    say = lambda c: chat._handle_msg({"content": {"data": {"method": "custom", "content": c}},
                                      "buffers": []})
    wait(lambda: chat.status == "connected")
    say({"type": "ready"})
    say({"type": "connect"}); say({"type": "connect"})
    say({"type": "disconnect"})
    wait(lambda: chat.status == "closed")
    say({"type": "connect"}); say({"type": "connect"})
    wait(lambda: chat.status == "connected")
    chat.ask("one more")
    chat.close()
gc.collect()
print("done")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "done" in run.stdout, run.stderr
    assert "Task exception was never retrieved" not in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
