"""The local server's offline engines, heard and spoken the way people speak: speech made by
natural voices (Flite, Festival HTS; eSpeak NG kept as the hard case, from
``tests/support/speech.py``)
and streamed into the server as a microphone would send it.

- voices: time to synthesise a sentence, per engine and voice;
- the server's ear (the fast profile: PocketSphinx): word error rate per test voice on a fixed
  set of everyday sentences;
- turn end: one 10-turn conversation with SmolLM2 (the fast profile, semantic VAD):
  end of speech → turn end, → transcript, → first reply audio, for turn 1, turn 10 and the median;
- pauses: sentences with a hesitation in the middle, and how many turns were cut there;
- the VAD engines' end-of-turn delay with 500 ms of silence, first reply sentence, memory;
- both profiles (``natural``: Whisper, Piper; ``fast``: PocketSphinx, Flite), see
  :mod:`bench.profiles` (also on its own: ``python -m bench --only profiles``);
- the reply engine alone (llama.cpp from xllamacpp), in fresh processes: import, weights hash
  check, load (with its one-token self-test), time to first token and tokens/s, with llama.cpp's
  weight repacking off (the default) and on, alternating, so the ratio is measured in one run.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import profiles
from ._util import ROOT, table

WER_SENTENCES = [  # everyday sentences that appear nowhere else in the project
    "the bakery on the corner sells fresh bread every morning",
    "please call me back when you get this message",
    "we are going to the beach next weekend",
    "how much does a ticket to the museum cost",
    "i left my umbrella at the office yesterday",
    "can you recommend a good book for a long flight",
    "the children played in the garden until it got dark",
    "what time does the last bus leave tonight",
    "my sister is learning to play the piano",
    "turn off the lights in the kitchen please",
]
WER_VOICES = ["slt", "awb", "rms", "kal", "hts", "espeak:en-us", "espeak:en-us+f3"]
NATURAL = ("slt", "awb", "rms", "hts")
QUESTIONS = [  # one conversation, ten turns
    "what is the capital of france",
    "how many legs does a spider have",
    "what color is the sky",
    "can you tell me a fun fact about the ocean",
    "what should i cook for dinner tonight",
    "how far away is the moon",
    "what is your favorite season",
    "why do cats purr",
    "how do i make a cup of tea",
    "what is the tallest mountain in the world",
]
PAUSED = [  # "|" marks a hesitation of PAUSE_MS
    "i would like to order | a large pizza with mushrooms",
    "can you set a timer for | ten minutes",
    "what is the weather going to be like | in paris tomorrow",
    "remind me to call | my mother at six",
    "i need to buy some | eggs and butter",
    "tell me about the | history of rome",
    "how do i get to the | train station from here",
    "my favorite food is | spaghetti with tomato sauce",
    "could you play some | relaxing music",
    "i am looking for a | quiet place to study",
    "the meeting has been moved to | thursday afternoon",
    "what is the best way to | learn a new language",
    "please add milk and | bread to my shopping list",
    "when does the | pharmacy close today",
    "i think we should | leave a bit earlier",
    "show me pictures of | mountains in the snow",
    "we could go to the cinema | or stay at home",
    "how long should i | bake the potatoes",
    "book a table for two | at the italian restaurant",
    "send a message to | my brother",
]
PAUSE_MS = 500
FRAME = 960  # 20 ms at 24 kHz, in samples


def _speech() -> Any:
    """``tests/support/speech.py``, the natural test voices."""
    spec = importlib.util.spec_from_file_location("rtwidget_test_speech",
                                                  ROOT / "tests" / "support" / "speech.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rss_mb() -> float:
    """This process's resident memory now (MB)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _peak_mb() -> float:
    """The most memory this process has held (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _with_pause(text: str, speech: Any, voice: str = "slt") -> bytes:
    """``text`` with its ``|`` spoken as a pause of PAUSE_MS."""
    first, second = (speech.trim(speech.speak(part.strip(), voice)) for part in text.split("|"))
    return first + speech.silence(PAUSE_MS) + second


def _stream(session: Any, audio: bytes, pace: float = 1.0,
            speech_end: int | None = None) -> float | None:
    """Send ``audio`` in 20 ms frames, ``pace`` times real time; returns when the frame with
    byte ``speech_end`` left (perf_counter), if asked."""
    start = time.perf_counter()
    sent_end = None
    step = FRAME * 2
    for n, i in enumerate(range(0, len(audio), step)):
        session.send_audio(audio[i : i + step])
        if speech_end is not None and sent_end is None and i + step > speech_end:
            sent_end = time.perf_counter()
        time.sleep(max(0.0, start + (n + 1) * 0.02 / pace - time.perf_counter()))
    return sent_end


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (raises EngineUnavailable without rtwidget[local])."""
    from rtwidget.server import PocketsphinxTranscriber
    from rtwidget.server.llm import LlamaReplyEngine

    speech = _speech()
    rss_before = _rss_mb()
    PocketsphinxTranscriber()
    llm = LlamaReplyEngine()
    results: dict[str, Any] = {"memory_mb": {"before_engines": rss_before,
                                             "engines_loaded": _rss_mb()}}
    results["synthesis"] = _synthesis(speech)
    results["vad_end_of_turn_ms"] = _vad_delays(speech)
    results["llm_first_token_ms"] = _first_token(llm)
    llm.close()
    results["reply_engine"] = _reply_engine(quick)
    # each section's server loads its own engine; the one before is freed by the cyclic
    # garbage collector, and two alive at once run slower (see engine_figures)
    results["wer"] = _wer_by_voice(speech, quick)
    gc.collect()
    results["turns"] = _conversation(speech, quick)
    gc.collect()
    results["pauses"] = _pauses(speech, quick)
    gc.collect()
    results["memory_mb"]["after_turns"] = _rss_mb()
    results["memory_mb"]["peak"] = _peak_mb()
    results["profiles"] = profiles.run(quick)  # natural and fast, each in a process of its own
    return results


def _synthesis(speech: Any) -> dict[str, Any]:
    """Milliseconds to synthesise one sentence (median), and seconds of speech per second."""
    from rtwidget.server import EspeakSynthesizer, FliteSynthesizer

    out: dict[str, Any] = {}
    engines = {f"Flite {v}": (FliteSynthesizer(), v) for v in ("slt", "awb", "rms", "kal")}
    engines["eSpeak NG en-us"] = (EspeakSynthesizer(), "en-us")
    for name, (engine, voice) in engines.items():
        times, audio = [], 0.0
        for text in QUESTIONS:
            start = time.perf_counter()
            pcm = engine.synthesize(text + ".", voice, 1.0)
            times.append(time.perf_counter() - start)
            audio += len(pcm) / 48000
        out[name] = {"ms": statistics.median(times) * 1000, "speed": audio / sum(times)}
    if speech.available("hts"):
        out["Festival HTS slt (voice loaded)"] = _festival_synthesis(speech.HTS_VOICE)
    return out


def _festival_synthesis(voice: str) -> dict[str, float]:
    """Festival's HTS voice, in one process: the voice loaded once, then each sentence."""
    with tempfile.TemporaryDirectory(prefix="rtwidget-bench-") as tmp:
        load = Path(tmp, "load.scm")
        load.write_text(f"(voice_{voice})\n")
        script = Path(tmp, "all.scm")
        script.write_text(f"(voice_{voice})\n" + "".join(
            f'(utt.save.wave (utt.synth (Utterance Text "{t}.")) "{tmp}/{i}.wav" \'riff)\n'
            for i, t in enumerate(QUESTIONS)))
        start = time.perf_counter()
        subprocess.run(["festival", "-b", str(load)], check=True, capture_output=True)
        loading = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True)
        total = time.perf_counter() - start
        import wave

        audio = 0.0
        for i in range(len(QUESTIONS)):
            with wave.open(f"{tmp}/{i}.wav") as w:
                audio += w.getnframes() / w.getframerate()
    per_sentence = max(total - loading, 1e-6) / len(QUESTIONS)
    return {"ms": per_sentence * 1000, "speed": audio / (per_sentence * len(QUESTIONS)),
            "load_ms": loading * 1000}


def _vad_delays(speech: Any) -> dict[str, float]:
    """Each VAD engine's delay from the end of speech to its stop event, 500 ms silence."""
    from rtwidget.server.vad import VADS, VadSettings

    delays: dict[str, float] = {}
    clips = [speech.in_room(speech.trim(speech.speak(t)), 500, 1500) for t in QUESTIONS[:5]]
    for name, cls in VADS.items():
        found = []
        for audio in clips:
            true_end = speech.speech_end_ms(audio)
            vad = cls(VadSettings(silence_duration_ms=500))
            for i in range(0, len(audio), FRAME * 2):
                if any(e.kind == "stop" for e in vad.feed(audio[i : i + FRAME * 2])):
                    found.append((i + FRAME * 2) / 48 - true_end)
                    break
        delays[name] = statistics.median(found) if found else float("nan")
    return delays


def _first_token(llm: Any) -> float:
    from rtwidget.server.engines import HistoryTurn, ReplyContext, TextDelta

    async def first(text: str) -> float:
        ctx = ReplyContext(instructions="", history=[HistoryTurn("user", "message", text)],
                           tools=[], tool_choice="auto", max_output_tokens=40)
        start = time.perf_counter()
        first = float("nan")
        async for chunk in llm.reply(ctx):  # to the end: the model's thread must finish first
            if isinstance(chunk, TextDelta) and math.isnan(first):
                first = time.perf_counter() - start
        return first

    return statistics.median(asyncio.run(first(t)) * 1000 for t in QUESTIONS[:5])


STORY = "Tell me a long story about a lighthouse keeper and a storm."
SETTINGS = ("off", "on")  # llama.cpp's weight repacking


def engine_figures(pairs: int) -> None:
    """Run in a fresh process: load the reply engine with repacking off and on in turn
    (``pairs`` times each, the order swapped each time), measure each, and close it before the
    next loads; print the figures as one line of JSON. One engine at a time: with two, libgomp
    runs more threads than there are cores, its barriers sleep instead of spinning, and both
    ran at half speed here."""
    start = time.perf_counter()
    importlib.import_module("xllamacpp")
    imported = time.perf_counter() - start
    from rtwidget.server import llm
    from rtwidget.server.engines import HistoryTurn, ReplyContext

    def measure(setting: str) -> dict[str, Any]:
        llm._verified.clear()  # each load checks the weights afresh
        start = time.perf_counter()
        engine = llm.LlamaReplyEngine(repack=setting == "on")
        loaded = time.perf_counter() - start

        def stream(text: str, instructions: str, max_tokens: int) -> list[float]:
            """When each piece of text came, from the request (greedy: both settings write
            the same tokens)."""
            messages = engine.messages(ReplyContext(
                instructions=instructions, history=[HistoryTurn("user", "message", text)], tools=[],
                tool_choice="auto", max_output_tokens=None))
            times: list[float] = []
            begin = time.perf_counter()
            engine._stream(messages, max_tokens, 0.0, threading.Event(),
                           lambda piece, _: times.append(time.perf_counter() - begin)
                           if piece else None)
            return times

        first = [stream(q, "", 64)[0] * 1000 for q in QUESTIONS[:6]]
        story = stream(STORY, "You tell long, detailed stories.", 200)
        figures = {"load_s": loaded, "first_token_ms": statistics.median(first),
                   "tokens": len(story),
                   "tokens_per_s": (len(story) - 1) / (story[-1] - story[0]),
                   "repack": not engine.params.no_extra_bufts}
        engine.close()
        return figures

    out: dict[str, Any] = {"import_ms": imported * 1000, "pairs": []}
    for n in range(pairs):
        order = SETTINGS if n % 2 == 0 else SETTINGS[::-1]
        out["pairs"].append({name: measure(name) for name in order})
    engine_path = llm.smollm2_path()
    llm._verified.clear()
    start = time.perf_counter()
    llm.verify_weights(engine_path)
    out["hash_ms"] = (time.perf_counter() - start) * 1000
    print(json.dumps(out))


def _reply_engine(quick: bool) -> dict[str, Any]:
    """:func:`engine_figures` in a child process (a crash is recorded, not fatal): the median
    of each figure per setting, and of the on ÷ off ratios of the pairs measured one after the
    other."""
    load = [os.getloadavg()[0]]  # other work on the machine slows both settings alike
    done = subprocess.run([sys.executable, "-c", "from bench.offline import engine_figures; "
                           f"engine_figures({2 if quick else 4})"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    load.append(os.getloadavg()[0])
    if done.returncode:
        return {"crashed": f"exit {done.returncode}: {done.stderr.strip()[-300:]}",
                "load_average": load}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["load_average"] = load
    keys = ("load_s", "first_token_ms", "tokens_per_s")
    for name in SETTINGS:
        out[name] = {"repack": out["pairs"][0][name]["repack"],
                     "tokens": out["pairs"][0][name]["tokens"],
                     **{k: statistics.median(p[name][k] for p in out["pairs"]) for k in keys}}
    out["ratio_on_off"] = {k: statistics.median(p["on"][k] / p["off"][k] for p in out["pairs"])
                           for k in keys}
    return out


def _wer_by_voice(speech: Any, quick: bool) -> dict[str, float]:
    """Each test voice's sentences streamed (at 4x real time) into the offline server with
    transcription on; the mean word error rate of what it heard."""
    import rtwidget as rt
    from rtwidget.server import offline_server

    voices = [v for v in WER_VOICES if speech.available(v.partition(":")[0])]
    sentences = WER_SENTENCES[:4] if quick else WER_SENTENCES
    out: dict[str, float] = {}
    with offline_server(profile="fast") as server, rt.RealtimeSession(
        "local", url=server.url, tools=False, transcription="pocketsphinx",
        turn_detection={"type": "server_vad", "create_response": False},
    ) as s:
        for voice in voices:
            errors = []
            for text in sentences:
                done = s.expect("conversation.item.input_audio_transcription.completed",
                                timeout=60)
                _stream(s, speech.in_room(speech.speak(text, voice), 400, 900), pace=4.0)
                errors.append(speech.word_error_rate(text, done.wait()["transcript"]))
            out[voice] = statistics.fmean(errors)
    return out


def _conversation(speech: Any, quick: bool) -> dict[str, Any]:
    """One conversation with the offline server's defaults (SmolLM2, semantic VAD): each turn
    spoken by Flite's slt at real time; times from the end of the speech as sent."""
    import rtwidget as rt
    from rtwidget.server import offline_server

    stages = {"turn_end": "input_audio_buffer.speech_stopped",
              "transcript": "conversation.item.input_audio_transcription.completed",
              "first_audio": "response.output_audio.delta"}
    turns: list[dict[str, float]] = []
    with offline_server(profile="fast") as server, rt.RealtimeSession(
        "local", url=server.url, tools=False, transcription="pocketsphinx",
        instructions="You are a helpful voice assistant. Answer in one short sentence.",
    ) as s:
        seen: dict[str, float] = {}
        s.on("*", lambda ev: seen.setdefault(ev["type"], time.perf_counter()))
        for text in QUESTIONS[:3] if quick else QUESTIONS:
            audio = speech.in_room(speech.trim(speech.speak(text)), 300, 2500)
            done = s.expect("response.done", timeout=120)
            seen.clear()
            sent_end = _stream(s, audio, speech_end=speech.speech_end_ms(audio) * 48)
            done.wait()
            assert sent_end is not None
            turns.append({k: (seen.get(v, float("nan")) - sent_end) * 1000
                          for k, v in stages.items()})
    return {"turn_1": turns[0], "turn_last": turns[-1], "count": len(turns),
            "median": {k: statistics.median(t[k] for t in turns) for k in stages},
            "all": turns}


def _pauses(speech: Any, quick: bool) -> dict[str, Any]:
    """Sentences with a hesitation of PAUSE_MS in the middle, at real time, semantic VAD
    (eagerness auto) beside server VAD (500 ms of silence), two sessions at once: how many
    turns were cut in the pause."""
    import rtwidget as rt
    from rtwidget.server import offline_server

    sentences = PAUSED[:6] if quick else PAUSED
    clips = [_with_pause(t, speech) for t in sentences]
    out: dict[str, Any] = {"sentences": len(sentences), "pause_ms": PAUSE_MS}
    with offline_server(profile="fast") as server:
        def listen(name: str, td: dict[str, Any]) -> None:
            cut = []
            with rt.RealtimeSession("local", url=server.url, tools=False,
                                    transcription="pocketsphinx",
                                    turn_detection={**td, "create_response": False}) as s:
                stops: list[int] = []
                s.on("input_audio_buffer.speech_stopped",
                     lambda ev: stops.append(int(ev["audio_end_ms"])))
                for pcm, text in zip(clips, sentences, strict=True):
                    stops.clear()
                    done = s.expect("conversation.item.input_audio_transcription.completed",
                                    timeout=60)
                    _stream(s, speech.in_room(pcm, 400, 2500))
                    done.wait()
                    time.sleep(0.3)
                    if len(stops) > 1:
                        cut.append(text)
            out[name] = {"cut": len(cut), "cut_sentences": cut}

        threads = [threading.Thread(target=listen, args=args) for args in (
            ("semantic_vad", {"type": "semantic_vad", "eagerness": "auto"}),
            ("server_vad", {"type": "server_vad", "silence_duration_ms": 500}))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return out


def report(results: dict[str, Any]) -> str:
    rows = [[f"synthesis, {name}", f"{f['ms']:.0f} ms a sentence, {f['speed']:.0f}x real time"]
            for name, f in results["synthesis"].items()]
    wer = results["wer"]
    rows += [[f"word error rate, test voice {voice}"
              + (" (natural)" if voice in NATURAL else ""), f"{value:.2f}"]
             for voice, value in wer.items()]
    turns = results["turns"]
    for label, row in (("turn 1", turns["turn_1"]), (f"turn {turns['count']}",
                       turns["turn_last"]), ("median", turns["median"])):
        rows.append([f"end of speech → turn end / transcript / first reply audio, {label}",
                     " / ".join(f"{row[k]:.0f}" for k in ("turn_end", "transcript",
                                                           "first_audio")) + " ms"])
    pauses = results["pauses"]
    rows += [[f"turns cut in a {pauses['pause_ms']} ms mid-sentence pause, {name}",
              f"{pauses[name]['cut']} of {pauses['sentences']}"]
             for name in ("semantic_vad", "server_vad")]
    rows += [[f"VAD end-of-turn delay, {name} (silence 500 ms)", f"{ms:.0f} ms"]
             for name, ms in results["vad_end_of_turn_ms"].items()]
    rows += _engine_rows(results.get("reply_engine"))
    rows += [
        ["time to the first whole reply sentence (SmolLM2-135M, in the server's engine)",
         f"{results['llm_first_token_ms']:.0f} ms"],
        ["memory of this benchmark's process (it loads the engines for each section): "
         "before engines / loaded / after its sections / peak",
         " / ".join(f"{v:.0f} MB" for v in results["memory_mb"].values())],
    ]
    out = table("Offline engines: natural test voices, speech streamed to the local server",
                ["figure", "value"], rows)
    return out + ("\n\n" + profiles.report(results["profiles"]) if "profiles" in results else "")


def _engine_rows(engine: dict[str, Any] | None) -> list[list[str]]:
    """The reply engine's rows: repacking off / on, and the ratio on ÷ off."""
    if not engine:
        return []
    load = ["reply engine: the machine's load average (1 min) before / after",
            " / ".join(f"{v:.1f}" for v in engine["load_average"])]
    if "crashed" in engine:
        return [load, ["reply engine: the measuring process crashed", engine["crashed"][:160]]]
    off, on, ratio = engine["off"], engine["on"], engine["ratio_on_off"]

    def both(key: str, fmt: str, unit: str) -> str:
        return f"{off[key]:{fmt}} / {on[key]:{fmt}}{unit} (on ÷ off {ratio[key]:.2f})"

    return [
        load,
        ["reply engine: import xllamacpp", f"{engine['import_ms']:.0f} ms"],
        ["reply engine: weights hash check (SHA-256, 98 MB, file in the OS cache)",
         f"{engine['hash_ms']:.0f} ms"],
        [f"reply engine: load with hash check and self-test, repacking off / on (medians of "
         f"{len(engine['pairs'])} loads each, turn about)", both("load_s", ".2f", " s")],
        ["reply engine: first token, 6 short questions (median), repacking off / on",
         both("first_token_ms", ".0f", " ms")],
        [f"reply engine: generation ({off['tokens']} tokens), repacking off / on",
         both("tokens_per_s", ".0f", " tokens/s")],
    ]
