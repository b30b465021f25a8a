"""A RealtimeSession against the local server over real sockets on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from conftest import FAST_RETRY, WEATHER_TOOL, eventually, frames, utterance

from rtwidget import AuthenticationError, RealtimeSession, ServerError, ServerRejected
from rtwidget.protocol import client_events
from rtwidget.server import LocalServer, ScriptedReplyEngine


def test_text_turn_streams_a_reply_with_usage(session: RealtimeSession) -> None:
    reply = session.ask("Hello there. How are you?")
    assert reply == "You said: Hello there. How are you?"
    user, assistant = list(session.conversation)
    assert (user.role, user.text) == ("user", "Hello there. How are you?")
    assert (assistant.role, assistant.status) == ("assistant", "completed")
    response = session.conversation.last_response()
    assert response is not None and response.status == "completed"
    assert response.usage["output_tokens"] > 0
    assert response.usage["total_tokens"] == (
        response.usage["input_tokens"] + response.usage["output_tokens"])


def test_audio_reply_carries_pcm_and_transcript(server: LocalServer) -> None:
    with RealtimeSession("local", url=server.url, voice="Dennis") as s:
        chunks: list[bytes] = []
        s.on_audio(lambda item_id, pcm: chunks.append(pcm))
        reply = s.ask("Speak to me. Two sentences!")
        item = list(s.conversation)[-1]
    assert reply == "You said: Speak to me. Two sentences!"
    assert item.transcript == reply
    assert sum(map(len, chunks)) == item.audio_out_bytes > 24000  # over half a second


def test_streamed_audio_turn_goes_through_server_vad_to_a_reply(server: LocalServer) -> None:
    pcm = utterance(lead_ms=400, tail_ms=900)
    voiced_ms = len(pcm) // 48 - 400 - 900
    with RealtimeSession("local", url=server.url, output_modalities=["text"]) as s:
        seen: list[dict] = []
        s.on("*", seen.append)
        expected = s.expect("response.done", timeout=20)
        for frame in frames(pcm):
            s.send_audio(frame)
        done = expected.wait()
        kinds = [e["type"] for e in seen]
        started = next(e for e in seen if e["type"] == "input_audio_buffer.speech_started")
        stopped = next(e for e in seen if e["type"] == "input_audio_buffer.speech_stopped")
        user = s.conversation.get(started["item_id"])
        assert user is not None and user.role == "user"
        vad_span_ms = user.audio_in_seconds * 1000  # before the audio itself is known
        # the server's item holds the speech plus the prefix padding (300 ms by default)
        held = len(base64.b64decode(s.retrieve(user.id)["content"][0]["audio"])) // 48
        answer = list(s.conversation)[-1]
    assert 350 <= started["audio_start_ms"] <= 480
    assert abs(stopped["audio_end_ms"] - (400 + voiced_ms)) < 120
    assert kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
    assert done["response"]["status"] == "completed"
    assert abs(held - (voiced_ms + 300)) < 150
    assert abs(vad_span_ms - voiced_ms) < 150  # the VAD's own span
    assert abs(user.audio_in_seconds * 1000 - held) < 5  # then the audio the server holds
    assert answer.text == "I heard you speak, but I could not make out the words."


def test_prerecorded_audio_item_gets_a_reply(session: RealtimeSession) -> None:
    pcm = utterance()
    expected = session.expect("response.done")
    item_id = session.send_audio_item(pcm, transcript="what is the weather in Oslo")
    expected.wait()
    assert session.conversation.get(item_id) is not None
    # the item on the server holds the same audio
    server_item = session.retrieve(item_id)
    part = server_item["content"][0]
    assert part["type"] == "input_audio" and part["transcript"] == "what is the weather in Oslo"
    assert base64.b64decode(part["audio"]) == pcm
    assert list(session.conversation)[-1].text == "You said: what is the weather in Oslo"


def _calls(session: RealtimeSession, response_id: str) -> list:
    response = session.conversation.responses[response_id]
    items = [session.conversation.get(i) for i in response.item_ids]
    return [i for i in items if i is not None and i.type == "function_call"]


def test_function_call_round_trip(session: RealtimeSession) -> None:
    session.update(tools=[WEATHER_TOOL])
    expected = session.expect("response.done")
    session.say("What is the weather in Paris?")
    done = expected.wait()
    (call,) = _calls(session, done["response"]["id"])
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.status == "completed"
    session.send(client_events.item_create(
        client_events.function_call_output(call.call_id, "sunny, 21 C")))
    expected = session.expect("response.done")
    session.create_response()
    done = expected.wait()
    assert done["response"]["status"] == "completed"
    assert list(session.conversation)[-1].text == "The tool returned sunny, 21 C."
    output = session.conversation.output_for(call.call_id)
    assert output is not None and output.output == "sunny, 21 C"


def test_two_tool_calls_in_one_response(session: RealtimeSession) -> None:
    session.update(tools=[WEATHER_TOOL])
    expected = session.expect("response.done")
    session.say("compare Lima and Quito")
    done = expected.wait()
    calls = _calls(session, done["response"]["id"])
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Lima", "Quito"]
    assert len({c.call_id for c in calls}) == 2
    for call, out in zip(calls, ("warm", "cool"), strict=True):
        session.send(
            client_events.item_create(client_events.function_call_output(call.call_id, out)))
    expected = session.expect("response.done")
    session.create_response()
    expected.wait()
    assert list(session.conversation)[-1].text == "The tool returned warm; cool."


def test_tool_choice_none_and_required(session: RealtimeSession) -> None:
    session.update(tools=[WEATHER_TOOL], tool_choice="none")
    assert session.ask("weather in Rome") == "You said: weather in Rome"
    session.update(tool_choice="required")
    expected = session.expect("response.done")
    session.say("tell me anything")
    done = expected.wait()
    assert [c.name for c in _calls(session, done["response"]["id"])] == ["get_weather"]


def test_mid_session_update_changes_the_model(
    session: RealtimeSession, engine: ScriptedReplyEngine
) -> None:
    session.ask("first")
    assert engine.calls_seen[-1].model == "local/scripted"
    updated = session.update(model="openai/gpt-4.1-nano", instructions="Be terse.")
    assert updated["model"] == "openai/gpt-4.1-nano"
    assert updated["output_modalities"] == ["text"]  # earlier settings are kept
    session.ask("second")
    assert engine.calls_seen[-1].model == "openai/gpt-4.1-nano"
    assert engine.calls_seen[-1].instructions == "Be terse."


def test_max_output_tokens_ends_the_response_incomplete(session: RealtimeSession) -> None:
    session.update(max_output_tokens=5)
    expected = session.expect("response.done")
    session.say("tell me a long story")
    done = expected.wait()
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"]["reason"] == "max_output_tokens"
    assert done["response"]["usage"]["output_tokens"] <= 5


def test_retrieve_delete_truncate_on_both_sides(server: LocalServer) -> None:
    with RealtimeSession("local", url=server.url) as s:
        s.ask("A few words to say out loud.")
        user, assistant = list(s.conversation)
        assert s.retrieve(user.id)["content"][0]["text"] == user.text

        s.truncate(assistant.id, audio_end_ms=300)
        assert s.conversation.get(assistant.id).truncated_ms == 300
        audio = s.retrieve(assistant.id)["content"][0]["audio"]
        assert len(base64.b64decode(audio)) == 300 * 48

        s.delete(user.id)
        assert [i.id for i in s.conversation] == [assistant.id]
        with pytest.raises(ServerError) as info:
            s.retrieve(user.id)
        assert info.value.code == "item_retrieve_invalid_item_id"
        with pytest.raises(ServerError) as info:
            s.truncate(assistant.id, audio_end_ms=60_000)
        assert info.value.info.param == "audio_end_ms"


def test_cancel_mid_stream(engine: ScriptedReplyEngine) -> None:
    with LocalServer(engine=engine, pace=0.01) as srv, RealtimeSession(
        "local", url=srv.url, output_modalities=["text"]
    ) as s:
        delta = s.expect("response.output_text.delta")
        s.say("tell me a long story")
        delta.wait()
        expected = s.expect("response.done")
        s.cancel()
        done = expected.wait()
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        partial = list(s.conversation)[-1]
        assert partial.status == "incomplete"
        assert 0 < len(partial.text) < 600
        assert s.ask("still there?") == "You said: still there?"


def test_speech_interrupts_the_response_in_progress(engine: ScriptedReplyEngine) -> None:
    with LocalServer(engine=engine, pace=0.01) as srv, RealtimeSession(
        "local", url=srv.url, output_modalities=["text"]
    ) as s:
        delta = s.expect("response.output_text.delta")
        s.say("tell me a long story")
        delta.wait()
        expected = s.expect("response.done")
        for frame in frames(utterance(lead_ms=100, tail_ms=0)):
            s.send_audio(frame)
        done = expected.wait()
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"


BAD_EVENTS = [
    ("not json at all", "invalid_json", None),
    ({"type": "no.such.event"}, "invalid_value", "type"),
    ({"event_id": "x"}, "missing_required_parameter", "type"),
    ({"type": "conversation.item.retrieve"}, "missing_required_parameter", "item_id"),
    ({"type": "conversation.item.retrieve", "item_id": 5}, "invalid_type", "item_id"),
    ({"type": "conversation.item.delete", "item_id": "nope"}, "item_delete_invalid_item_id",
     "item_id"),
    ({"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
      "audio_end_ms": 10}, "item_truncate_invalid_item_id", "item_id"),
    ({"type": "input_audio_buffer.append", "audio": "%%%"}, "invalid_value", "audio"),
    ({"type": "input_audio_buffer.append", "audio": "AA=="}, "invalid_value", "audio"),
    ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
    ({"type": "response.cancel"}, "response_cancel_not_active", None),
    ({"type": "session.update", "session": {"max_output_tokens": 0}}, "invalid_value",
     "session.max_output_tokens"),
    ({"type": "session.update", "session": {"audio": {"input": {"format": {
        "type": "audio/pcm", "rate": 16000}}}}},
     "invalid_value", "session.audio.input.format.rate"),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "robot",
                                                   "content": []}}, "invalid_value", "item.role"),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output",
                                                   "call_id": "c1"}},
     "missing_required_parameter", "item.output"),
]


@pytest.mark.parametrize(("event", "code", "param"), BAD_EVENTS,
                         ids=[str(c) + "-" + str(p) for _, c, p in BAD_EVENTS])
def test_bad_input_gets_an_error_and_the_session_goes_on(raw, event, code, param) -> None:
    if isinstance(event, dict):
        event = {**event, "event_id": "evt_bad"} if "event_id" not in event else event
    raw.send(event)
    error = raw.until("error")["error"]
    assert (error["code"], error.get("param")) == (code, param)  # no param: left out
    assert error["message"]
    if isinstance(event, dict) and event.get("event_id") == "evt_bad":
        assert error["event_id"] == "evt_bad"
    raw.send(client_events.item_create(client_events.text_message("still alive?")))
    raw.send(client_events.response_create())
    done = raw.until("response.done")
    assert done["response"]["status"] == "completed"


def test_binary_frames_and_oversized_messages_are_refused(engine) -> None:
    from conftest import RawClient
    with LocalServer(engine=engine, max_message_bytes=64 * 1024) as srv:
        client = RawClient(srv.url)
        client.send(b"\x00\x01")
        assert client.until("error")["error"]["code"] == "invalid_json"
        big = client_events.input_audio_append(b"\x00" * 200_000)
        client.send(big)
        error = client.until("error")["error"]
        assert error["code"] == "message_too_large" and error["event_id"] == big["event_id"]
        client.send(client_events.item_create(client_events.text_message("hi")))
        client.send(client_events.response_create())
        assert client.until("response.done")["response"]["status"] == "completed"
        client.close()


def test_errors_surface_on_the_session_tied_to_their_event(session: RealtimeSession) -> None:
    error = session.expect("error")
    session.send({"type": "conversation.item.delete", "item_id": "missing"})
    error.wait()
    info = session.errors[-1]
    assert info.code == "item_delete_invalid_item_id"
    assert info.caused_by == "conversation.item.delete"
    assert session.ask("and now?") == "You said: and now?"


def test_response_create_while_one_is_active_is_refused(engine) -> None:
    """The server refuses a second response, as hosted providers do; the session's own calls
    never send one (tests/notebook/test_typed_turns.py), a raw event goes out as it is."""
    with LocalServer(engine=engine, pace=0.01) as srv, RealtimeSession(
        "local", url=srv.url, output_modalities=["text"]
    ) as s:
        created = s.expect("response.created")
        s.say("tell me a long story")
        created.wait()
        refused = s.expect("error")
        s.send(client_events.response_create())
        assert refused.wait()["error"]["code"] == "conversation_already_has_active_response"
        s.cancel()


def test_dropped_connection_reconnects_and_keeps_the_conversation(session: RealtimeSession,
                                                                  server: LocalServer) -> None:
    session.update(instructions="Remember me.")
    assert session.ask("hello") == "You said: hello"
    before = [i.id for i in session.conversation]
    seen: list[dict] = []
    session.on("*", seen.append)
    back = session.expect("rtwidget.reconnected", timeout=20)
    session.say("please drop")
    back.wait()
    failed = next(e for e in seen if e["type"] == "response.done")
    assert failed["response"]["status"] == "failed"
    assert [i.id for i in session.conversation][:2] == before
    assert session.aio.reconnects == 1
    # the new server-side session got the config and the history back
    assert session.retrieve(before[0])["content"][0]["text"] == "hello"
    assert session.ask("are you back?") == "You said: are you back?"
    (conn,) = server.connections
    assert conn.session["instructions"] == "Remember me."


def test_wrong_key_is_a_final_authentication_error(engine) -> None:
    with LocalServer(engine=engine, token="s3cret-token") as srv:
        with pytest.raises(AuthenticationError) as info:
            RealtimeSession("local", url=srv.url, api_key="wrong", reconnect=FAST_RETRY)
        assert len(srv.handshakes) == 1  # refused once, not retried
        assert "wrong" not in str(info.value) and "s3cret" not in str(info.value)
        with RealtimeSession("local", url=srv.url, api_key="s3cret-token") as s:
            assert s.ask("ok?") == "You said: ok?"
            assert "s3cret" not in repr(s)
        assert srv.handshakes[-1].auth_scheme == "Bearer"
        assert all("s3cret" not in str(h) for h in srv.handshakes)


def test_unknown_path_is_a_final_rejection(server: LocalServer) -> None:
    url = server.url.replace("/v1/realtime", "/nowhere")
    with pytest.raises(ServerRejected):
        RealtimeSession("local", url=url, reconnect=FAST_RETRY)


def test_server_gone_for_good_gives_up_after_the_retries(engine) -> None:
    from rtwidget import ConnectionClosed, Reconnect
    srv = LocalServer(engine=engine).start_in_thread()
    s = RealtimeSession("local", url=srv.url,
                        reconnect=Reconnect(base_delay=0.01, max_delay=0.05, max_attempts=3))
    closed = threading.Event()
    s.on("rtwidget.closed", lambda ev: closed.set())
    srv.stop_in_thread()
    assert closed.wait(10)
    with pytest.raises(ConnectionClosed):
        s.say("anyone?")
    s.close()


def test_close_leaves_no_thread_behind(server: LocalServer) -> None:
    before = {t.name for t in threading.enumerate()}
    for _ in range(3):
        with RealtimeSession("local", url=server.url) as s:
            s.ask("hi")
    eventually(lambda: not server.connections, 5, "every socket closed on the server side too")
    after = {t.name for t in threading.enumerate()}
    assert not {n for n in after - before if n.startswith("rtwidget-session")}
