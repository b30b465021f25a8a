"""The local server's offline engines on a fixed set of utterances (spoken by eSpeak NG):
VAD end-of-turn delay, ASR word error rate and real-time factor, time to the first reply token,
time to the first audio after the user stops speaking (streamed at real-time pace through the
server), and memory. Medians throughout."""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from typing import Any

import numpy as np

from ._util import table

UTTERANCES = [
    "what is the weather like in london",
    "tell me a short story about a cat",
    "how far away is the moon",
    "please set a timer for ten minutes",
    "what is the capital of france",
]
FRAME = 960  # 20 ms at 24 kHz, in samples


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _speech_end_ms(pcm: bytes) -> int:
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.float64))
    loud = np.nonzero(samples > 32768 * 0.01)[0]
    return int(loud[-1] / 24) if loud.size else 0


def _wer(ref: str, hyp: str) -> float:
    r, h = ref.split(), hyp.split()
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


def _padded(pcm: bytes, lead_ms: int = 500, tail_ms: int = 1500) -> bytes:
    rng = np.random.default_rng(5)
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    audio = np.concatenate([rng.normal(0, 40, 24 * lead_ms), speech + rng.normal(0, 40,
                            speech.size), rng.normal(0, 40, 24 * tail_ms)])
    return np.clip(audio, -32768, 32767).astype("<i2").tobytes()


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (raises EngineUnavailable without rtwidget[local])."""
    from rtwidget.server import EspeakSynthesizer, PocketsphinxTranscriber
    from rtwidget.server.engines import ReplyContext, TextDelta, Turn
    from rtwidget.server.llm import LlamaReplyEngine
    from rtwidget.server.vad import VADS, VadSettings

    rss_before = _rss_mb()
    voice = EspeakSynthesizer()
    ear = PocketsphinxTranscriber()
    llm = LlamaReplyEngine()
    rss_loaded = _rss_mb()
    spoken = {text: voice.synthesize(text, "en-us", 0.9) for text in UTTERANCES}
    results: dict[str, Any] = {"memory_mb": {"before_engines": rss_before,
                                             "engines_loaded": rss_loaded}}

    vad_delay: dict[str, float] = {}
    for name, cls in VADS.items():
        delays = []
        for pcm in spoken.values():
            audio = _padded(pcm)
            true_end = 500 + _speech_end_ms(pcm)
            vad = cls(VadSettings(silence_duration_ms=500))
            for i in range(0, len(audio), FRAME * 2):
                if any(e.kind == "stop" for e in vad.feed(audio[i : i + FRAME * 2])):
                    delays.append((i + FRAME * 2) / 48 - true_end)
                    break
        vad_delay[name] = statistics.median(delays) if delays else float("nan")
    results["vad_end_of_turn_ms"] = vad_delay

    wers, rtfs = [], []
    for text, pcm in spoken.items():
        start = time.perf_counter()
        heard = ear.transcribe(pcm)
        rtfs.append((time.perf_counter() - start) / (len(pcm) / 48000))
        wers.append(_wer(text, heard))
    results["asr"] = {"wer": statistics.median(wers), "mean_wer": statistics.fmean(wers),
                      "rtf": statistics.median(rtfs)}

    async def first_token(text: str) -> float:
        ctx = ReplyContext(instructions="", history=[Turn("user", "message", text)], tools=[],
                           tool_choice="auto", max_output_tokens=40)
        start = time.perf_counter()
        async for chunk in llm.reply(ctx):
            if isinstance(chunk, TextDelta):
                return time.perf_counter() - start
        return float("nan")

    results["llm_first_token_ms"] = statistics.median(
        asyncio.run(first_token(t)) * 1000 for t in UTTERANCES)
    results["first_audio_after_speech_ms"] = _first_audio(spoken, quick)
    results["memory_mb"]["after_turns"] = _rss_mb()
    return results


def _first_audio(spoken: dict[str, bytes], quick: bool) -> float:
    """Stream each utterance at real-time pace into the offline server; time from the end of
    the speech (as sent) to the first audio delta received."""
    import rtwidget as rt
    from rtwidget.server import offline_server

    gaps = []
    with offline_server() as server:
        for pcm in list(spoken.values())[: 2 if quick else None]:
            audio = _padded(pcm, tail_ms=2500)
            end_byte = (500 + _speech_end_ms(pcm)) * 48
            with rt.RealtimeSession("local", url=server.url, tools=False,
                                    transcription="pocketsphinx") as s:
                first = s.expect("response.output_audio.delta", timeout=60)
                sent_end = None
                start = time.perf_counter()
                for n, i in enumerate(range(0, len(audio), FRAME * 2)):
                    s.send_audio(audio[i : i + FRAME * 2])
                    if sent_end is None and i + FRAME * 2 >= end_byte:
                        sent_end = time.perf_counter()
                    time.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))
                first.wait()
                gaps.append((time.perf_counter() - (sent_end or start)) * 1000)
    return statistics.median(gaps)


def report(results: dict[str, Any]) -> str:
    vad = results["vad_end_of_turn_ms"]
    rows = [[f"VAD end-of-turn delay, {name} (silence 500 ms)", f"{ms:.0f} ms"]
            for name, ms in vad.items()]
    asr = results["asr"]
    rows += [
        ["ASR word error rate (PocketSphinx, median / mean)",
         f"{asr['wer']:.2f} / {asr['mean_wer']:.2f}"],
        ["ASR real-time factor", f"{asr['rtf']:.2f}"],
        ["time to first reply token (SmolLM2-135M)", f"{results['llm_first_token_ms']:.0f} ms"],
        ["end of speech → first audio back (real-time stream)",
         f"{results['first_audio_after_speech_ms']:.0f} ms"],
        ["memory: before engines / loaded / after turns (max RSS)",
         " / ".join(f"{v:.0f} MB" for v in results["memory_mb"].values())],
    ]
    return table(f"Offline engines, {len(UTTERANCES)} utterances (median)", ["figure", "value"],
                 rows)
