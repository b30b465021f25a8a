"""The local server against careless and malicious clients: where it binds, tokens, limits per
message, per session and per server, clients that stop reading, hostile input, isolation."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from conftest import RULES, RawClient, eventually, socketless_connection, utterance
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from rtwidget import RealtimeSession
from rtwidget.protocol import client_events
from rtwidget.server import LocalServer, ScriptedReplyEngine, ToneSynthesizer

pytestmark = pytest.mark.timeout(120)


def test_it_binds_loopback_and_wants_a_token_for_anything_else() -> None:
    assert LocalServer().host == "127.0.0.1"
    with pytest.raises(ValueError, match="token"):
        LocalServer("0.0.0.0")  # nothing is bound: the constructor refuses
    assert LocalServer("0.0.0.0", token="t0ken-for-the-lan").host == "0.0.0.0"
    assert LocalServer("0.0.0.0", allow_anonymous=True).host == "0.0.0.0"


def test_a_token_guards_sessions_and_voices() -> None:
    with LocalServer(token="let-me-in") as srv:
        with pytest.raises(InvalidStatus) as refused:
            connect(srv.url)
        assert refused.value.response.status_code == 401
        with RealtimeSession("local", url=srv.url, api_key="let-me-in",
                             output_modalities=["text"]) as s:
            assert s.ask("hi") == "You said: hi"


def test_the_session_budget_refuses_more_and_keeps_the_connection() -> None:
    with LocalServer(max_session_bytes=300_000) as srv:
        client = RawClient(srv.url)
        note = utterance("a short spoken note", lead_ms=500, tail_ms=500)  # about 110 kB
        for _ in range(2):
            client.send(client_events.item_create(client_events.audio_message(note)))
            client.until("conversation.item.done")
        client.send(client_events.item_create(client_events.audio_message(note + note)))
        error = client.until("error")["error"]
        assert error["code"] == "session_too_large" and "300000" in error["message"]
        first = next(e for e in client.seen if e["type"] == "conversation.item.done")
        client.send(client_events.item_delete(first["item"]["id"]))
        client.until("conversation.item.deleted")
        client.send(client_events.item_create(client_events.audio_message(note)))  # room again
        assert client.until("conversation.item.done")["item"]["role"] == "user"
        client.close()


def test_connections_beyond_the_limit_get_503_and_the_others_carry_on() -> None:
    with LocalServer(max_connections=2) as srv:
        first, second = RawClient(srv.url), RawClient(srv.url)
        with pytest.raises(InvalidStatus) as full:
            connect(srv.url)
        assert full.value.response.status_code == 503
        assert full.value.response.headers["Retry-After"]
        first.send(client_events.item_create(client_events.text_message("still served")))
        first.send(client_events.response_create())
        assert first.until("response.done")["response"]["status"] == "completed"
        second.close()
        eventually(lambda: len(srv.connections) <= 1, 5, "the server letting the second go")
        third = RawClient(srv.url)  # a place came free
        third.close()
        first.close()


def test_a_client_that_stops_reading_is_dropped_and_others_are_served() -> None:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES), send_timeout=0.5) as srv, \
            connect(srv.url, max_size=None, close_timeout=1) as greedy:
        greedy.recv()  # session.created; from here on it reads nothing
        for _ in range(20):  # replies far bigger than the socket buffers
            greedy.send(json.dumps(
                client_events.item_create(client_events.text_message("long story"))))
            greedy.send(json.dumps(client_events.response_create()))
        with RealtimeSession("local", url=srv.url, output_modalities=["text"]) as other:
            assert other.ask("are you there") == "You said: are you there"
        eventually(lambda: not srv.connections, 20, "the server letting go of the greedy one")


def test_hostile_messages_get_errors_and_the_connection_goes_on(raw: RawClient) -> None:
    hostile: list[tuple[Any, str]] = [
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),  # deeper than any parser's recursion
        ('{"type": "session.update", "session": ' + "[" * 50_000 + "]" * 50_000 + "}",
         "invalid_json"),
        ('{"type": "\\ud800"}', "invalid_value"),  # a lone surrogate as the event type
        (json.dumps({"type": "conversation.item.retrieve", "item_id": "x" * 100_000}),
         "item_retrieve_invalid_item_id"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 1_000_001}),
         "invalid_value"),
        (b"\xff" * 1000, "invalid_json"),
        (json.dumps({"type": "response.create", "response": {"tools": [{"type": "function",
                     "name": "f" * 10_000}] * 50}}), "invalid_value"),
    ]
    for message, code in hostile:
        raw.send(message)
        assert raw.until("error")["error"]["code"] == code
    raw.send(client_events.item_create(client_events.text_message("still fine")))
    raw.send(client_events.response_create())
    assert raw.until("response.done")["response"]["status"] == "completed"


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2**63, 1e308, float("nan")])
    if kind == 1:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.choice(["", "root", "item_1", "resp_1", "audio/pcm", "inf"])
    if kind == 3:
        return rng.random() * 10**rng.randrange(-3, 9)
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["type", "event_id", "item", "session", "response", "audio", "item_id",
            "previous_item_id", "content", "role", "tools", "audio_end_ms", "content_index",
            "instructions", "turn_detection", "output_modalities", "max_output_tokens"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


CLIENT_TYPES = ["session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                "input_audio_buffer.clear", "conversation.item.create",
                "conversation.item.retrieve", "conversation.item.truncate",
                "conversation.item.delete", "response.create", "response.cancel",
                "output_audio_buffer.clear", "no.such.event"]


def test_a_fuzzing_client_cannot_break_the_server_or_its_neighbours(server: LocalServer) -> None:
    rng = random.Random(20261124)
    bystander = RawClient(server.url)
    bystander.send(
        client_events.item_create(client_events.text_message("mine", item_id="item_private")))
    bystander.until("conversation.item.done")
    fuzzer = RawClient(server.url)
    for _ in range(400):  # bounded: about a second of hostile traffic
        event = _random_json(rng, 1)
        event = event if isinstance(event, dict) else {"payload": event}
        event["type"] = rng.choice(CLIENT_TYPES)
        fuzzer.send(json.dumps(event, allow_nan=True))
    fuzzer.send(client_events.item_retrieve("item_private"))  # another session's item: not found
    fuzzer_error = fuzzer.until("error")
    while "item_private" not in json.dumps(fuzzer_error):
        fuzzer_error = fuzzer.until("error")
    assert fuzzer_error["error"]["code"] == "item_retrieve_invalid_item_id"
    fuzzer.send(
        client_events.item_create(client_events.text_message("mine too", item_id="item_private")))
    fuzzer.until("conversation.item.done")  # same id, separate session: no clash
    fuzzer.send(client_events.item_create(client_events.text_message("and still served")))
    for _ in range(5):  # a fuzzed response may still be running: wait for it, like a client
        fuzzer.send(client_events.response_create(output_modalities=["text"],
                                                  max_output_tokens="inf"))
        outcome = fuzzer.next(timeout=30)
        while outcome["type"] not in ("response.created", "error") or (
                outcome["type"] == "error" and
                outcome["error"]["code"] != "conversation_already_has_active_response"):
            outcome = fuzzer.next(timeout=30)
        if outcome["type"] == "response.created":
            break
        fuzzer.until("response.done", timeout=30)
    done = fuzzer.until("response.done", timeout=30)
    assert "and still served" in json.dumps(done)
    bystander.send(client_events.item_retrieve("item_private"))
    kept = bystander.until("conversation.item.retrieved")["item"]
    assert kept["content"][0]["text"] == "mine"  # untouched by the other session
    assert len(server.connections) == 2
    fuzzer.close()
    bystander.close()


# each word of the scripted "long story" (360 words) waits this long before the next one, so
# that reply cannot be over before the test's own timeout (120 s): a cancel sent right behind its
# create always finds it in progress, however late the server reads it
_SLOW_PACE = 0.5


def test_a_response_cancelled_before_it_starts_still_ends() -> None:
    """Found by the fuzzer: a cancel right behind its create used to leave the response
    'active' forever, refusing every later response.create."""
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES), pace=_SLOW_PACE) as srv:
        raw = RawClient(srv.url)
        raw.send(client_events.item_create(client_events.text_message("tell me a long story")))
        raw.send(client_events.response_create())
        raw.send(client_events.response_cancel())
        done = raw.until("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        raw.send(client_events.item_create(client_events.text_message("hello")))
        raw.send(client_events.response_create(output_modalities=["text"]))
        done = raw.until("response.done")
        assert done["response"]["status"] == "completed"
        assert done["response"]["output"][0]["content"][0]["text"] == "You said: hello"
        raw.close()


def test_a_cancel_read_before_its_response_ran_ends_it() -> None:
    """The cancel is handled before the response's task takes its first step (as when both
    events arrive in one read): the response still gets its created and done events, and the
    next response.create is accepted."""
    async def run() -> list[dict[str, Any]]:
        conn, sent = socketless_connection()
        await conn.receive(
            json.dumps(client_events.item_create(client_events.text_message("hello"))))
        await conn.receive(json.dumps(client_events.response_create()))
        await conn.receive(json.dumps(client_events.response_cancel()))  # no loop turn in between
        assert conn.responses.active is None
        await conn.receive(json.dumps(client_events.response_create(output_modalities=["text"])))
        second = conn.responses.active
        assert second is not None and second.task is not None
        await second.task
        await conn.close()
        return [e for e in sent if e["type"].startswith("response.") or e["type"] == "error"]

    sent = asyncio.run(run())
    first = [e for e in sent if e.get("response", {}).get("id") == sent[0]["response"]["id"]]
    assert [e["type"] for e in first] == ["response.created", "response.done"]
    assert first[1]["response"]["status"] == "cancelled" and not first[1]["response"]["output"]
    assert not [e for e in sent if e["type"] == "error"]
    assert sent[-1]["type"] == "response.done"
    assert sent[-1]["response"]["status"] == "completed"
    assert sent[-1]["response"]["output"][0]["content"][0]["text"] == "You said: hello"


def test_a_long_talk_keeps_only_the_newest_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtwidget.server import item_store

    monkeypatch.setattr(item_store, "AUDIO_KEPT_BYTES", 300_000)  # about six seconds
    with LocalServer(synthesizer=ToneSynthesizer()) as server, RealtimeSession(
            "local", url=server.url, output_modalities=["audio"]) as session:
        for n in range(8):
            session.ask(f"number {n} and some more words to say out loud")
        kept = next(iter(server.connections)).items.items
        with_audio = [i for i in kept if i.pcm]
        assert sum(len(i.pcm) for i in with_audio) <= 300_000 + len(kept[-1].pcm)
        assert kept[-1].pcm and not kept[1].pcm  # the newest reply keeps its samples
        old = kept[1]
        assert old.audio_ms() > 0  # its length and words stay
        retrieved = session.retrieve(old.id)
        assert "audio" not in retrieved["content"][0] and retrieved["content"][0]["transcript"]
        half = old.audio_ms() // 2
        session.truncate(old.id, half)  # what was heard can still be cut
        assert old.audio_ms() == half
        assert "more words" in session.ask("say more words")
