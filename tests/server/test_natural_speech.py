"""Flite, the local server's natural voice, and the tests' own natural speech (``speech.py``):
PocketSphinx hears Flite and Festival HTS speech well, and the offline server lists and speaks
with Flite's voices (eSpeak NG for other languages)."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import urllib.request

import numpy as np
import pytest
from conftest import RawClient
from support.speech import NATURAL_VOICES, available, in_room, speak, word_error_rate

import rtwidget as rt
from rtwidget.server import (
    CombinedSynthesizer,
    EngineUnavailable,
    EspeakSynthesizer,
    FliteSynthesizer,
    LocalServer,
    PocketsphinxTranscriber,
    ScriptedReplyEngine,
)
from rtwidget.server import defaults as defaults_module

NEEDED = ("espeakng_loader", "pocketsphinx", "soxr")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None] + [
    v for v in ("slt", "hts", "espeak") if not available(v)]
if MISSING:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError(f"the speech engines are not installed: {MISSING}")
    pytest.skip(f"speech engines not installed: {MISSING}", allow_module_level=True)

SENTENCES = [  # everyday sentences that appear nowhere else in the project
    "could you remind me to buy milk on the way home",
    "my brother lives in a small house near the river",
    "how long does it take to boil an egg",
]


@pytest.fixture(scope="module")
def flite() -> FliteSynthesizer:
    return FliteSynthesizer()


@pytest.fixture(scope="module")
def ear() -> PocketsphinxTranscriber:
    return PocketsphinxTranscriber()


def seconds(pcm: bytes) -> float:
    return len(pcm) / 48000


def envelope(pcm: bytes) -> np.ndarray:
    """Loudness in 10 ms steps."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    steps = samples[: samples.size // 240 * 240].reshape(-1, 240)
    return np.sqrt((steps * steps).mean(axis=1))


def same_speech(a: bytes, b: bytes) -> bool:
    """Whether two takes are the same words in the same voice (Flite's excitation noise makes
    takes differ sample by sample, not in length or loudness contour)."""
    if abs(len(a) - len(b)) > 0.02 * max(len(a), len(b)):
        return False
    ea, eb = envelope(a), envelope(b)
    n = min(ea.size, eb.size)
    return bool(np.corrcoef(ea[:n], eb[:n])[0, 1] > 0.95)


def test_flite_lists_its_voices_and_speaks_each_at_24_khz(flite: FliteSynthesizer) -> None:
    assert [v["name"] for v in flite.voices()] == ["slt", "rms", "awb", "kal"]
    assert flite.default_voice == "slt"
    text = "The quick brown fox jumps over the lazy dog."
    audio = {v: flite.synthesize(text, v, 1.0) for v in ("slt", "rms", "awb", "kal")}
    for pcm in audio.values():
        assert 1.5 < seconds(pcm) < 4.5  # about 2.5 s of speech at 24 kHz, not 16 or 8 kHz
    assert not any(same_speech(audio["slt"], audio[v]) for v in ("rms", "awb", "kal"))
    assert same_speech(flite.synthesize(text, "Dennis", 1.0), audio["slt"])  # the default
    assert same_speech(flite.synthesize(text, "RMS", 1.0), audio["rms"])
    slow, fast = flite.synthesize(text, None, 0.5), flite.synthesize(text, None, 2.0)
    assert seconds(slow) > 2.5 * seconds(fast)
    assert flite.synthesize(" ... ", None, 1.0) == b""
    assert seconds(flite.synthesize("\u201cDon\u2019t\u201d \u2014 caf\u00e9\u2026", None,
                                    1.0)) > 0.3  # typographic text is read, not dropped


def test_the_flite_command_speaks_like_the_library(flite: FliteSynthesizer) -> None:
    command = FliteSynthesizer(use_command=True)
    text = "Please set a timer for ten minutes."
    by_library, by_command = flite.synthesize(text, "awb", 1.0), command.synthesize(text, "awb",
                                                                                     1.0)
    assert same_speech(by_library, by_command)
    assert [v["name"] for v in command.voices()] == ["slt", "rms", "awb", "kal"]


@pytest.mark.parametrize("voice", NATURAL_VOICES)
def test_pocketsphinx_hears_natural_voices(ear: PocketsphinxTranscriber, voice: str) -> None:
    errors = [word_error_rate(s, ear.transcribe(in_room(speak(s, voice)))) for s in SENTENCES]
    assert sum(errors) / len(errors) <= 0.25, errors


def test_pocketsphinx_hears_the_server_s_own_voice(ear: PocketsphinxTranscriber,
                                                   flite: FliteSynthesizer) -> None:
    errors = [word_error_rate(s, ear.transcribe(flite.synthesize(s, "slt", 1.0)))
              for s in SENTENCES]
    assert sum(errors) / len(errors) <= 0.25, errors


def test_the_speech_helper_makes_what_it_is_asked_for() -> None:
    slt, hts, espeak = (speak("hello there", v) for v in ("slt", "hts", "espeak"))
    assert all(0.4 < seconds(p) < 2.0 for p in (slt, hts, espeak))
    assert seconds(speak("hello there", "slt", rate=48000)) == pytest.approx(
        2 * seconds(slt), rel=0.01)
    with pytest.raises(ValueError, match="unknown test voice"):
        speak("hello", "Dennis")


def test_combined_voices_put_flite_first_and_route_other_languages_to_espeak(
    flite: FliteSynthesizer,
) -> None:
    espeak = EspeakSynthesizer()
    both = CombinedSynthesizer(flite, espeak)
    names = [v["name"] for v in both.voices()]
    assert names[:4] == ["slt", "rms", "awb", "kal"]
    languages = [str(v["language"]) for v in both.voices()]
    first_other = next(i for i, lang in enumerate(languages) if not lang.startswith("en"))
    assert all(not lang.startswith("en") for lang in languages[first_other:])
    assert len(names) == len(set(n.lower() for n in names))
    german = both.synthesize("Guten Tag", "de", 1.0)
    assert same_speech(german, espeak.synthesize("Guten Tag", "de", 1.0))
    assert not same_speech(german, flite.synthesize("Guten Tag", "slt", 1.0))
    assert same_speech(both.synthesize("Good day", "en-us", 1.0),
                       espeak.synthesize("Good day", "en-us", 1.0))
    assert same_speech(both.synthesize("Good day", "Dennis", 1.0),
                       flite.synthesize("Good day", "slt", 1.0))


def test_the_offline_server_lists_flite_first_and_starts_with_a_listed_voice(
    rt_server: LocalServer,
) -> None:
    base = rt_server.url.replace("ws://", "http://").rsplit("/v1/", 1)[0]
    with urllib.request.urlopen(base + "/voices/v1/voices", timeout=10) as r:
        listed = [v["voiceId"] for v in json.loads(r.read())["voices"]]
    assert listed[:4] == ["slt", "rms", "awb", "kal"]
    client = RawClient(rt_server.url)
    client.close()
    voice = client.seen[0]["session"]["audio"]["output"]["voice"]
    assert voice == "slt" and voice in listed
    assert list(rt.voices("local", url=rt_server.url)["name"][:4]) == listed[:4]


def test_replies_are_spoken_with_flite(rt_server: LocalServer) -> None:
    reply = "The kettle is on. Tea will be ready soon."
    with LocalServer(engine=ScriptedReplyEngine(fallback=reply),
                     synthesizer=rt_server.options.synthesizer) as srv, rt.RealtimeSession(
        "local", url=srv.url, tools=False
    ) as s:
        chunks: list[bytes] = []
        s.on("response.output_audio.delta", lambda ev: chunks.append(
            base64.b64decode(ev["delta"])))
        s.ask("hello")
    flite = FliteSynthesizer()
    expected = b"".join(flite.synthesize(p, "slt", 1.0) for p in ("The kettle is on.",
                                                                  "Tea will be ready soon."))
    assert same_speech(b"".join(chunks), expected)
    assert not same_speech(b"".join(chunks), b"".join(
        flite.synthesize(p, "rms", 1.0) for p in ("The kettle is on.", "Tea will be ready soon.")))


def test_without_flite_the_server_speaks_with_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_flite(*args: object, **kwargs: object) -> None:
        raise EngineUnavailable("Flite is not installed")

    monkeypatch.setattr("rtwidget.server.text_to_speech.FliteSynthesizer", no_flite)
    found = defaults_module.EngineSet.fallback()
    voices = defaults_module._voices(found)
    assert [type(e).__name__ for e in voices.engines] == ["EspeakSynthesizer"]
    assert any("Flite is not installed" in m for m in found.missing)
    with LocalServer(synthesizer=voices) as srv:
        assert srv.options.voice == "English (America)"
        assert any(v["name"] == srv.options.voice for v in voices.voices())
    pcm = voices.synthesize("hello", srv.options.voice, 1.0)
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 1000
