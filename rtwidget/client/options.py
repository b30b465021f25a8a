"""How a session is made: one :class:`SessionOptions` value, shared by the async session, the
blocking one and the widget (whose Disconnect → Connect builds a new session from it)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol.configuration import merge_session, session_config
from ..protocol.redact import mask_secrets
from ..tooling.delivery import FILLER_INSTRUCTIONS


@dataclass(frozen=True)
class Reconnect:
    """How to retry a dropped connection: exponential backoff with full jitter.

    The n-th wait is uniform in ``[0, min(max_delay, base_delay * 2**n)]``; after
    ``max_attempts`` failed attempts in a row the session gives up. A connection counts as
    back, and the backoff starts afresh, only once it has stayed up ``stable_after`` seconds:
    a server that accepts, confirms the configuration and closes at once is a failed attempt.
    """

    base_delay: float = 0.5
    max_delay: float = 15.0
    max_attempts: int = 10
    stable_after: float = 10.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt number ``attempt`` (0-based)."""
        return rng() * min(self.max_delay, self.base_delay * 2**attempt)


NO_RECONNECT = Reconnect(max_attempts=0)


@dataclass(frozen=True)
class SessionOptions:
    """Everything a session is made with besides where it connects and the conversation.

    ``config`` is the ``session`` object sent with ``session.update`` after every connect (build
    it from keywords with :meth:`of`). ``tools`` chooses what the model may call: ``None`` for
    every tool in :data:`rtwidget.tools` (kept current as tools are defined), a
    :class:`~rtwidget.ToolRegistry` or :class:`~rtwidget.ToolSet`, a list of functions, tool
    names and raw definitions, or ``False`` for none; ``run_tools=False`` leaves every call to
    you; ``max_tool_rounds`` caps responses in a row that end in tool calls. ``record`` writes
    the session to a folder (a path, or ``True`` for a new one under ``recordings/``).
    ``restore_history`` sends the conversation so far again after a reconnect.
    ``filler_after``: seconds after the user's turn ended with a tool still running before the
    agent says a short filler (an out-of-band response told ``filler_instructions``; ``None``:
    never).
    ``ping_interval``/``ping_timeout`` are the keepalive; a server event over
    ``max_message_bytes`` closes the connection (code 1009), which is retried like any drop.
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    tools: Any = None
    run_tools: bool = True
    approve: Any = None  # MCP approval requests: a function of the request, or True/False

    def __repr__(self) -> str:  # credentials (an MCP tool's headers) masked
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                          if f.repr)
        return mask_secrets(f"SessionOptions({shown})")
    max_tool_rounds: int = 8
    filler_after: float | None = 0.7
    filler_instructions: str = FILLER_INSTRUCTIONS
    record: str | Path | bool | None = None
    reconnect: Reconnect = Reconnect()
    restore_history: bool = True
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_message_bytes: int = 16 * 1024 * 1024

    @classmethod
    def of(cls, base: SessionOptions | None = None, **settings: Any) -> SessionOptions:
        """``base`` (or the defaults) changed by ``settings``: option fields by name, and any
        other keyword a :func:`~rtwidget.protocol.session_config` keyword (``model``,
        ``instructions``, ``voice``...) merged into ``config``."""
        base = base if base is not None else cls()
        names = {f.name for f in dataclasses.fields(cls)} - {"config"}
        options = {k: settings.pop(k) for k in list(settings) if k in names}
        config = dict(settings.pop("config", None) or base.config)
        if settings:
            config = merge_session(config, session_config(**settings))
        return dataclasses.replace(base, config=config, **options)

    def replace(self, **changes: Any) -> SessionOptions:
        """A copy with these fields changed."""
        return dataclasses.replace(self, **changes)
