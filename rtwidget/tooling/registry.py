"""Notebook functions as tools the model can call: registries by name (``@rt.tool`` fills the
default one) and the set of tools one session offers.

>>> import rtwidget as rt
>>> @rt.tool
... def get_horoscope(sign: str) -> str:
...     '''Today's horoscope for an astrological sign.
...
...     Args:
...         sign: The sign, e.g. Aquarius.
...     '''
...     return f"{sign}: next Tuesday you will befriend a baby otter."

The JSON Schema comes from the signature and the docstring (:mod:`rtwidget.tooling.schema`).
The function stays a plain function; defining it again in a later cell replaces the tool, and
live sessions send the new definition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

import pandas as pd

from ..protocol.errors import ConfigError, NotFound, ToolError
from ..protocol.mcp_events import check_mcp_tool
from .schema import DEFAULT_TIMEOUT, SESSION, Tool, build_tool, check_tool_name

F = TypeVar("F", bound=Callable[..., Any])

Listener = Callable[["ToolRegistry"], None]


class ToolRegistry:
    """A set of tools by name. :data:`rtwidget.tools` is the default one that ``@rt.tool`` fills.

    Registering a tool under a name that exists replaces it (redefining a function in a later
    cell does this); sessions using the registry are told and send the new ``tools``.
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    @overload
    def register(self, fn: F, /) -> F: ...

    @overload
    def register(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        strict: bool = False,
        background: bool = False,
        deliver: str = "when_idle",
        cancel_on_interruption: bool = True,
        filler_after: float | str | None = SESSION,
    ) -> Callable[[F], F]: ...

    def register(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        strict: bool = False,
        background: bool = False,
        deliver: str = "when_idle",
        cancel_on_interruption: bool = True,
        filler_after: float | str | None = SESSION,
    ) -> Any:
        """Register ``fn`` as a tool and return it unchanged. Works bare (``@registry.register``)
        and with options (``@registry.register(timeout=5, background=True)``; see
        :func:`~rtwidget.build_tool` for what each does)."""

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add(build_tool(f, name=name, description=description, timeout=timeout,
                                strict=strict, background=background, deliver=deliver,
                                cancel_on_interruption=cancel_on_interruption,
                                filler_after=filler_after))
            return f

        return add if fn is None else add(fn)

    tool = register

    def add(self, tool: Tool) -> Tool:
        """Add (or replace) a ready-made :class:`Tool`."""
        with self._lock:
            self._tools[tool.name] = tool
        self._changed()
        return tool

    def unregister(self, tool: str | Callable[..., Any]) -> None:
        """Remove a tool by name or by function; a name that is not there raises
        :class:`NotFound` (a ``KeyError``)."""
        with self._lock:
            if isinstance(tool, str):
                names = [tool] if tool in self._tools else []
            else:
                names = [n for n, t in self._tools.items() if t.fn is tool]
            if not names:
                raise NotFound(f"no tool {getattr(tool, '__name__', tool)!r} in this registry")
            for n in names:
                del self._tools[n]
        self._changed()

    def get(self, name: str) -> Tool | None:
        """The tool with this name, or ``None``."""
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        """Tool names, in registration order."""
        return list(self._tools)

    def definitions(self) -> list[dict[str, Any]]:
        """The ``tools`` list for ``session.update``."""
        return [t.definition() for t in self]

    def frame(self) -> pd.DataFrame:
        """The tools as a DataFrame: name, description, parameters, timeout, async,
        background."""
        return pd.DataFrame(
            [{"name": t.name, "description": t.description,
              "parameters": ", ".join(t.parameters.get("properties", {})),
              "timeout_s": t.timeout, "async": t.is_async, "background": t.background}
             for t in self],
            columns=["name", "description", "parameters", "timeout_s", "async", "background"],
        )

    def clear(self) -> None:
        """Remove every tool."""
        with self._lock:
            self._tools.clear()
        self._changed()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(registry)`` after every change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def off() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return off

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    def __repr__(self) -> str:
        return f"<ToolRegistry {self.names}>"


tools = ToolRegistry()
"""The default registry: ``@rt.tool`` adds to it, and sessions use it unless told otherwise."""

tool = tools.register
"""Register a function in the default registry (bare or with options)."""


class ToolSet:
    """The tools one session offers: a live registry, a fixed selection, or both, plus raw
    definitions (dicts) whose calls the caller answers itself."""

    def __init__(self, spec: Any = None) -> None:
        self.registry: ToolRegistry | None = None
        self.fixed: dict[str, Tool] = {}
        self.raw: list[dict[str, Any]] = []
        if spec is None:
            self.registry = tools
        elif isinstance(spec, ToolRegistry):
            self.registry = spec
        elif spec is False:
            pass
        elif isinstance(spec, (str, Tool, dict)) or callable(spec):
            self._add_all([spec])
        elif isinstance(spec, Iterable):
            self._add_all(spec)
        else:
            raise ToolError(f"tools must be a registry, a list of functions/names/definitions, "
                            f"or None; got {type(spec).__name__}")

    def _add_all(self, specs: Iterable[Any]) -> None:
        for spec in specs:
            if isinstance(spec, Tool):
                self.fixed[spec.name] = spec
            elif isinstance(spec, dict) and spec.get("type") == "mcp":
                try:  # an MCP server the provider calls itself (rtwidget.protocol.mcp_events)
                    self.raw.append(check_mcp_tool(spec))
                except ConfigError as exc:
                    raise ToolError(str(exc)) from None
            elif isinstance(spec, dict):
                if not isinstance(spec.get("name"), str):
                    raise ToolError(f"a tool definition needs a 'name': {spec!r:.80}")
                check_tool_name(spec["name"])
                self.raw.append({"type": "function", **spec})
            elif isinstance(spec, str):
                found = tools.get(spec)
                if found is None:
                    raise ToolError(f"no tool named {spec!r} in rtwidget.tools; known: "
                                    f"{tools.names}")
                self.fixed[spec] = found
            elif callable(spec):
                registered = next((t for t in tools if t.fn is spec), None)
                built = registered or build_tool(spec)
                self.fixed[built.name] = built
            else:
                raise ToolError(f"cannot use {spec!r:.60} as a tool")

    def get(self, name: str) -> Tool | None:
        """The runnable tool with this name, or ``None``."""
        if name in self.fixed:
            return self.fixed[name]
        return self.registry.get(name) if self.registry is not None else None

    def handled_elsewhere(self, name: str) -> bool:
        """Whether ``name`` is a raw definition the caller answers."""
        return any(d.get("name") == name for d in self.raw)

    def definitions(self) -> list[dict[str, Any]]:
        """The session's ``tools`` list."""
        runnable: dict[str, Tool] = {}
        if self.registry is not None:
            runnable.update({t.name: t for t in self.registry})
        runnable.update(self.fixed)
        return [t.definition() for t in runnable.values()] + [dict(d) for d in self.raw]

    def __bool__(self) -> bool:
        return bool(self.definitions())

    def __repr__(self) -> str:
        names = [d.get("name") or f"mcp:{d.get('server_label')}" for d in self.definitions()]
        return f"<ToolSet {names}>"

