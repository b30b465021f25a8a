"""Every event the local server sends, in a scripted conversation (text, audio, a tool, a cancel
during audio, truncate, delete, a failed transcription), checked strictly against the ``openai``
package's GA models: no unknown field, no ``null`` where the models leave a field out."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from rtwidget.protocol.audio import SAMPLE_RATE
from rtwidget.server import LocalServer, ScriptedReplyEngine, ToneSynthesizer
from rtwidget.server.server_protocol import ServerProtocol
from rtwidget.server.server_session import ServerOptions
from tests.conftest import RULES, WEATHER_TOOL
from tests.support.ga_events import ga_problems


class Talk:
    """A raw WebSocket client that keeps every server event it reads."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    def send(self, **event: Any) -> None:
        self.ws.send(json.dumps(event))

    def until(self, kind: str, limit: int = 5000) -> dict[str, Any]:
        for _ in range(limit):
            event = json.loads(self.ws.recv(timeout=20))
            self.events.append(event)
            if event["type"] == kind:
                return event
        raise AssertionError(f"no {kind} in {limit} events")

    def say(self, text: str) -> None:
        self.send(type="conversation.item.create", item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
        self.until("conversation.item.done")


def _tone(ms: int) -> str:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()
    return base64.b64encode(pcm).decode("ascii")


@pytest.fixture
def talk() -> Iterator[Talk]:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES), pace=0.005) as server, \
            connect(server.url, max_size=None) as ws:
        yield Talk(ws)


def _cancel_during_audio(talk: Talk) -> list[dict[str, Any]]:
    talk.say("tell me a long story")
    start = len(talk.events)
    talk.send(type="response.create")
    talk.until("response.output_audio.delta")
    talk.send(type="response.cancel")
    talk.until("response.done")
    return talk.events[start:]


def test_every_event_of_a_scripted_conversation_is_ga(talk: Talk) -> None:
    talk.until("session.created")
    talk.send(type="session.update", session={
        "type": "realtime", "model": "gpt-realtime", "output_modalities": ["text"],
        "tools": [WEATHER_TOOL],
        "audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}}})
    updated = talk.until("session.updated")
    assert updated["session"]["model"] == "gpt-realtime"  # the model asked for, echoed
    assert "model" not in updated["session"]["audio"]["output"]
    # text
    talk.say("hello there")
    talk.send(type="response.create")
    assert talk.until("response.done")["response"]["status"] == "completed"
    # a tool
    talk.say("what is the weather in Paris")
    talk.send(type="response.create")
    call = talk.until("response.done")["response"]["output"][0]
    assert call["type"] == "function_call"
    talk.send(type="conversation.item.create", item={
        "type": "function_call_output", "call_id": call["call_id"], "output": "sunny"})
    talk.send(type="response.create")
    talk.until("response.done")
    # audio, then truncated as if the user heard 100 ms of it
    talk.send(type="session.update", session={"type": "realtime",
                                              "output_modalities": ["audio"]})
    talk.say("hello again")
    talk.send(type="response.create")
    spoken = talk.until("response.done")["response"]["output"][0]
    talk.send(type="conversation.item.truncate", item_id=spoken["id"], content_index=0,
              audio_end_ms=100)
    talk.until("conversation.item.truncated")
    # user audio on a server with no speech-to-text: the transcription fails
    talk.send(type="input_audio_buffer.append", audio=_tone(400))
    talk.send(type="input_audio_buffer.commit")
    failed = talk.until("conversation.item.input_audio_transcription.failed")
    assert failed["error"]["code"] and "param" not in failed["error"]
    # cancel during audio
    cancelled = _cancel_during_audio(talk)
    # retrieve, delete, and an error
    talk.send(type="conversation.item.retrieve", item_id=spoken["id"])
    talk.until("conversation.item.retrieved")
    talk.send(type="conversation.item.delete", item_id=spoken["id"])
    talk.until("conversation.item.deleted")
    talk.send(type="conversation.item.delete", item_id="item_nope")
    talk.until("error")

    problems = sorted({p for event in talk.events for p in ga_problems(event)})
    assert problems == [], "\n".join(problems)
    kinds = {e["type"] for e in talk.events}
    assert {"response.output_text.done", "response.function_call_arguments.done",
            "response.output_audio.done", "conversation.item.truncated",
            "input_audio_buffer.committed"} <= kinds
    _assert_cancelled_audio_ends(cancelled)


def _assert_cancelled_audio_ends(events: list[dict[str, Any]],
                                 ended: tuple[str, ...] = ("incomplete",)) -> None:
    """The cancelled reply's item ends (as ``incomplete``, or one of ``ended``) with every
    ``.done`` event, in the GA order, before ``response.done``."""
    kinds = [e["type"] for e in events]
    tail = ["response.output_audio.done", "response.output_audio_transcript.done",
            "response.content_part.done", "response.output_item.done",
            "conversation.item.done", "response.done"]
    assert [k for k in kinds if k in tail] == tail
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert [item["status"] for item in done["output"]] in [[status] for status in ended]
    item_done = next(e for e in events if e["type"] == "response.output_item.done")
    assert item_done["item"]["status"] == done["output"][0]["status"]


def _cancelled_at(position: int) -> list[dict[str, Any]]:
    """The events of an audio reply cancelled as its ``position``-th event is being sent
    (driven without sockets; every send yields to the loop, as a slow reader makes it)."""

    async def run() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        pending: list[asyncio.Task[None]] = []

        finished = asyncio.Event()

        async def send(text: str) -> None:
            events.append(json.loads(text))
            if events[-1]["type"] == "response.done":
                finished.set()
            if sum(e["type"] != "session.created" for e in events) == position + 3:
                pending.append(asyncio.create_task(conn.receive('{"type":"response.cancel"}')))
            await asyncio.sleep(0)

        options = ServerOptions(engine=ScriptedReplyEngine(), synthesizer=ToneSynthesizer())
        conn = ServerProtocol(options, send, lambda: None)
        await conn.start()
        await conn.receive(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hello there"}]}}))
        await conn.receive('{"type":"response.create"}')
        await asyncio.wait_for(finished.wait(), 20)
        await asyncio.gather(*pending)
        await conn.close()
        return events

    return asyncio.run(asyncio.wait_for(run(), 30))


def test_a_cancel_at_any_point_of_an_audio_reply_ends_its_item() -> None:
    """However far the reply has got (starting, speaking, or already closing its item), a
    cancel leaves no item in progress: each gets its closing events, once, before
    ``response.done``."""
    whole = _cancelled_at(10_000)  # never cancelled: how many events a whole reply has
    assert whole[-1]["type"] == "response.done"
    for position in range(len(whole) - 3):
        events = _cancelled_at(position)
        kinds = [e["type"] for e in events]
        done = next(e for e in events if e["type"] == "response.done")["response"]
        assert all(i["status"] != "in_progress" for i in done.get("output", [])), position
        assert kinds.count("response.output_item.done") == len(done.get("output", [])), position
        closing = ("response.output_audio.done", "response.output_audio_transcript.done",
                   "response.content_part.done", "response.output_item.done")
        assert all(kinds.count(k) <= 1 for k in closing), position  # never sent twice
        if done["status"] == "cancelled" and "response.content_part.added" in kinds:
            # a cancel that comes once the item is closed leaves it completed
            _assert_cancelled_audio_ends(events[kinds.index("response.created"):],
                                         ("incomplete", "completed"))


class _Words:
    """A speech-to-text engine that hears the same words in any audio (the turn's timing is the
    local server's own)."""

    def transcribe(self, pcm: bytes) -> str:
        return "hello there"


@pytest.mark.parametrize("model", ["gpt-4o-transcribe-diarize", "whisper-1"])
def test_a_diarising_model_gets_a_ga_segment_for_the_whole_turn(model: str) -> None:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES), transcriber=_Words(),
                     pace=0.005) as server, connect(server.url, max_size=None) as ws:
        talk = Talk(ws)
        talk.until("session.created")
        talk.send(type="session.update", session={
            "type": "realtime", "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": None, "transcription": {
                "model": model, "language": "en"}}}})
        echoed = talk.until("session.updated")["session"]["audio"]["input"]["transcription"]
        assert echoed == {"model": model, "language": "en"}  # kept as asked
        talk.send(type="input_audio_buffer.append", audio=_tone(400))
        talk.send(type="input_audio_buffer.commit")
        done = talk.until("conversation.item.input_audio_transcription.completed")
    segments = [e for e in talk.events if e["type"].endswith("transcription.segment")]
    assert sorted({p for event in talk.events for p in ga_problems(event)}) == []
    if "diarize" not in model:
        assert segments == []
        return
    [segment] = segments
    assert talk.events.index(segment) < talk.events.index(done)
    assert (segment["item_id"], segment["speaker"], segment["text"]) == (
        done["item_id"], "A", "hello there")
    assert (segment["start"], segment["end"]) == (0.0, 0.4)  # the 400 ms of audio committed
