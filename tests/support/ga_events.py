"""Server events checked strictly against the ``openai`` package's GA models
(``openai.types.realtime``): each event must validate, carry no field the models do not
declare, and send ``null`` only where a field is required (and nullable); a field the models
leave out (optional, default ``None``) must be left out, not sent as ``null``."""

from __future__ import annotations

from typing import Any

from openai.types.realtime import RealtimeServerEvent, RealtimeSessionCreateResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
# fields whose null means something: previous_item_id (the item stands at the start of the
# conversation; clients, the Agents SDK among them, tell that apart from "not said"),
# turn_detection (off, as the GA reference documents) and an input_audio part's transcript (not
# transcribed yet: the Agents SDK's schema requires the field, null or a string)
NULL_MEANS = frozenset({"previous_item_id", "turn_detection", "transcript"})
# the session object as the hosted API sends it also has the response model's fields
_ALSO = {"RealtimeSessionCreateRequest": frozenset(RealtimeSessionCreateResponse.model_fields)}


def _walk(model: Any, raw: Any, path: str, out: list[str]) -> None:
    if isinstance(model, BaseModel) and isinstance(raw, dict):
        for key in model.model_extra or {}:
            if key not in _ALSO.get(type(model).__name__, ()):
                out.append(f"{path}.{key}: not a field of {type(model).__name__}")
        for name, info in type(model).model_fields.items():
            key = info.alias or name
            if key not in raw:
                continue
            if raw[key] is None and not info.is_required() and key not in NULL_MEANS:
                out.append(f"{path}.{key}: null where {type(model).__name__} leaves it out")
            _walk(getattr(model, name), raw[key], f"{path}.{key}", out)
    elif isinstance(model, list) and isinstance(raw, list):
        for i, (m, r) in enumerate(zip(model, raw, strict=True)):
            _walk(m, r, f"{path}[{i}]", out)
    elif isinstance(model, dict) and isinstance(raw, dict):
        for key, value in model.items():
            _walk(value, raw.get(key), f"{path}.{key}", out)


def ga_problems(event: dict[str, Any]) -> list[str]:
    """What in ``event`` the GA types do not allow (empty if nothing)."""
    kind = event.get("type", "?")
    try:
        model = _EVENTS.validate_python(event, strict=True)
    except ValidationError as exc:
        return [f"{kind}: {err['loc']}: {err['msg']}" for err in exc.errors()
                if err["loc"] and err["loc"][0] == _member(kind)] or [f"{kind}: {exc}"]
    out: list[str] = []
    _walk(model, event, kind, out)
    return out


def _member(kind: str) -> str:
    """The union member pydantic names in its errors for this event type."""
    for member in RealtimeServerEvent.__origin__.__args__:  # type: ignore[attr-defined]
        field = member.model_fields["type"]
        if kind in getattr(field.annotation, "__args__", ()):
            return str(member.__name__)
    return kind
