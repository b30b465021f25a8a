"""The settings of a transcription model (``audio.input.transcription``) checked before they are
sent (pure): ``keywords``, ``languages`` and ``delay`` beside ``model``, ``language`` and
``prompt``, and which provider and model document which.

What each field takes is what OpenAI documents, and nothing more:

- the GA reference's ``AudioTranscription`` (developers.openai.com/api/reference/resources/
  realtime; the ``openai`` package's ``types/realtime/audio_transcription.py``): ``keywords``,
  "words or phrases to guide transcription", an array of strings, and ``languages``, "possible
  languages of the input audio, in ISO-639-1 format", both "supported by gpt-transcribe and
  gpt-live-transcribe"; ``delay``, one of ``minimal``, ``low``, ``medium``, ``high``,
  ``xhigh``, "only supported with gpt-realtime-whisper in GA Realtime sessions";
- OpenAI's cookbook *Migrate from Whisper to GPT-Transcribe and GPT-Live-Transcribe*
  (developers.openai.com/cookbook/examples/migrating_from_whisper_to_gpt_transcribe): each
  keyword "must be a single-line literal and must not include ``<``, ``>``, a carriage return,
  or a line feed" (a bad one "rejects the whole request or session update"); "do not send both
  ``language`` and ``languages``"; and its ``gpt-live-transcribe`` session sets ``delay``
  (``"low"``), as the model's page says it "supports tunable latency".

Inworld's Realtime API documents ``model`` and a ``prompt`` for its transcription (its language
hints are in ``providerData.stt``), so the three are refused for Inworld. The documents give no
limit on how many keywords or languages there may be: none is made up here.

>>> check_transcription({"model": "gpt-live-transcribe", "languages": ["en", "fr"]}, "openai")
>>> check_transcription({"model": "whisper-1", "delay": "low"}, "openai")
Traceback (most recent call last):
...
rtwidget.protocol.transcription.TranscriptionError: transcription delay is documented for \
gpt-realtime-whisper and gpt-live-transcribe only, not 'whisper-1'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

DELAYS: tuple[str, ...] = ("minimal", "low", "medium", "high", "xhigh")
HINT_MODELS: tuple[str, ...] = ("gpt-transcribe", "gpt-live-transcribe")
"""The models documented to take ``keywords`` and ``languages``."""
DELAY_MODELS: tuple[str, ...] = ("gpt-realtime-whisper", "gpt-live-transcribe")
"""The models documented to take ``delay``."""
EXTRAS: tuple[str, ...] = ("keywords", "languages", "delay")
MODEL_RULES: tuple[str, ...] = ("openai", "azure", "local")
"""Providers whose transcription models are OpenAI's (the local server checks as they do)."""

_ISO_639_1 = re.compile(r"[a-z]{2}")
_KEYWORD_REFUSES = re.compile(r"[<>\r\n]")


class TranscriptionError(ConfigError):
    """A transcription setting that is refused: ``param`` is the field under
    ``audio.input.transcription`` (``""`` for the object), ``code`` ``invalid_type`` or
    ``invalid_value``, as a server's ``error`` event names them."""

    def __init__(self, message: str, param: str = "", code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TranscriptionError(f"transcription {name} must be a list of strings, got "
                                 f"{value!r}", name, "invalid_type")
    return value


def _model_takes(model: str, models: tuple[str, ...]) -> bool:
    return any(re.fullmatch(re.escape(m) + r"(-\d{4}-\d{2}-\d{2})?", model) for m in models)


def check_transcription(value: Any, provider: str | None = None) -> None:
    """Raise :class:`TranscriptionError` for a transcription object that is malformed, or that
    ``provider`` (and, for OpenAI's, the model it names) is not documented to take. ``None``
    (transcription off) passes; a field not named here passes as given."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise TranscriptionError(f"transcription must be an object (a dict) or a model name, "
                                 f"got {type(value).__name__}", "", "invalid_type")
    for name in ("model", "language", "prompt"):
        if name in value and not isinstance(value[name], str):
            raise TranscriptionError(f"transcription {name} must be a string, got "
                                     f"{value[name]!r}", name, "invalid_type")
    if "keywords" in value:
        for keyword in _strings(value["keywords"], "keywords"):
            if _KEYWORD_REFUSES.search(keyword):
                raise TranscriptionError(
                    f"a transcription keyword is one line without '<', '>', carriage returns "
                    f"or line feeds; not {keyword!r}", "keywords")
    if "languages" in value:
        for code in _strings(value["languages"], "languages"):
            if not _ISO_639_1.fullmatch(code):
                raise TranscriptionError(
                    f"transcription languages are ISO-639-1 codes (two lowercase letters, "
                    f"such as 'en' or 'fr'); not {code!r}", "languages")
        if "language" in value:
            raise TranscriptionError("give transcription language or languages, not both "
                                     "(languages is the newer models' list)", "languages")
    if "delay" in value:
        if not isinstance(value["delay"], str):
            raise TranscriptionError(f"transcription delay must be a string, got "
                                     f"{value['delay']!r}", "delay", "invalid_type")
        if value["delay"] not in DELAYS:
            raise TranscriptionError(f"transcription delay must be one of {', '.join(DELAYS)}; "
                                     f"not {value['delay']!r}", "delay")
    given = [name for name in EXTRAS if name in value]
    if not given:
        return
    if provider == "inworld":
        raise TranscriptionError(
            f"Inworld's Realtime API documents no transcription {given[0]!r} (its transcription "
            "takes model and prompt; language hints go in provider_data={'stt': ...}); leave "
            f"{given[0]} out for Inworld (provider 'inworld')", given[0])
    model = value.get("model")
    if provider not in MODEL_RULES or not isinstance(model, str):
        return  # a server of unknown models, or no model named: its own check
    for name in given:
        models = DELAY_MODELS if name == "delay" else HINT_MODELS
        if not _model_takes(model, models):
            raise TranscriptionError(f"transcription {name} is documented for "
                                     f"{' and '.join(models)} only, not {model!r}", name)


def check_transcription_for(provider: str, session: Mapping[str, Any]) -> None:
    """:func:`check_transcription` on a session object's ``audio.input.transcription``."""
    audio = session.get("audio")
    audio_in = audio.get("input") if isinstance(audio, Mapping) else None
    if isinstance(audio_in, Mapping) and "transcription" in audio_in:
        check_transcription(audio_in["transcription"], provider)
