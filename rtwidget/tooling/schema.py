"""A Python function made a :class:`Tool`: its name checked against what the wire accepts, the
JSON Schema of its parameters from the signature (through pydantic) with their descriptions from
the docstring (Google, NumPy or reST style), and its arguments validated against that schema."""

from __future__ import annotations

import contextlib
import copy
import inspect
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ..protocol.errors import ToolError
from .call_context import CallContext

DEFAULT_TIMEOUT = 30.0
DELIVERY = ("when_idle", "interrupt", "silent")
"""How a background tool's result reaches the model: once the agent is idle (a new response
then), at once (cutting a reply in progress), or silently (added to the context only)."""
SESSION = "session"
"""``filler_after`` of a tool that takes the session's."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What OpenAI, Inworld and the local server accept as a function's name."""


def check_tool_name(name: Any) -> str:
    """``name`` if the wire accepts it as a function's name; else :class:`ToolError` saying
    why and suggesting one that works (nothing is renamed behind the caller's back: the model
    and the DataFrame show the name the function was given)."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return name
    if not isinstance(name, str) or not name:
        raise ToolError(f"a tool needs a name of 1 to 64 letters, digits, '_' or '-'; "
                        f"got {name!r:.80}")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    suggestion = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_name).strip("_")[:64] or "tool"
    raise ToolError(f"tool name {name[:80]!r} cannot be sent: OpenAI, Inworld and the local "
                    f"server accept only 1 to 64 ASCII letters, digits, '_' or '-' (the name "
                    f"has {len(name)} characters); give it one with name=, e.g. "
                    f"name={suggestion!r}")


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with its JSON Schema and how to run it."""

    name: str
    description: str
    fn: Callable[..., Any]
    parameters: dict[str, Any]
    timeout: float = DEFAULT_TIMEOUT
    strict: bool = False
    background: bool = False
    deliver: str = "when_idle"
    cancel_on_interruption: bool = True
    filler_after: float | str | None = SESSION
    context_param: str | None = None
    _model: type[BaseModel] | None = field(default=None, repr=False, compare=False)
    _positional: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def is_async(self) -> bool:
        """Whether calling the function returns a coroutine or an async generator (it then
        runs on the session's loop; plain functions run in a worker thread)."""
        return inspect.iscoroutinefunction(self.fn) or inspect.isasyncgenfunction(self.fn)

    def definition(self) -> dict[str, Any]:
        """The entry for the session's ``tools`` list."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": copy.deepcopy(self.parameters)}

    def parse(self, arguments: str | dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Validate the model's arguments (a JSON string or a dict) against the signature.

        Raises :class:`ToolError` naming every field that is wrong.
        """
        if self._model is None:
            raise ToolError(f"tool {self.name!r} has no argument model")
        try:
            if isinstance(arguments, str):
                validated = self._model.model_validate_json(arguments or "{}")
            else:
                validated = self._model.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {_describe(exc)}") from None
        values = {name: getattr(validated, name) for name in type(validated).model_fields}
        args = [values.pop(name) for name in self._positional]
        return args, values


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "json_invalid":
            parts.append(f"not valid JSON ({err['msg']})")
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _clean_schema(node: Any, in_properties: bool = False) -> Any:
    """Drop pydantic's generated titles (noise for the model) but keep everything else."""
    if isinstance(node, dict):
        return {k: _clean_schema(v, k == "properties") for k, v in node.items()
                if not (k == "title" and isinstance(v, str) and not in_properties)}
    if isinstance(node, list):
        return [_clean_schema(v) for v in node]
    return node


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``$ref`` to ``$defs`` by the definitions themselves, so that servers and small
    models that do not follow references see the whole shape. Recursive types keep ``$defs``."""
    defs = schema.get("$defs")
    if not defs:
        return schema

    def resolve(node: Any, trail: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in trail:
                    raise RecursionError(name)
                extra = {k: v for k, v in node.items() if k != "$ref"}
                return {**resolve(defs[name], (*trail, name)), **extra}
            return {k: resolve(v, trail) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v, trail) for v in node]
        return node

    try:
        out: dict[str, Any] = resolve(schema, ())
        return out
    except RecursionError:
        return schema


def _hints(fn: Callable[..., Any], tool_name: str) -> dict[str, Any]:
    """Resolved annotations; one that cannot be resolved is reported with its parameter."""
    try:
        return get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    namespace = dict(getattr(fn, "__globals__", {}))
    with contextlib.suppress(TypeError, ValueError):
        namespace.update(inspect.getclosurevars(fn).nonlocals)
    hints: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        annotation = param.annotation
        if annotation is param.empty:
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # the function's own annotation text
            except Exception as exc:
                raise ToolError(f"tool {tool_name}: parameter '{pname}' has annotation "
                                f"{param.annotation!r}, which cannot be resolved ({exc})") from None
        hints[pname] = annotation
    return hints


def build_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    strict: bool = False,
    background: bool = False,
    deliver: str = "when_idle",
    cancel_on_interruption: bool = True,
    filler_after: float | str | None = SESSION,
) -> Tool:
    """Make a :class:`Tool` from a function; raises :class:`ToolError` for a signature that cannot
    be expressed as JSON Schema, naming the parameter.

    ``background``: the model gets a "started" result at once and the talk goes on; the real
    result is delivered when ready, ``deliver`` saying how (see :data:`DELIVERY`).
    ``cancel_on_interruption``: a barge-in or a typed turn cancels the call while it runs.
    ``filler_after``: seconds after the user's turn ended before a wait on this tool gets a
    spoken filler (``None``: never; ``"session"``: the session's setting). A parameter
    annotated :class:`~rtwidget.CallContext` gets the call's context, not a model's value."""
    if not callable(fn):
        raise ToolError(f"a tool must be a function, got {type(fn).__name__}")
    tool_name = check_tool_name(name or getattr(fn, "__name__", ""))
    if timeout <= 0:
        raise ToolError(f"tool {tool_name}: timeout must be positive, got {timeout}")
    if deliver not in DELIVERY:
        raise ToolError(f"tool {tool_name}: deliver must be one of {DELIVERY}, got {deliver!r}")
    if not (filler_after is None or filler_after == SESSION or (
            isinstance(filler_after, (int, float)) and filler_after >= 0)):
        raise ToolError(f"tool {tool_name}: filler_after must be seconds (>= 0), None or "
                        f"'session', got {filler_after!r}")
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    param_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}
    summary = "\n\n".join(s for s in (doc.short_description, doc.long_description) if s)
    hints = _hints(fn, tool_name)
    fields: dict[str, Any] = {}
    positional: list[str] = []
    context_param: str | None = None
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(f"tool {tool_name}: parameter '{pname}' is *args/**kwargs; tools "
                            "need named parameters the model can fill in")
        annotation = hints.get(pname, Any)
        if annotation is CallContext:
            if param.kind == param.POSITIONAL_ONLY:
                raise ToolError(f"tool {tool_name}: the CallContext parameter '{pname}' must "
                                "be passable by name")
            context_param = pname
            continue
        try:
            TypeAdapter(annotation).json_schema()
        except Exception as exc:
            raise ToolError(
                f"tool {tool_name}: parameter '{pname}' has type {annotation!r}, which cannot be "
                f"expressed as JSON Schema ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        info = Field(
            default=... if param.default is param.empty else param.default,
            description=param_docs.get(pname) or None,
        )
        fields[pname] = (annotation, info)
        if param.kind == param.POSITIONAL_ONLY:
            positional.append(pname)
    config = ConfigDict(extra="forbid" if strict else "ignore", arbitrary_types_allowed=False)
    try:
        model = create_model(f"{tool_name}_arguments", __config__=config, **fields)
        schema = model.model_json_schema()
    except Exception as exc:
        raise ToolError(f"tool {tool_name}: cannot build its argument schema: {exc}") from None
    schema = _inline_refs(_clean_schema(schema))
    schema.setdefault("properties", {})
    schema["type"] = "object"
    if strict:
        schema["additionalProperties"] = False
    return Tool(
        name=tool_name,
        description=(description if description is not None else summary).strip(),
        fn=fn,
        parameters=schema,
        timeout=float(timeout),
        strict=strict,
        background=background,
        deliver=deliver,
        cancel_on_interruption=cancel_on_interruption,
        filler_after=float(filler_after) if isinstance(filler_after, (int, float))
        else filler_after,
        context_param=context_param,
        _model=model,
        _positional=tuple(positional),
    )
