"""MCP servers as notebook tools: ``rt.mcp("python server.py")`` (stdio) or
``rt.mcp(url="http://127.0.0.1:8000/mcp")`` (streamable HTTP) connects with the official ``mcp``
SDK (the ``mcp`` extra), lists the server's tools and adds each to a registry as a :class:`Tool`
whose JSON Schema is the server's ``inputSchema``; a session then offers and runs them like any
notebook tool, and ``df`` shows their calls.

The MCP client lives on a thread and event loop of its own (``rtwidget-mcp-<label>``), so a
call may come from the session's loop or any thread, and a slow or dead server holds up nothing
else: each call has a timeout, a server that exits fails its calls at once with the reason, and
a closed one answers every call with an error result.

Names: a tool keeps the server's name when the wire accepts it; other characters become ``_``.
A name already in the registry (another server's tool, or a notebook function) is not replaced:
connecting fails and says so; ``prefix="weather_"`` puts a server's tools under names of their
own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import shlex
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..aio.deadlines import within
from ..protocol.errors import RealtimeError, ToolError
from ..protocol.redact import mask_secrets, mask_url, remember_secret
from .registry import ToolRegistry, tools
from .schema import DEFAULT_TIMEOUT, NAME_PATTERN, Tool

log = logging.getLogger("rtwidget.mcp")

CONNECT_TIMEOUT = 30.0


class McpUnavailable(RealtimeError):
    """The MCP server could not be reached, or is gone (closed, or its process exited)."""


class McpCallFailed(RealtimeError):
    """The MCP server answered a call with ``isError``: the message is what it said."""


def _require_sdk() -> Any:
    try:
        import mcp
    except ImportError:
        raise ImportError("MCP servers need the official MCP SDK: pip install 'rtwidget[mcp]'"
                          ) from None
    return mcp


def result_text(result: Any) -> str:
    """What a ``CallToolResult`` says, as the text a model reads: its structured content as
    JSON where there is some, else its content parts (text as it is, anything else named)."""
    structured = getattr(result, "structured_content", None)
    if structured is not None and not getattr(result, "is_error", False):
        if isinstance(structured, dict) and set(structured) == {"result"}:
            structured = structured["result"]  # the SDK's wrapping of a plain return value
        return structured if isinstance(structured, str) else json.dumps(structured, default=str)
    parts: list[str] = []
    for part in getattr(result, "content", None) or []:
        kind = getattr(part, "type", "?")
        if kind == "text":
            parts.append(str(getattr(part, "text", "")))
        elif kind in ("image", "audio"):
            data = getattr(part, "data", "") or ""
            parts.append(f"[{kind}: {getattr(part, 'mime_type', '?')}, "
                         f"{len(data) * 3 // 4} bytes]")
        elif kind == "resource_link":
            parts.append(f"[resource: {getattr(part, 'uri', '?')}]")
        else:
            resource = getattr(part, "resource", None)
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[{kind}]")
    return "\n".join(parts)


def wire_name(name: str) -> str:
    """An MCP tool's name as the Realtime wire accepts it (other characters become ``_``)."""
    if NAME_PATTERN.fullmatch(name):
        return name
    return (re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]) or "tool"


@dataclass(frozen=True)
class McpTool(Tool):
    """A tool of an MCP server: its arguments are checked against the server's
    ``inputSchema`` and passed on as they are."""

    server: McpServer | None = field(default=None, repr=False, compare=False)
    remote_name: str = ""

    def parse(self, arguments: str | dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        try:
            values = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as exc:
            raise ToolError(f"invalid arguments for {self.name}: not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ToolError(f"invalid arguments for {self.name}: expected a JSON object, got "
                            f"{type(values).__name__}")
        import jsonschema  # type: ignore[import-untyped]

        try:
            validator = jsonschema.validators.validator_for(self.parameters)(self.parameters)
            problems = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
        except jsonschema.SchemaError:
            problems = []  # the server's schema is its own business: let it judge
        if problems:
            said = "; ".join(f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}"
                             for e in problems[:5])
            raise ToolError(f"invalid arguments for {self.name}: {said}")
        return [], values


class McpServer:
    """A live connection to one MCP server whose tools are in ``registry`` (see the module
    docstring). Made by :func:`mcp`; ``close()`` (or leaving a ``with`` block) ends it and
    removes its tools."""

    def __init__(self, command: str | Sequence[str] | None = None, *, url: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 registry: ToolRegistry | None = None, prefix: str = "",
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                 label: str | None = None) -> None:
        if (command is None) == (url is None):
            raise ToolError("rt.mcp needs a command line (stdio) or url= (streamable HTTP), "
                            "one of the two")
        _require_sdk()
        self.command = shlex.split(command) if isinstance(command, str) else \
            list(command) if command is not None else None
        if self.command is not None and not self.command:
            raise ToolError("rt.mcp: the command line is empty")
        self.url = url
        self._headers = dict(headers or {})
        for value in self._headers.values():
            remember_secret(value)
        self.registry = tools if registry is None else registry
        self.prefix = prefix
        self.timeout = float(timeout)
        self.label = label or (Path(self.command[0]).name if self.command and len(
            self.command) == 1 else (Path(self.command[-1]).stem if self.command else
                                     mask_url(url or "")))
        self.tools: dict[str, McpTool] = {}
        self.closed = False
        self.error: str | None = None  # why the server is gone, once it is
        self._stderr = tempfile.NamedTemporaryFile(  # noqa: SIM115 (open while it runs)
            "w+", prefix="rtwidget-mcp-", suffix=".log", delete=False) \
            if self.command else None
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._client: Any = None
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._thread = threading.Thread(target=self._run_loop, daemon=True,
                                        name=f"rtwidget-mcp-{self.label}"[:60])
        self._thread.start()
        try:
            listed = self._ready.result(timeout=connect_timeout)
        except concurrent.futures.TimeoutError:
            self._shutdown()
            raise McpUnavailable(f"MCP server {self.label!r} did not answer within "
                                 f"{connect_timeout:g} s{self._stderr_tail()}") from None
        except McpUnavailable:
            self._shutdown()
            raise
        try:
            self._register(listed)
        except BaseException:
            self._shutdown()
            raise

    # --- the loop thread ---------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _transport(self) -> Any:
        mcp = _require_sdk()
        if self.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=self.command[0], args=self.command[1:])
            return stdio_client(params, errlog=self._stderr)  # type: ignore[arg-type]
        if not self._headers:
            return self.url
        import httpx2  # the SDK's HTTP client
        from mcp.client.streamable_http import streamable_http_client

        del mcp
        http = httpx2.AsyncClient(headers=self._headers, follow_redirects=True,
                                  timeout=httpx2.Timeout(30.0, read=300.0))
        return streamable_http_client(str(self.url), http_client=http)

    async def _main(self) -> None:
        from mcp import Client

        self._stop = asyncio.Event()
        try:
            async with Client(self._transport(), read_timeout_seconds=self.timeout,
                              cache=None) as client:
                self._client = client
                listed = await client.list_tools()
                self._ready.set_result(list(listed.tools))
                await self._stop.wait()
        except BaseException as exc:  # whatever ends it is the reason it died
            self.error = self.error or self._why(exc)
            if not self._ready.done():
                self._ready.set_exception(McpUnavailable(
                    f"could not connect to MCP server {self.label!r}: {self.error}"
                    f"{self._stderr_tail()}"))
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise
        finally:
            self._client = None
            self.error = self.error or "the connection ended"
            for call in list(self._calls):
                if not call.done():
                    call.set_exception(McpUnavailable(self._gone()))

    @staticmethod
    def _why(exc: BaseException) -> str:
        inner = getattr(exc, "exceptions", None)
        while isinstance(inner, tuple) and inner:  # an exception group: its first cause
            exc = inner[0]
            inner = getattr(exc, "exceptions", None)
        return mask_secrets(f"{type(exc).__name__}: {exc}".rstrip(": "))

    def _gone(self) -> str:
        if self.closed:
            return f"MCP server {self.label!r} is closed"
        return f"MCP server {self.label!r} is gone ({self.error}){self._stderr_tail()}"

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            text = Path(self._stderr.name).read_text(errors="replace")[-600:].strip()
            if text:
                return f"; its stderr ends: {mask_secrets(text)}"
        return ""

    # --- tools -------------------------------------------------------------------------------

    def _register(self, listed: list[Any]) -> None:
        made: dict[str, McpTool] = {}
        for remote in listed:
            name = wire_name(self.prefix + remote.name)
            if name in made or name in self.registry:
                owner = "by another of its tools" if name in made else "in the registry"
                raise ToolError(
                    f"MCP server {self.label!r} has a tool {remote.name!r}, but the name "
                    f"{name!r} is taken ({owner}); "
                    f"connect it with prefix='...' to give its tools names of their own")
            schema = dict(remote.input_schema or {"type": "object", "properties": {}})
            schema.setdefault("properties", {})
            made[name] = McpTool(name=name, description=(remote.description or "").strip(),
                                 fn=self._caller(remote.name), parameters=schema,
                                 timeout=self.timeout, server=self, remote_name=remote.name)
        for tool in made.values():
            self.registry.add(tool)
        self.tools = made

    def _caller(self, remote_name: str) -> Any:
        async def call_mcp_tool(**arguments: Any) -> str:
            return await asyncio.wrap_future(self.submit(remote_name, arguments))

        call_mcp_tool.__name__ = wire_name(remote_name)
        return call_mcp_tool

    def submit(self, name: str, arguments: dict[str, Any]) -> concurrent.futures.Future[str]:
        """Call the server's tool ``name`` from any thread: a future of its result text
        (:class:`McpCallFailed` for an error result, :class:`McpUnavailable` when the server is
        closed or gone, ``TimeoutError`` past the timeout)."""
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        if self.closed or self._client is None or self._loop.is_closed():
            future.set_exception(McpUnavailable(self._gone()))
            return future
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)

        async def run() -> None:
            try:
                result = await within(self._client.call_tool(name, arguments),
                                                self.timeout)
            except BaseException as exc:  # it is the call's outcome
                if "Connection closed" in str(exc):  # the process exited, the socket went
                    self.error = self.error or self._why(exc)
                    self._client = None
                if not future.done():
                    future.set_exception(
                        TimeoutError(f"MCP tool {name!r} did not answer within "
                                     f"{self.timeout:g} s") if isinstance(
                            exc, (TimeoutError, asyncio.TimeoutError)) else
                        McpUnavailable(self._gone()) if self._client is None else
                        McpCallFailed(self._why(exc)))
                if not isinstance(exc, Exception):
                    raise
                return
            text = result_text(result)
            if future.done():
                return
            if getattr(result, "is_error", False):
                future.set_exception(McpCallFailed(text or "the MCP server reported an error"))
            else:
                future.set_result(text)

        try:
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(run()))
        except RuntimeError:  # the loop closed meanwhile
            future.set_exception(McpUnavailable(self._gone()))
        return future

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """Call the server's tool ``name`` (its own name) and wait for its result text."""
        return self.submit(name, dict(arguments or {})).result(timeout=self.timeout + 5)

    # --- life --------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the server is connected and answering."""
        return not self.closed and self._client is not None

    def close(self) -> None:
        """Disconnect (a stdio server's process ends), and remove its tools from the registry.
        Calls still running get error results. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for name, tool in self.tools.items():
            if self.registry.get(name) is tool:
                with contextlib.suppress(KeyError):
                    self.registry.unregister(name)
        self._shutdown()

    def _shutdown(self) -> None:
        stop = self._stop
        if stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.close()
                Path(self._stderr.name).unlink(missing_ok=True)

    def __enter__(self) -> McpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "connected" if self.alive else \
            f"gone: {self.error}"
        where = mask_url(self.url) if self.url else " ".join(self.command or [])
        return f"<McpServer {self.label!r} {where} ({state}) tools={list(self.tools)}>"


def mcp(command: str | Sequence[str] | None = None, *, url: str | None = None,
        headers: Mapping[str, str] | None = None, registry: ToolRegistry | None = None,
        prefix: str = "", timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT, label: str | None = None) -> McpServer:
    """Connect to an MCP server and add its tools to ``registry`` (``rt.tools`` by default).

    ``command`` runs a stdio server (a command line, split like a shell would, or a list);
    ``url`` reaches a streamable-HTTP one, with ``headers`` (credentials are masked
    everywhere rtwidget writes). ``timeout`` bounds each call. Use it as a context manager, or
    call ``close()``, to disconnect and remove the tools."""
    return McpServer(command, url=url, headers=headers, registry=registry, prefix=prefix,
                     timeout=timeout, connect_timeout=connect_timeout, label=label)
