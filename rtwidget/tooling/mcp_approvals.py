"""Approval requests of MCP tools the provider runs (``require_approval``), answered for a
session: ``approve=`` is a function of the request (an :class:`~rtwidget.Item` with
``server_label``, ``name`` and ``arguments``) returning ``True`` or ``False``, or ``True`` /
``False`` for every request. When the response that asked is done, the answer goes back as an
``mcp_approval_response`` item followed by ``response.create`` (the GA flow), unless the
response also made function calls, whose answer already asks for the next response. With no
``approve=``, requests wait for :meth:`McpApprovals.answer`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..protocol import client_events
from ..protocol.items import Item, Response, Update
from ..protocol.mcp_events import approval_response
from .runner import ToolHost, describe_exception

log = logging.getLogger("rtwidget.tools")

Approver = Callable[[Item], bool] | bool | None


class McpApprovals:
    """Answers a session's MCP approval requests (see the module docstring)."""

    def __init__(self, session: ToolHost, approve: Approver = None) -> None:
        self.session = session
        self.approve = approve
        self.answered: dict[str, bool] = {}
        self._off = session.on_update(self._on_update)

    def detach(self) -> None:
        """Stop answering."""
        self._off()

    def pending(self) -> list[Item]:
        """Approval requests not answered yet."""
        return [i for i in self.session.conversation if i.type == "mcp_approval_request"
                and i.id not in self.answered]

    def answer(self, request_id: str, approve: bool, reason: str | None = None,
               respond: bool = True) -> None:
        """Answer one request (``respond``: then ask for the next response)."""
        if request_id in self.answered:
            return
        self.answered[request_id] = bool(approve)
        self.session.send_nowait(client_events.item_create(
            approval_response(request_id, approve, reason)))
        if respond:
            self.session.send_nowait(client_events.response_create())

    def _on_update(self, event: dict[str, Any], update: Update) -> None:
        if update.type == "response.done" and update.response is not None:
            self._on_response_done(update.response)

    def _decide(self, request: Item) -> tuple[bool, str | None]:
        if isinstance(self.approve, bool):
            return self.approve, None
        assert self.approve is not None
        try:
            return bool(self.approve(request)), None
        except Exception as exc:  # a failing callback denies, and says why
            log.warning("the approve= callback raised %s", describe_exception(exc))
            return False, f"the approval callback failed: {describe_exception(exc, 200)}"

    def _on_response_done(self, response: Response) -> None:
        if self.approve is None:
            return
        items = [self.session.conversation.get(i) for i in response.item_ids]
        requests = [i for i in items if i is not None and i.type == "mcp_approval_request"
                    and i.id not in self.answered]
        if not requests:
            return
        calls = any(i is not None and i.type == "function_call" for i in items)
        for n, request in enumerate(requests):
            approve, reason = self._decide(request)
            self.answer(request.id, approve, reason,
                        respond=not calls and n == len(requests) - 1)
