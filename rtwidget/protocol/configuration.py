"""The session configuration: the ``session`` object of a ``session.update`` built from
keywords and checked before anything is sent, merged with a partial one, and checked against
what a provider is documented to refuse (pure: dicts in, dicts out).

>>> session_config(voice="Dennis", turn_detection=None)["audio"]
{'input': {'turn_detection': None}, 'output': {'voice': 'Dennis'}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from .audio import SAMPLE_RATE
from .errors import ConfigError
from .ga_session import ReasoningEffort, check_ga_fields_for, ga_fields
from .mcp_events import check_tools_for
from .transcription import check_transcription, check_transcription_for


class _NotGiven:
    """Marks a keyword the caller did not pass (``None`` is a real value: it disables VAD)."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()
"""Default of optional keywords: the field is left out of the event."""

Modality = Literal["text", "audio"]


def audio_format(fmt: Any = "pcm16", rate: int = SAMPLE_RATE) -> dict[str, Any]:
    """An audio format object. ``fmt`` may be a dict (used as is), ``"pcm16"``/``"audio/pcm"``,
    ``"g711_ulaw"``/``"audio/pcmu"`` or ``"g711_alaw"``/``"audio/pcma"``."""
    if isinstance(fmt, Mapping):
        return dict(fmt)
    names = {
        "pcm16": "audio/pcm",
        "audio/pcm": "audio/pcm",
        "g711_ulaw": "audio/pcmu",
        "audio/pcmu": "audio/pcmu",
        "g711_alaw": "audio/pcma",
        "audio/pcma": "audio/pcma",
    }
    if fmt not in names:
        raise ConfigError(f"unknown audio format {fmt!r}; expected one of {sorted(names)}")
    out: dict[str, Any] = {"type": names[fmt]}
    if out["type"] == "audio/pcm":
        out["rate"] = rate
    return out


def turn_detection(
    kind: Literal["server_vad", "semantic_vad"] = "server_vad",
    *,
    threshold: float | None = None,
    prefix_padding_ms: int | None = None,
    silence_duration_ms: int | None = None,
    eagerness: Literal["low", "medium", "high", "auto"] | None = None,
    create_response: bool | None = None,
    interrupt_response: bool | None = None,
    idle_timeout_ms: int | None = None,
) -> dict[str, Any]:
    """A ``turn_detection`` object; keywords left at ``None`` are left to the server."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"turn_detection threshold must be in [0, 1], got {threshold}")
    fields = {
        "type": kind,
        "threshold": threshold,
        "prefix_padding_ms": prefix_padding_ms,
        "silence_duration_ms": silence_duration_ms,
        "eagerness": eagerness,
        "create_response": create_response,
        "interrupt_response": interrupt_response,
        "idle_timeout_ms": idle_timeout_ms,
    }
    return {k: v for k, v in fields.items() if v is not None}


def tool_choice_value(choice: Any) -> Any:
    """Normalise ``tool_choice``: ``"auto"``, ``"none"``, ``"required"``, a function name, or an
    object ``{"type": "function", "name": ...}``."""
    if isinstance(choice, Mapping):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise ConfigError(f"tool_choice object must be {{type: function, name}}, got {choice}")
        return dict(choice)
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, str) and choice:
        return {"type": "function", "name": choice}
    raise ConfigError(f"tool_choice must be auto, none, required or a tool name, got {choice!r}")


def max_tokens_value(value: Any) -> Any:
    """``max_output_tokens`` checked: a positive int or ``"inf"``."""
    if value == "inf":
        return "inf"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"max_output_tokens must be a positive int or 'inf', got {value!r}")
    return value


def modalities_value(value: Any) -> list[str]:
    """``output_modalities`` as a list: ``"text"`` and/or ``"audio"``, at least one."""
    items = [value] if isinstance(value, str) else list(value)
    bad = [m for m in items if m not in ("text", "audio")]
    if not items or bad:
        raise ConfigError(f"output_modalities must be 'text' and/or 'audio', got {value!r}")
    return items


def session_config(
    *,
    model: str = NOT_GIVEN,
    instructions: str = NOT_GIVEN,
    output_modalities: Sequence[Modality] | Modality = NOT_GIVEN,
    temperature: float = NOT_GIVEN,
    max_output_tokens: int | Literal["inf"] = NOT_GIVEN,
    tools: Sequence[Mapping[str, Any]] = NOT_GIVEN,
    tool_choice: Any = NOT_GIVEN,
    voice: str = NOT_GIVEN,
    tts_model: str = NOT_GIVEN,
    speed: float = NOT_GIVEN,
    input_format: Any = NOT_GIVEN,
    output_format: Any = NOT_GIVEN,
    turn_detection: Mapping[str, Any] | str | None = NOT_GIVEN,
    transcription: Mapping[str, Any] | str | None = NOT_GIVEN,
    noise_reduction: Mapping[str, Any] | str | None = NOT_GIVEN,
    provider_data: InworldProviderData | Mapping[str, Any] = NOT_GIVEN,
    prompt: str | Mapping[str, Any] = NOT_GIVEN,
    truncation: str | float | Mapping[str, Any] = NOT_GIVEN,
    post_instructions: int = NOT_GIVEN,
    reasoning: ReasoningEffort | Mapping[str, Any] = NOT_GIVEN,
    parallel_tool_calls: bool = NOT_GIVEN,
    tracing: str | Mapping[str, Any] | None = NOT_GIVEN,
    include: Sequence[str] | str = NOT_GIVEN,
    extra: Mapping[str, Any] = NOT_GIVEN,
) -> dict[str, Any]:
    """The ``session`` object of a ``session.update``, holding only the fields given.

    ``model`` is a provider model id (``"openai/gpt-4.1-nano"``) or an Inworld router
    (``"inworld/<router-id>"``); ``tts_model`` and ``voice`` go to ``audio.output``;
    ``turn_detection`` is ``"server_vad"``, ``"semantic_vad"``, a full object, or ``None`` to turn
    server VAD off. ``provider_data`` is Inworld's ``providerData`` (see
    :class:`InworldProviderData`). ``extra`` is merged in last, untouched, for anything else
    provider-specific.

    OpenAI's GA fields (see :mod:`rtwidget.protocol.ga_session`; refused for Inworld, which
    documents none of them): ``prompt`` (a stored prompt's id, or ``{id, version,
    variables}``), ``truncation`` (``"auto"``, ``"disabled"`` or a retention ratio from 0 to 1,
    with ``post_instructions`` tokens at most), ``reasoning`` (the effort: ``"minimal"`` to
    ``"xhigh"``), ``parallel_tool_calls``, ``tracing`` (``"auto"``, ``None`` or
    ``{workflow_name, group_id, metadata}``) and ``include``
    (``["item.input_audio_transcription.logprobs"]``).

    ``transcription`` is a model name or ``{model, language, prompt, keywords, languages,
    delay}``: ``keywords`` (one-line terms) and ``languages`` (ISO-639-1 codes) for
    ``gpt-transcribe`` and ``gpt-live-transcribe``, ``delay`` (``"minimal"`` to ``"xhigh"``) for
    ``gpt-realtime-whisper`` and ``gpt-live-transcribe`` (see
    :mod:`rtwidget.protocol.transcription`).
    """
    session: dict[str, Any] = {"type": "realtime"}
    if model is not NOT_GIVEN:
        if not isinstance(model, str) or not model:
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        session["model"] = model
    if instructions is not NOT_GIVEN:
        session["instructions"] = str(instructions)
    if output_modalities is not NOT_GIVEN:
        session["output_modalities"] = modalities_value(output_modalities)
    if temperature is not NOT_GIVEN:
        session["temperature"] = float(temperature)
    if max_output_tokens is not NOT_GIVEN:
        session["max_output_tokens"] = max_tokens_value(max_output_tokens)
    if tools is not NOT_GIVEN:
        session["tools"] = [dict(t) for t in tools]
    if tool_choice is not NOT_GIVEN:
        session["tool_choice"] = tool_choice_value(tool_choice)

    audio_in: dict[str, Any] = {}
    if input_format is not NOT_GIVEN:
        audio_in["format"] = audio_format(input_format)
    if turn_detection is not NOT_GIVEN:
        if isinstance(turn_detection, str):
            audio_in["turn_detection"] = {"type": turn_detection}
        else:
            audio_in["turn_detection"] = None if turn_detection is None else dict(turn_detection)
    if transcription is not NOT_GIVEN:
        if isinstance(transcription, str):
            audio_in["transcription"] = {"model": transcription}
        else:
            check_transcription(transcription)
            audio_in["transcription"] = (
                None if transcription is None else json.loads(json.dumps(dict(transcription))))
    if noise_reduction is not NOT_GIVEN:
        if isinstance(noise_reduction, str):
            audio_in["noise_reduction"] = {"type": noise_reduction}
        else:
            audio_in["noise_reduction"] = (
                None if noise_reduction is None else dict(noise_reduction)
            )

    audio_out: dict[str, Any] = {}
    if output_format is not NOT_GIVEN:
        audio_out["format"] = audio_format(output_format)
    if voice is not NOT_GIVEN:
        audio_out["voice"] = str(voice)
    if tts_model is not NOT_GIVEN:
        audio_out["model"] = str(tts_model)
    if speed is not NOT_GIVEN:
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or speed <= 0:
            raise ConfigError(f"speed must be a positive number, got {speed!r}")
        audio_out["speed"] = float(speed)

    audio: dict[str, Any] = {}
    if audio_in:
        audio["input"] = audio_in
    if audio_out:
        audio["output"] = audio_out
    if audio:
        session["audio"] = audio
    session.update(ga_fields(prompt, truncation, post_instructions, reasoning,
                             parallel_tool_calls, tracing, include, NOT_GIVEN))
    if provider_data is not NOT_GIVEN:
        session["providerData"] = _provider_data(provider_data)
    if extra is not NOT_GIVEN:
        session = merge_session(session, extra)
    return session


class Backchannel(TypedDict, total=False):
    """Inworld's ``providerData.backchannel``: short interjections ("uh-huh") while the user
    speaks. Sent as ``response.backchannel.audio.delta``/``.done``; the widget plays them."""

    enabled: bool
    small_model: str
    eval_interval_ms: int
    min_speech_ms: int
    min_gap_ms: int
    max_per_turn: int
    hard_deadline_ms: int
    history_tail_items: int
    temperature: float
    max_tokens: int
    volume_gain: float
    require_pause: bool
    decider_kind: str


class InworldProviderData(TypedDict, total=False):
    """Inworld's ``providerData`` session field (docs.inworld.ai, realtime/provider-data): five
    independent branches, each sent only when given, merged by the server into its state.

    ``stt`` (voice profile, language hints, end-of-turn and VAD overrides), ``tts``
    (segmentation, language, delivery preset, alignment), ``memory`` (summaries and facts in
    long sessions), ``backchannel`` (see :class:`Backchannel`) and ``responsiveness`` (filler
    audio while the model is slow). The branches' fields are Inworld's, passed as given.
    """

    stt: dict[str, Any]
    tts: dict[str, Any]
    memory: dict[str, Any]
    backchannel: Backchannel
    responsiveness: dict[str, Any]


PROVIDER_DATA_BRANCHES = ("stt", "tts", "memory", "backchannel", "responsiveness")


def _provider_data(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"provider_data must be a dict of Inworld's providerData branches, got "
                         f"{type(value).__name__}")
    unknown = [k for k in value if k not in PROVIDER_DATA_BRANCHES]
    if unknown:
        raise ConfigError(f"provider_data has no branch {unknown[0]!r}; Inworld's branches are "
                         f"{', '.join(PROVIDER_DATA_BRANCHES)} (other fields go in extra=)")
    bad = [k for k, v in value.items() if not isinstance(v, Mapping)]
    if bad:
        raise ConfigError(f"provider_data[{bad[0]!r}] must be an object (a dict)")
    return json.loads(json.dumps(dict(value)))


_OPENAI_GA_REFUSES = {
    "temperature": "OpenAI's GA Realtime API has no session temperature and rejects the whole "
                   "session.update that sets one; leave temperature out",
    "providerData": "providerData is Inworld's; OpenAI's GA Realtime API rejects it",
}


def check_session_for(provider: str, session: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` (before anything is sent) for a session field ``provider``
    is documented to reject. OpenAI and Azure speak the GA protocol: no ``temperature``, no
    ``audio.output.model`` (``tts_model``), no ``providerData``, and output is audio *or* text.
    Inworld takes none of OpenAI's GA fields (``prompt``, ``truncation``, ``reasoning``,
    ``parallel_tool_calls``, ``tracing``, ``include``), nor the transcription settings
    ``keywords``, ``languages`` and ``delay``, which OpenAI documents for some transcription
    models only (see :mod:`rtwidget.protocol.transcription`; the local server checks them as
    OpenAI does). Other URLs get what was given."""
    check_ga_fields_for(provider, session)
    check_transcription_for(provider, session)
    check_tools_for(provider, session.get("tools") or [])
    if provider not in ("openai", "azure"):
        return
    for key, reason in _OPENAI_GA_REFUSES.items():
        if key in session:
            raise ConfigError(f"{reason} (provider {provider!r})")
    audio = session.get("audio")
    output = audio.get("output") if isinstance(audio, Mapping) else None
    if isinstance(output, Mapping) and "model" in output:
        raise ConfigError(f"tts_model is Inworld's; OpenAI's GA Realtime API has no "
                         f"audio.output.model (choose the voice with voice=) (provider "
                         f"{provider!r})")
    modalities = session.get("output_modalities")
    if isinstance(modalities, Sequence) and len(modalities) != 1:
        raise ConfigError(f"OpenAI's GA Realtime API answers in audio or in text, not both: use "
                         f"output_modalities=['audio'] (it comes with a transcript) or ['text'], "
                         f"not {list(modalities)} (provider {provider!r})")


def merge_session(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a partial session object to a full one: objects merge key by key, anything else
    (lists, scalars, ``None``) replaces."""
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = merge_session(old, value)
        else:
            out[key] = value
    return out

