"""The offline server's two profiles side by side: ``natural`` (Whisper tiny.en ears, Piper's
joe voice) and ``fast`` (PocketSphinx, Flite), each in a fresh process of its own (so its
memory is its own), with SmolLM2 replies and semantic VAD, as a new user meets them.

For each test voice (Flite slt/awb/rms, Festival HTS; eSpeak NG as the hard case, from
``tests/support/speech.py``), one conversation spoken at real time: the word error rate of
what was heard, and from the end of the speech as sent: the final transcript and the first
reply audio (turn 1, the last turn, median; each voice asks the questions from one further
on, so that over the voices the first and the last turns see nearly the same questions).
Also: engine load time, memory (RSS) loaded and at its peak, the speculative decodes used, the
replies begun early and taken over, the machine's load average, and the installed size of
each extra (its packages and the packages they need, beyond rtwidget's own).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from ._util import ROOT, table

VOICES = ["slt", "awb", "rms", "hts", "espeak"]
PROFILES = ("natural", "fast")
EXTRAS = ("local", "natural", "voice")


def measure(profile: str, turns: int) -> None:
    """Run in a fresh process: one conversation per test voice; print the figures as JSON."""
    import rtwidget as rt
    from rtwidget.server import offline_server

    from .offline import QUESTIONS, _peak_mb, _rss_mb, _speech, _stream

    speech = _speech()
    out: dict[str, Any] = {"load_average": [os.getloadavg()[0]], "rss_before_mb": _rss_mb()}
    start = time.perf_counter()
    server = offline_server(profile=profile)
    out["load_s"] = time.perf_counter() - start
    out["rss_loaded_mb"] = _rss_mb()
    out["description"] = server.description
    stages = {"transcript": "conversation.item.input_audio_transcription.completed",
              "first_audio": "response.output_audio.delta"}
    out["voices"] = {}
    with server:
        for n, voice in enumerate(v for v in VOICES if speech.available(v)):
            # each voice starts one question further on: turn 1 and turn 10 (over the
            # voices) then see nearly the same questions, and compare the turns, not the
            # questions' answers (a long first clause is slower to start, at any turn)
            asked = [*QUESTIONS[:turns][n % turns:], *QUESTIONS[:turns][:n % turns]]
            rows: list[dict[str, float]] = []
            errors: list[float] = []
            heard: list[str] = []
            misheard: list[list[str]] = []
            with rt.RealtimeSession("local", url=server.url, tools=False, transcription="local",
                                    instructions="You are a helpful voice assistant. Answer "
                                    "in one short sentence.") as s:
                seen: dict[str, float] = {}
                s.on("*", lambda ev, seen=seen: seen.setdefault(ev["type"], time.perf_counter()))
                s.on(stages["transcript"], lambda ev, heard=heard: heard.append(ev["transcript"]))
                for text in asked:
                    audio = speech.in_room(speech.trim(speech.speak(text, voice)), 300, 2500)
                    done = s.expect("response.done", timeout=180)
                    seen.clear()
                    heard.clear()
                    sent_end = _stream(s, audio, speech_end=speech.speech_end_ms(audio) * 48)
                    done.wait()
                    assert sent_end is not None
                    rows.append({k: (seen.get(v, float("nan")) - sent_end) * 1000
                                 for k, v in stages.items()})
                    usage = getattr(server.options.engine, "last_usage", None) or {}
                    if usage:  # the prompt llama.cpp still had to read when the reply began
                        rows[-1]["unread_tokens"] = usage.get("prompt_tokens", 0) - usage.get(
                            "cached_tokens", 0)
                    errors.append(speech.word_error_rate(text, heard[0] if heard else ""))
                    if errors[-1] > 0:
                        misheard.append([text, heard[0] if heard else ""])
            out["voices"][voice] = {
                "wer": statistics.fmean(errors), "turns": rows, "misheard": misheard,
                "asked": asked,
                "median": {k: _median(r[k] for r in rows) for k in stages}}
    out["speculative_hits"] = getattr(server.options.transcriber, "speculative_hits", None)
    out["early_replies"] = getattr(server.options.engine, "early_replies_used", 0)
    out["rss_peak_mb"] = _peak_mb()
    out["load_average"].append(os.getloadavg()[0])
    print(json.dumps(out))


def _median(values: Any) -> float:
    """The median of the values that are numbers (a turn with no reply audio is ``nan``)."""
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else float("nan")


def _requirements(extra: str | None) -> list[str]:
    """rtwidget's requirements (of ``extra``, or its own when ``None``), as package names."""
    text = (ROOT / "pyproject.toml").read_text()
    if extra is None:
        block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    else:
        block = re.search(rf"^{extra} = \[(.*?)^\]", text, re.S | re.M)
    names = re.findall(r'^\s*"([A-Za-z0-9_.\-]+)', block[1], re.M) if block else []
    return names


def _closure(names: list[str]) -> set[str]:
    """The installed packages ``names`` need, themselves included (normalised names)."""
    todo, found = list(names), set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.add(name)
        for req in dist.requires or []:
            if "extra ==" not in req:
                todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return found


def extra_sizes() -> dict[str, dict[str, Any]]:
    """Installed MB of each extra: its packages and what they need beyond rtwidget's own."""
    base = _closure(_requirements(None))
    out = {}
    for extra in EXTRAS:
        packages = sorted(_closure(_requirements(extra)) - base)
        size = 0
        for name in packages:
            for f in metadata.distribution(name).files or []:
                path = f.locate()
                if os.path.isfile(path):
                    size += os.path.getsize(path)
        out[extra] = {"mb": size / 1e6, "packages": packages}
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Each profile measured in a child process (a crash is recorded, not fatal)."""
    turns = 4 if quick else 10
    results: dict[str, Any] = {"turns": turns, "cpus": os.cpu_count(),
                               "extras": extra_sizes()}
    for profile in PROFILES:
        done = subprocess.run([sys.executable, "-c", "from bench.profiles import measure; "
                               f"measure({profile!r}, {turns})"], cwd=ROOT,
                              capture_output=True, text=True, timeout=3600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            results[profile] = {"crashed": f"exit {done.returncode}: "
                                           f"{done.stderr.strip()[-300:]}"}
            continue
        results[profile] = json.loads(lines[-1])
        if done.returncode:  # after its figures were printed: at the interpreter's exit
            results[profile]["exit"] = f"{done.returncode}: {done.stderr.strip()[-120:]}"
    return results


def report(results: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    for profile in PROFILES:
        got = results.get(profile, {})
        if "crashed" in got or not got:
            rows.append([f"{profile}: the measuring process crashed", got.get("crashed", "")])
            continue
        rows.append([f"{profile}: engines", got["description"].split("; not used")[0]])
        for voice, v in got["voices"].items():
            first, last, med = v["turns"][0], v["turns"][-1], v["median"]
            rows.append([f"{profile}, voice {voice}: WER / final transcript (median) / first "
                         f"reply audio turn 1, turn {len(v['turns'])}, median",
                         f"{v['wer']:.3f} / {med['transcript']:.0f} ms / "
                         f"{first['first_audio']:.0f}, {last['first_audio']:.0f}, "
                         f"{med['first_audio']:.0f} ms"])
        every = [t for v in got["voices"].values() for t in v["turns"]]
        turn1, turn_n = (_median(v["turns"][at]["first_audio"] for v in got["voices"].values())
                         for at in (0, -1))
        rows.append([f"{profile}: first reply audio, turn 1 / turn "
                     f"{len(every) // len(got['voices'])}, median over the voices (each voice's "
                     "questions begin one further on)",
                     f"{turn1:.0f} / {turn_n:.0f} ms ({turn_n / turn1 - 1:+.0%})"])
        silent = sum(1 for t in every if t["first_audio"] != t["first_audio"])
        rows.append([f"{profile}: first reply audio, median of all {len(every)} turns"
                     + (f" ({silent} with no reply audio, left out)" if silent else ""),
                     f"{_median(t['first_audio'] for t in every):.0f} ms"])
        unread = [(v["turns"][0].get("unread_tokens"), v["turns"][-1].get("unread_tokens"))
                  for v in got["voices"].values()]
        if unread and all(a is not None and b is not None for a, b in unread):
            rows.append([f"{profile}: prompt tokens left to read when the reply began, turn 1 / "
                         f"turn {len(every) // len(unread)}, per voice",
                         ", ".join(f"{a} / {b}" for a, b in unread)])
        rows.append([f"{profile}: final transcript, median of all {len(every)} turns",
                     f"{_median(t['transcript'] for t in every):.0f} ms"])
        natural_wer = [v["wer"] for k, v in got["voices"].items() if k != "espeak"]
        if natural_wer:
            rows.append([f"{profile}: WER, natural voices (mean)",
                         f"{statistics.fmean(natural_wer):.3f}"])
        hits = got.get("speculative_hits")
        rows.append([f"{profile}: engines load / RSS loaded / RSS peak"
                     + (" / turns whose final words came from the speculative decode"
                        if hits is not None else ""),
                     f"{got['load_s']:.1f} s / {got['rss_loaded_mb']:.0f} MB / "
                     f"{got['rss_peak_mb']:.0f} MB" + (f" / {hits} of {len(every)}"
                                                       if hits is not None else "")])
        if "early_replies" in got:
            rows.append([f"{profile}: turns whose reply was begun in the end-of-turn silence and "
                         "taken over", f"{got['early_replies']} of {len(every)}"])
        rows.append([f"{profile}: load average (1 min) before / after",
                     " / ".join(f"{x:.1f}" for x in got["load_average"])])
        if got.get("exit"):
            rows.append([f"{profile}: its process, after printing the figures, exited",
                         got["exit"]])
    for extra, e in results["extras"].items():
        rows.append([f"installed size of rtwidget[{extra}] beyond rtwidget's own packages",
                     f"{e['mb']:.0f} MB ({', '.join(e['packages'])})"])
    return table(f"Offline profiles, {results['cpus']} CPUs: natural (Whisper, Piper) and fast "
                 "(PocketSphinx, Flite); times from the end of the speech as sent",
                 ["figure", "value"], rows)
