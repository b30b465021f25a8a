"""A session's tools: the :class:`~rtwidget.ToolSet` it offers, the
:class:`~rtwidget.tooling.runner.ToolRunner` that answers the model's calls, and the watch on
the registry that sends the new list when a notebook cell defines, redefines or removes a tool.
All on the session's loop, except the registry's news, which may come from any thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import client_events
from ..protocol.errors import ConnectionClosed, ServerError
from ..protocol.requests import PendingRequests, Predicate
from ..tooling.registry import ToolSet
from ..tooling.runner import ToolHost, ToolResult, ToolRunner
from .connection import log
from .event_hub import EventHub
from .options import SessionOptions


class ToolSession(ToolHost, Protocol):
    """What the tools need of a session (an :class:`~rtwidget.AsyncRealtimeSession` is one)."""

    config: dict[str, Any]
    hub: EventHub
    requests: PendingRequests

    @property
    def closed(self) -> bool: ...

    @property
    def connected(self) -> bool: ...

    async def request(self, event: dict[str, Any], match: Predicate,
                      timeout: float | None = 30.0) -> dict[str, Any]: ...


class SessionTools:
    """The tools of one session (see the module docstring): ``options.tools`` as
    :class:`~rtwidget.SessionOptions` takes them, run by the session itself when
    ``options.run_tools``, with its filler settings."""

    def __init__(self, session: ToolSession, options: SessionOptions) -> None:
        tools = options.tools
        self.toolset = tools if isinstance(tools, ToolSet) else ToolSet(tools)
        self._session = session
        self._options = options
        self._runner: ToolRunner | None = None
        self._registry_off: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """The session connects (on its loop): the tool list goes into its configuration, the
        runner starts and the registry is watched."""
        self._loop = asyncio.get_running_loop()
        defs = self.toolset.definitions()
        if defs or "tools" in self._session.config:
            self._session.config["tools"] = defs
        options = self._options
        if options.run_tools and self._runner is None:
            # Inworld's docs list no out-of-band responses (its own filler is providerData's
            # responsiveness), so rtwidget's spoken filler is for the other providers
            endpoint = getattr(self._session, "endpoint", None)
            filler_after = None if getattr(endpoint, "provider", None) == "inworld" \
                else options.filler_after
            self._runner = ToolRunner(self._session, self.toolset, options.max_tool_rounds,
                                      filler_after, options.filler_instructions)
        self._watch_registry()

    def stop(self) -> None:
        """The session ends: no more watching, and the calls still running are cancelled."""
        if self._registry_off is not None:
            self._registry_off()
            self._registry_off = None
        if self._runner is not None:
            self._runner.detach()
            self._runner = None

    def use(self, toolset: ToolSet) -> None:
        """Offer ``toolset`` from now on (an update changed the tools, or was refused)."""
        self.toolset = toolset
        if self._runner is not None:
            self._runner.toolset = toolset
        self._watch_registry()

    @property
    def results(self) -> dict[str, ToolResult]:
        """Finished tool calls by ``call_id``."""
        return dict(self._runner.results) if self._runner is not None else {}

    def handles(self, name: str | None) -> bool:
        """Whether the session answers calls to this tool itself."""
        return self._runner is not None and self._runner.handles(name)

    def interrupted(self) -> list[str]:
        """The user moved on (a typed turn that interrupts): cancel the calls that allow it."""
        return self._runner.interrupted() if self._runner is not None else []

    def cancel(self, call_id: str) -> bool:
        """Cancel one running call; whether it was running."""
        return self._runner is not None and self._runner.cancel(call_id)

    def running(self) -> list[str]:
        """The ids of the calls running now."""
        return self._runner.running() if self._runner is not None else []

    def _watch_registry(self) -> None:
        if self._registry_off is not None:
            self._registry_off()
            self._registry_off = None
        registry = self.toolset.registry
        if registry is None:
            return

        def changed(_: object) -> None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._changed)

        self._registry_off = registry.subscribe(changed)

    def _changed(self) -> None:
        """A tool was defined, redefined or removed: send the new list if it differs."""
        session = self._session
        defs = self.toolset.definitions()
        if defs == session.config.get("tools", []) or session.closed:
            return
        if not session.connected:
            session.config["tools"] = defs  # sent with the configuration on connecting
            return
        session.hub.spawn(self._send(defs))

    async def _send(self, defs: list[dict[str, Any]]) -> None:
        """Send a changed tool list as a tracked request (so its ``session.updated`` is not
        taken for another update's answer), and keep it once confirmed."""
        update = client_events.session_update({"type": "realtime", "tools": defs})
        session = self._session
        try:
            await session.request(update, session.requests.updated_for(update["event_id"]))
        except (ServerError, ConnectionClosed, TimeoutError, ValueError) as exc:
            log.warning("the server did not take the new tool list: %s", exc)
            return
        session.config["tools"] = defs
