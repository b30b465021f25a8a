"""The OpenAI GA session fields beyond the basic ones, as typed keyword values checked before
anything is sent (pure): ``prompt`` (a stored prompt), ``truncation``, ``reasoning``,
``parallel_tool_calls``, ``tracing`` and ``include``, and which provider takes which.

Their shapes are those of OpenAI's GA reference (the ``openai`` package's
``RealtimeSessionCreateRequest``). Inworld's Realtime API documents none of them (its session
takes ``model``, ``instructions``, ``output_modalities``, ``audio``, ``max_output_tokens``,
``tools``, ``tool_choice``, ``temperature`` and ``providerData``), so they are refused for
Inworld before anything is sent rather than dropped or rejected mid-session.

>>> truncation_value(0.8, post_instructions=5000)
{'type': 'retention_ratio', 'retention_ratio': 0.8, 'token_limits': {'post_instructions': 5000}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .errors import ConfigError

ReasoningEffort = Literal["minimal", "low", "medium", "high", "xhigh"]
REASONING_EFFORTS: tuple[str, ...] = ("minimal", "low", "medium", "high", "xhigh")
INCLUDABLE: tuple[str, ...] = ("item.input_audio_transcription.logprobs",)
GA_FIELDS: tuple[str, ...] = ("prompt", "truncation", "reasoning", "parallel_tool_calls",
                              "tracing", "include")


def prompt_value(prompt: str | Mapping[str, Any]) -> dict[str, Any]:
    """A stored prompt: its id (``"pmpt_..."``), or ``{id, version?, variables?}``; the
    variables' values are strings or input content objects."""
    if isinstance(prompt, str):
        prompt = {"id": prompt}
    if not isinstance(prompt, Mapping):
        raise ConfigError(f"prompt must be a prompt id or {{id, version, variables}}, got "
                          f"{type(prompt).__name__}")
    unknown = [k for k in prompt if k not in ("id", "version", "variables")]
    if unknown:
        raise ConfigError(f"prompt has no field {unknown[0]!r}; it takes id, version and "
                          "variables")
    if not isinstance(prompt.get("id"), str) or not prompt["id"]:
        raise ConfigError("prompt needs an id (the stored prompt's, 'pmpt_...')")
    out: dict[str, Any] = {"id": prompt["id"]}
    if prompt.get("version") is not None:
        if not isinstance(prompt["version"], str):
            raise ConfigError(f"prompt version must be a string, got {prompt['version']!r}")
        out["version"] = prompt["version"]
    if prompt.get("variables") is not None:
        variables = prompt["variables"]
        if not isinstance(variables, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (str, Mapping))
                for k, v in variables.items()):
            raise ConfigError("prompt variables must map names to strings (or input content "
                              "objects)")
        out["variables"] = json.loads(json.dumps(dict(variables)))
    return out


def truncation_value(truncation: str | float | Mapping[str, Any],
                     post_instructions: int | None = None) -> str | dict[str, Any]:
    """``"auto"``, ``"disabled"``, a retention ratio (a number from 0 to 1, with
    ``post_instructions``: the most tokens kept after the instructions), or the GA object
    ``{type: "retention_ratio", retention_ratio, token_limits?: {post_instructions}}``."""
    if isinstance(truncation, str):
        if truncation not in ("auto", "disabled"):
            raise ConfigError(f"truncation must be 'auto', 'disabled' or a retention ratio, got "
                              f"{truncation!r}")
        if post_instructions is not None:
            raise ConfigError("post_instructions goes with a retention ratio")
        return truncation
    if isinstance(truncation, Mapping):
        if truncation.get("type") != "retention_ratio":
            raise ConfigError("a truncation object has type 'retention_ratio'")
        limits = truncation.get("token_limits") or {}
        if not isinstance(limits, Mapping) or any(k != "post_instructions" for k in limits):
            raise ConfigError("truncation token_limits takes post_instructions only")
        unknown = [k for k in truncation if k not in ("type", "retention_ratio", "token_limits")]
        if unknown:
            raise ConfigError(f"truncation has no field {unknown[0]!r}")
        return truncation_value(truncation.get("retention_ratio"),  # type: ignore[arg-type]
                                limits.get("post_instructions", post_instructions))
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) \
            or not 0.0 <= truncation <= 1.0:
        raise ConfigError(f"a retention ratio is a number from 0 to 1, got {truncation!r}")
    out: dict[str, Any] = {"type": "retention_ratio", "retention_ratio": float(truncation)}
    if post_instructions is not None:
        if isinstance(post_instructions, bool) or not isinstance(post_instructions, int) \
                or post_instructions < 1:
            raise ConfigError(f"post_instructions is a positive number of tokens, got "
                              f"{post_instructions!r}")
        out["token_limits"] = {"post_instructions": post_instructions}
    return out


def reasoning_value(reasoning: str | Mapping[str, Any]) -> dict[str, Any]:
    """``{effort}``: one of :data:`REASONING_EFFORTS` (or the effort alone)."""
    effort = reasoning if isinstance(reasoning, str) else (
        reasoning.get("effort") if isinstance(reasoning, Mapping) else None)
    if isinstance(reasoning, Mapping) and any(k != "effort" for k in reasoning):
        raise ConfigError("reasoning takes effort only")
    if effort not in REASONING_EFFORTS:
        raise ConfigError(f"reasoning effort must be one of {', '.join(REASONING_EFFORTS)}, got "
                          f"{effort!r}")
    return {"effort": effort}


def tracing_value(tracing: str | Mapping[str, Any] | None) -> str | dict[str, Any] | None:
    """``"auto"``, ``None`` (off), or ``{workflow_name?, group_id?, metadata?}``."""
    if tracing is None or tracing == "auto":
        return tracing
    if not isinstance(tracing, Mapping):
        raise ConfigError(f"tracing must be 'auto', None or {{workflow_name, group_id, "
                          f"metadata}}, got {tracing!r}")
    unknown = [k for k in tracing if k not in ("workflow_name", "group_id", "metadata")]
    if unknown:
        raise ConfigError(f"tracing has no field {unknown[0]!r}; it takes workflow_name, "
                          "group_id and metadata")
    for key in ("workflow_name", "group_id"):
        if key in tracing and not isinstance(tracing[key], str):
            raise ConfigError(f"tracing {key} must be a string")
    if "metadata" in tracing and not isinstance(tracing["metadata"], Mapping):
        raise ConfigError("tracing metadata must be an object (a dict)")
    return json.loads(json.dumps(dict(tracing)))


def include_value(include: Sequence[str] | str) -> list[str]:
    """What the server adds to its events: :data:`INCLUDABLE` entries."""
    entries = [include] if isinstance(include, str) else list(include)
    bad = [e for e in entries if e not in INCLUDABLE]
    if bad:
        raise ConfigError(f"include takes {', '.join(INCLUDABLE)}; not {bad[0]!r}")
    return entries


def parallel_tool_calls_value(value: bool) -> bool:
    """Whether the model may call several tools at once."""
    if not isinstance(value, bool):
        raise ConfigError(f"parallel_tool_calls must be True or False, got {value!r}")
    return value


def ga_fields(prompt: Any, truncation: Any, post_instructions: Any, reasoning: Any,
              parallel_tool_calls: Any, tracing: Any, include: Any,
              given: Any) -> dict[str, Any]:
    """The session fields of the keywords that are not ``given`` (the sentinel of keywords
    left out)."""
    out: dict[str, Any] = {}
    if prompt is not given:
        out["prompt"] = prompt_value(prompt)
    if truncation is not given:
        out["truncation"] = truncation_value(
            truncation, None if post_instructions is given else post_instructions)
    elif post_instructions is not given:
        raise ConfigError("post_instructions goes with a retention ratio: truncation=0.8, "
                          "post_instructions=...")
    if reasoning is not given:
        out["reasoning"] = reasoning_value(reasoning)
    if parallel_tool_calls is not given:
        out["parallel_tool_calls"] = parallel_tool_calls_value(parallel_tool_calls)
    if tracing is not given:
        out["tracing"] = tracing_value(tracing)
    if include is not given:
        out["include"] = include_value(include)
    return out


def check_ga_fields_for(provider: str, session: Mapping[str, Any]) -> None:
    """Refuse (before anything is sent) the GA fields a provider does not document: all of
    them for Inworld."""
    if provider != "inworld":
        return
    given = [k for k in GA_FIELDS if k in session]
    if given:
        raise ConfigError(f"Inworld's Realtime API documents no session {given[0]!r} (its "
                          "session takes model, instructions, output_modalities, audio, "
                          "max_output_tokens, tools, tool_choice, temperature and providerData); "
                          f"leave {given[0]} out for Inworld (provider 'inworld')")
