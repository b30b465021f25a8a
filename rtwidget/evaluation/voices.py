"""The caller's voice: a scripted or simulated user's words spoken by Flite or eSpeak NG, run as
their own commands (apart from the server's synthesizers, so the agent hears speech it did not
make), PCM16 mono at 24 kHz, the format a microphone's frames take. The same words in the same
voice always give the same bytes, so each is made once per process (``functools.lru_cache``).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from ..protocol.audio import SAMPLE_RATE, resample
from ..protocol.errors import ConfigError

FLITE_VOICES = ("slt", "awb", "rms", "kal")
FRAME_MS = 40
"""A microphone frame, as the widget sends it."""


def _command(voice: str, text_file: str, wav_file: str) -> list[str]:
    if voice in FLITE_VOICES:
        return ["flite", "-voice", voice, "-f", text_file, "-o", wav_file]
    if voice == "espeak" or voice.startswith("espeak:"):
        name = voice.partition(":")[2] or "en-us"
        return ["espeak-ng", "-v", name, "-f", text_file, "-w", wav_file]
    raise ConfigError(f"unknown caller voice {voice!r}: use one of {FLITE_VOICES}, 'espeak' "
                      "or 'espeak:<voice>'")


def voice_available(voice: str) -> bool:
    """Whether the program behind ``voice`` is installed here."""
    return shutil.which(_command(voice, "in.txt", "out.wav")[0]) is not None


@functools.lru_cache(maxsize=512)
def speak(text: str, voice: str = "slt") -> bytes:
    """``text`` spoken by ``voice`` (a Flite voice, ``espeak`` or ``espeak:<voice>``), as PCM16
    mono at 24 kHz. Raises :class:`~rtwidget.ConfigError` when the program is missing."""
    command = _command(voice, "text.txt", "speech.wav")
    if shutil.which(command[0]) is None:
        raise ConfigError(f"the caller voice {voice!r} needs {command[0]!r} installed "
                          "(apt-get install flite espeak-ng), or use mode='text'")
    with tempfile.TemporaryDirectory(prefix="rtwidget-caller-") as tmp:
        text_file, wav_file = f"{tmp}/text.txt", f"{tmp}/speech.wav"
        Path(text_file).write_text(text + "\n", encoding="utf-8")
        subprocess.run(_command(voice, text_file, wav_file), check=True, capture_output=True,
                       timeout=120)
        with wave.open(wav_file) as w:
            pcm, rate = w.readframes(w.getnframes()), w.getframerate()
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ConfigError(f"{voice} wrote {w.getnchannels()} channels of "
                                  f"{8 * w.getsampwidth()}-bit audio; expected mono PCM16")
    return resample(pcm, rate, SAMPLE_RATE)


def silence(ms: int) -> bytes:
    """``ms`` of digital silence at 24 kHz."""
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def frames(pcm: bytes, frame_ms: int = FRAME_MS) -> list[bytes]:
    """``pcm`` cut into microphone frames (the last one padded with silence)."""
    size = SAMPLE_RATE * frame_ms // 1000 * 2
    out = [pcm[i:i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes(size - len(out[-1]))
    return out
