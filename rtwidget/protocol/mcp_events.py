"""MCP tools a provider runs itself (a ``{"type": "mcp", ...}`` entry in the session's
``tools``): the GA events that list a server's tools (``mcp_list_tools.*``) and stream a call
(``response.mcp_call_arguments.*``, ``response.mcp_call.*``), applied to the conversation's
``mcp_list_tools`` and ``mcp_call`` items; the approval items (``mcp_approval_request``,
``mcp_approval_response``) come as ordinary items. A part of
:class:`~rtwidget.protocol.conversation.Conversation`, plus the checks and builders the
client needs: which providers run such tools, and the approval answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ConfigError
from .items import MCP_ITEM_TYPES, Item, Update, str_or_none
from .redact import MASK, remember_secret

__all__ = ["MCP_ITEM_TYPES", "HostedMcpEvents", "approval_response", "check_mcp_tool",
           "mask_tool_secrets"]
SECRET_FIELDS = ("headers", "authorization")
"""The fields of an ``mcp`` tool entry that carry credentials (masked wherever rtwidget writes)."""

RUNS_MCP = ("openai", "azure", "local", "url")
"""Providers whose documentation lists ``type: "mcp"`` tools (OpenAI's GA API; the local server
runs them itself). Inworld's Realtime docs list function tools only."""

Handler = Callable[[dict[str, Any], str, Item], Update]


class HostedMcpEvents:
    """The handlers of the hosted-MCP events (each gets the item the event names)."""

    def _mcp_handlers(self) -> dict[str, Handler]:
        return {
            "mcp_list_tools.in_progress": self._on_list_tools,
            "mcp_list_tools.completed": self._on_list_tools,
            "mcp_list_tools.failed": self._on_list_tools,
            "response.mcp_call_arguments.delta": self._on_mcp_arguments,
            "response.mcp_call_arguments.done": self._on_mcp_arguments,
            "response.mcp_call.in_progress": self._on_mcp_call,
            "response.mcp_call.completed": self._on_mcp_call,
            "response.mcp_call.failed": self._on_mcp_call,
        }

    @staticmethod
    def _on_list_tools(event: dict[str, Any], kind: str, item: Item) -> Update:
        return _stage(item, kind, "mcp_list_tools", "the MCP server's tools could not be listed")

    @staticmethod
    def _on_mcp_arguments(event: dict[str, Any], kind: str, item: Item) -> Update:
        item.type = "mcp_call"
        if kind.endswith(".done"):
            item.arguments = str_or_none(event.get("arguments")) or item.arguments
        else:
            item.arguments += str_or_none(event.get("delta")) or ""
        return Update(type=kind, item=item)

    @staticmethod
    def _on_mcp_call(event: dict[str, Any], kind: str, item: Item) -> Update:
        return _stage(item, kind, "mcp_call", "the MCP call failed")


def _stage(item: Item, kind: str, item_type: str, failure: str) -> Update:
    """An ``mcp_*`` stage event: the item's type, its status from the event's last word
    (``in_progress``, ``completed``, ``failed``), and ``failure`` if it failed saying nothing."""
    item.type = item_type
    item.status = kind.rpartition(".")[2]
    if item.status == "failed" and item.error is None:
        item.error = failure
    return Update(type=kind, item=item)


def check_mcp_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """An ``mcp`` tool entry checked (a label, a URL or connector) and copied; raises
    :class:`ConfigError` saying what is missing."""
    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise ConfigError("an 'mcp' tool needs a server_label (a name for the server)")
    if not any(isinstance(tool.get(k), str) and tool.get(k) for k in
               ("server_url", "connector_id", "tunnel_id")):
        raise ConfigError(f"the 'mcp' tool {label!r} needs a server_url (or a connector_id)")
    headers = tool.get("headers")
    if headers is not None and not (isinstance(headers, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise ConfigError(f"the 'mcp' tool {label!r}: headers must map names to strings")
    for value in [*(headers or {}).values(), tool.get("authorization")]:
        remember_secret(value if isinstance(value, str) else None)
        if isinstance(value, str) and " " in value:  # "Bearer <token>": the token alone too
            remember_secret(value.rpartition(" ")[2])
    return dict(tool)


def _masked_tool(tool: Any) -> Any:
    if not (isinstance(tool, Mapping) and tool.get("type") == "mcp"):
        return tool
    out = dict(tool)
    if isinstance(out.get("headers"), Mapping):
        out["headers"] = dict.fromkeys(out["headers"], MASK)
    if out.get("authorization"):
        out["authorization"] = MASK
    return out


def mask_tool_secrets(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` (a ``session.update`` or ``response.create``) with the headers and
    authorization of its ``mcp`` tools masked; the event itself when it has none."""
    for key in ("session", "response"):
        body = event.get(key)
        tools = body.get("tools") if isinstance(body, Mapping) else None
        if isinstance(tools, list) and any(isinstance(t, Mapping) and t.get("type") == "mcp"
                                           for t in tools):
            assert isinstance(body, Mapping)
            return {**event, key: {**body, "tools": [_masked_tool(t) for t in tools]}}
    return event


def check_tools_for(provider: str, tools: Sequence[Any]) -> None:
    """Refuse (before anything is sent) ``mcp`` tools for a provider whose docs do not list
    them."""
    if provider in RUNS_MCP:
        return
    for tool in tools:
        if isinstance(tool, Mapping) and tool.get("type") == "mcp":
            raise ConfigError(
                f"provider {provider!r} does not document MCP tools (type 'mcp'; its Realtime "
                f"docs list function tools only): connect the server on the client side with "
                f"rt.mcp(url=...) instead, and its tools become function tools")


def approval_response(request_id: str, approve: bool, reason: str | None = None
                      ) -> dict[str, Any]:
    """The ``mcp_approval_response`` item answering an approval request."""
    item: dict[str, Any] = {"type": "mcp_approval_response", "approval_request_id": request_id,
                            "approve": bool(approve)}
    if reason:
        item["reason"] = reason
    return item
