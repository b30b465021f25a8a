"""Speech for tests and benchmarks, made the way people sound: Flite's voices (``slt``,
``awb``, ``rms``, ``kal``) and Festival's HTS voice (``hts``), with eSpeak NG (``espeak``, or
``espeak:<voice>`` such as ``espeak:en-us+f3``) kept as the hard case. The synthesizers run as
their own commands, apart from the server's engines, so a test hears speech the server did not
make. Output is PCM16 mono at 24 kHz unless ``rate`` says otherwise.

>>> pcm = speak("What is the weather like in London?")            # doctest: +SKIP
>>> audio = in_room(speak("Tell me a story.", "hts"))              # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from rtwidget.protocol.audio import resample

SAMPLE_RATE = 24000
FLITE_VOICES = ("slt", "awb", "rms", "kal")
NATURAL_VOICES = ("slt", "awb", "rms", "hts")
HTS_VOICE = "cmu_us_slt_arctic_hts"
LOUD = 300  # a sample above this is speech, in the synthesizers' output


def _command(voice: str, text_file: str, wav_file: str, speed: float) -> list[str]:
    if voice in FLITE_VOICES:
        return ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / speed:.4f}",
                "-f", text_file, "-o", wav_file]
    if voice == "hts":
        return ["text2wave", "-eval", f"(voice_{HTS_VOICE})", "-eval",
                f"(Parameter.set 'Duration_Stretch {1 / speed:.4f})", text_file, "-o", wav_file]
    if voice == "espeak" or voice.startswith("espeak:"):
        name = voice.partition(":")[2] or "en-us"
        return ["espeak-ng", "-v", name, "-s", str(round(160 * speed)), "-f", text_file,
                "-w", wav_file]
    raise ValueError(f"unknown test voice {voice!r}: use one of {FLITE_VOICES}, 'hts', "
                     "'espeak' or 'espeak:<voice>'")


def available(voice: str) -> bool:
    """Whether the program behind ``voice`` is installed here."""
    program = _command(voice, "in.txt", "out.wav", 1.0)[0]
    if voice == "hts":
        return shutil.which(program) is not None and Path(
            f"/usr/share/festival/voices/us/{HTS_VOICE}").is_dir()
    return shutil.which(program) is not None


def speak(text: str, voice: str = "slt", rate: int = SAMPLE_RATE, speed: float = 1.0) -> bytes:
    """``text`` spoken by ``voice`` (see the module docstring), as PCM16 mono at ``rate``."""
    with tempfile.TemporaryDirectory(prefix="rtwidget-speech-") as tmp:
        text_file, wav_file = f"{tmp}/text.txt", f"{tmp}/speech.wav"
        Path(text_file).write_text(text + "\n", encoding="utf-8")
        subprocess.run(_command(voice, text_file, wav_file, speed), check=True,
                       capture_output=True, timeout=120)
        with wave.open(wav_file) as w:
            pcm, source_rate = w.readframes(w.getnframes()), w.getframerate()
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(f"{voice} wrote {w.getnchannels()} channels of "
                                 f"{8 * w.getsampwidth()}-bit audio; expected mono PCM16")
    return resample(pcm, source_rate, rate)


def trim(pcm: bytes, margin_ms: int = 30, rate: int = SAMPLE_RATE) -> bytes:
    """``pcm`` without the synthesizer's own quiet before and after the words (``margin_ms``
    kept), so a test knows where the speech ends."""
    loud = np.nonzero(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > LOUD)[0]
    if not loud.size:
        return b""
    margin = rate * margin_ms // 1000
    return pcm[max(0, int(loud[0]) - margin) * 2 : (int(loud[-1]) + margin) * 2]


def speech_end_ms(pcm: bytes, rate: int = SAMPLE_RATE) -> int:
    """Where the last loud sample of ``pcm`` is, in ms."""
    loud = np.nonzero(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > LOUD)[0]
    return int(loud[-1]) * 1000 // rate if loud.size else 0


def silence(ms: int, rate: int = SAMPLE_RATE) -> bytes:
    """``ms`` of digital silence."""
    return bytes(2 * (rate * ms // 1000))


def in_room(pcm: bytes, lead_ms: int = 500, tail_ms: int = 1500, noise: float = 40.0,
            seed: int = 5, rate: int = SAMPLE_RATE) -> bytes:
    """``pcm`` between stretches of quiet room noise, with the same noise under it."""
    rng = np.random.default_rng(seed)
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    audio = np.concatenate([rng.normal(0, noise, rate * lead_ms // 1000),
                            speech + rng.normal(0, noise, speech.size),
                            rng.normal(0, noise, rate * tail_ms // 1000)])
    return np.clip(audio, -32768, 32767).astype("<i2").tobytes()


def write_wav(path: str | Path, pcm: bytes, rate: int = SAMPLE_RATE) -> Path:
    """Save PCM16 mono as a WAV file (for a browser's fake microphone, say)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return Path(path)


def word_error_rate(reference: str, heard: str) -> float:
    """Word error rate of ``heard`` against ``reference`` (case and punctuation ignored)."""
    import re

    ref = re.findall(r"[a-z0-9']+", reference.lower())
    hyp = re.findall(r"[a-z0-9']+", heard.lower())
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[len(hyp)] / max(1, len(ref))
