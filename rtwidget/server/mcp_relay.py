"""The local server runs MCP tools itself, as OpenAI's GA API does for a ``{"type": "mcp"}``
tool in the session: it connects to the ``server_url`` (loopback only), lists the server's tools
(an ``mcp_list_tools`` item with ``mcp_list_tools.*`` events), offers them to the reply engine as
function tools, and when the engine calls one writes an ``mcp_call`` item with the
``response.mcp_call*`` events, calls the tool and lets the engine go on with the result in the
same response. ``require_approval`` is honoured: the response ends with an
``mcp_approval_request`` item; the call runs in the next response if the client's
``mcp_approval_response`` approved it, and the engine is told if it did not.

Each listing and call opens its own short connection with the ``mcp`` SDK (the ``mcp`` extra),
under a timeout, so a dead or slow MCP server costs an error, never a stuck response."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..aio.deadlines import within
from .item_store import ItemStore, ServerItem
from .output import OutputWriter, ServerResponse
from .server_session import ServerSession, new_id

log = logging.getLogger("rtwidget.server")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CALL_TIMEOUT = 30.0


def _is_loopback(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK


def _needs_approval(entry: Mapping[str, Any], name: str) -> bool:
    """Whether a call to ``name`` waits for the client's approval (``require_approval``:
    ``"always"``, the default, ``"never"``, or ``{"always"|"never": {"tool_names": [...]}}``)."""
    rule = entry.get("require_approval", "always")
    if not isinstance(rule, Mapping):
        return rule != "never"
    never = rule.get("never") or {}
    if isinstance(never, Mapping) and name in (never.get("tool_names") or []):
        return False
    always = rule.get("always") or {}
    if isinstance(always, Mapping) and always.get("tool_names") is not None:
        return name in always["tool_names"]
    return True


def _allowed(entry: Mapping[str, Any], name: str) -> bool:
    allowed = entry.get("allowed_tools")
    if isinstance(allowed, list):
        return name in allowed
    if isinstance(allowed, Mapping) and isinstance(allowed.get("tool_names"), list):
        return name in allowed["tool_names"]
    return True


def _text(result: Any) -> str:
    structured = getattr(result, "structured_content", None)
    if structured is not None and not getattr(result, "is_error", False):
        if isinstance(structured, dict) and set(structured) == {"result"}:
            structured = structured["result"]
        return structured if isinstance(structured, str) else json.dumps(structured)
    return "\n".join(str(getattr(p, "text", f"[{getattr(p, 'type', '?')}]"))
                     for p in getattr(result, "content", None) or [])


class McpRelay:
    """The MCP servers of one connection's session (see the module docstring)."""

    def __init__(self, session: ServerSession, items: ItemStore, output: OutputWriter) -> None:
        self._session = session
        self._items = items
        self._output = output
        self.listed: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self._handled: set[str] = set()  # approval requests already acted on

    # --- the session's tools -----------------------------------------------------------------

    async def sync(self, tools: Any) -> None:
        """List the tools of each ``mcp`` entry not listed yet (after a ``session.update``)."""
        for entry in tools if isinstance(tools, list) else []:
            if not isinstance(entry, dict) or entry.get("type") != "mcp":
                continue
            label = str(entry.get("server_label"))
            known = self.listed.get(label)
            if known is not None and known[0] == entry:
                continue
            await self._list(label, entry)

    async def _list(self, label: str, entry: dict[str, Any]) -> None:
        item = ServerItem({"id": new_id("mcpl"), "type": "mcp_list_tools",
                           "server_label": label, "tools": [], "status": "in_progress"})
        await self._items.add(item)
        emit = self._session.emit
        await emit({"type": "mcp_list_tools.in_progress", "item_id": item.id})
        url = str(entry.get("server_url") or "")
        try:
            if not _is_loopback(url):
                raise PermissionError(f"the local server connects to MCP servers on loopback "
                                      f"only (127.0.0.1, localhost, ::1), not "
                                      f"{urlsplit(url).hostname or url!r}")
            async with self._client(entry) as client:
                listed = await within(client.list_tools(), CALL_TIMEOUT)
        except Exception as exc:
            self.listed.pop(label, None)
            await emit({"type": "mcp_list_tools.failed", "item_id": item.id})
            await self._done(item)
            await self._session.emit({"type": "error", "error": {
                "type": "invalid_request_error", "code": "mcp_list_tools_failed",
                "message": f"Could not list the tools of MCP server '{label}': {_why(exc)}",
                "param": "session.tools"}})
            return
        tools = [{"name": t.name, "input_schema": dict(t.input_schema or {}),
                  **({"description": t.description} if t.description else {})}
                 for t in listed.tools if _allowed(entry, t.name)]
        item.data["tools"] = tools
        self.listed[label] = (entry, tools)
        await emit({"type": "mcp_list_tools.completed", "item_id": item.id})
        await self._done(item)

    async def _done(self, item: ServerItem) -> None:
        item.data.pop("status", None)
        pos = self._items.index(item.id)
        await self._session.emit({"type": "conversation.item.done", "previous_item_id":
                                  self._items.previous_id(pos) if pos is not None else None,
                                  "item": item.public()})

    def _client(self, entry: Mapping[str, Any]) -> Any:
        from mcp import Client

        headers = dict(entry.get("headers") or {})
        if entry.get("authorization"):
            headers["Authorization"] = f"Bearer {entry['authorization']}"
        url = str(entry["server_url"])
        if not headers:
            return Client(url, cache=None, read_timeout_seconds=CALL_TIMEOUT)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(CALL_TIMEOUT))
        return Client(streamable_http_client(url, http_client=http), cache=None,
                      read_timeout_seconds=CALL_TIMEOUT)

    def functions(self, tools: list[Any]) -> list[Any]:
        """``tools`` with each listed ``mcp`` entry replaced by its tools as function tools
        (what a reply engine understands)."""
        out: list[Any] = []
        for entry in tools:
            if isinstance(entry, dict) and entry.get("type") == "mcp":
                for tool in self.listed.get(str(entry.get("server_label")), ({}, []))[1]:
                    out.append({"type": "function", "name": tool["name"],
                                "description": tool.get("description", ""),
                                "parameters": tool["input_schema"]})
            else:
                out.append(entry)
        return out

    def owner(self, name: str, tools: list[Any]) -> dict[str, Any] | None:
        """The ``mcp`` entry whose server has the tool ``name``, unless a function tool of the
        session has that name (it wins)."""
        if any(isinstance(t, dict) and t.get("type", "function") == "function"
               and t.get("name") == name for t in tools):
            return None
        for entry in tools:
            if isinstance(entry, dict) and entry.get("type") == "mcp":
                listed = self.listed.get(str(entry.get("server_label")), ({}, []))[1]
                if any(t["name"] == name for t in listed):
                    return entry
        return None

    # --- calls -------------------------------------------------------------------------------

    async def call_or_ask(self, response: ServerResponse, entry: dict[str, Any], name: str,
                          arguments: str) -> bool:
        """The engine called an MCP tool: run it (``True``), or ask for approval (``False``:
        the response ends there)."""
        if _needs_approval(entry, name):
            item = await self._output._new_output(response, {
                "type": "mcp_approval_request", "server_label": entry["server_label"],
                "name": name, "arguments": arguments})
            await self._output._item_done(response, item, "completed")
            return False
        await self.call(response, entry, name, arguments)
        return True

    async def answer_approvals(self, response: ServerResponse, tools: list[Any]) -> None:
        """Run the calls the client approved since the last response (a denied one is left to
        the engine, which reads the answer in the conversation)."""
        requests = {i.id: i for i in self._items.items
                    if i.data.get("type") == "mcp_approval_request"}
        for item in list(self._items.items):
            data = item.data
            request_id = data.get("approval_request_id")
            if data.get("type") != "mcp_approval_response" or request_id in self._handled:
                continue
            self._handled.add(str(request_id))
            request = requests.get(str(request_id))
            if request is None or data.get("approve") is not True:
                continue
            name = str(request.data["name"])
            entry = self.owner(name, tools)
            if entry is not None:
                await self.call(response, entry, name, str(request.data["arguments"]),
                                approval_request_id=request.id)

    async def call(self, response: ServerResponse, entry: dict[str, Any], name: str,
                   arguments: str, approval_request_id: str | None = None) -> None:
        """Write an ``mcp_call`` item with its events, calling the tool on the MCP server."""
        emit = self._session.emit
        data: dict[str, Any] = {"type": "mcp_call", "server_label": entry["server_label"],
                                "name": name, "arguments": ""}
        if approval_request_id:
            data["approval_request_id"] = approval_request_id
        item = await self._output._new_output(response, data)
        index = response.output.index(item)
        where = {"response_id": response.id, "item_id": item.id, "output_index": index}
        item.data["arguments"] = arguments
        await emit({"type": "response.mcp_call_arguments.delta", **where, "delta": arguments})
        await emit({"type": "response.mcp_call_arguments.done", **where,
                    "arguments": arguments})
        await emit({"type": "response.mcp_call.in_progress", "item_id": item.id,
                    "output_index": index})
        error: dict[str, Any] | None = None
        try:
            args = json.loads(arguments or "{}")
            async with self._client(entry) as client:
                result = await within(client.call_tool(name, args), CALL_TIMEOUT)
            text = _text(result)
            if getattr(result, "is_error", False):
                error = {"type": "tool_execution_error", "message": text or "the tool failed"}
            else:
                item.data["output"] = text
        except Exception as exc:
            error = {"type": "protocol_error", "code": -32603, "message": _why(exc)}
        if error is not None:
            item.data["error"] = error
        await emit({"type": "response.mcp_call.failed" if error else
                    "response.mcp_call.completed", "item_id": item.id, "output_index": index})
        await self._output._item_done(response, item, "completed")


def _why(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and inner:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer within {CALL_TIMEOUT:g} s"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
