"""rtwidget: a live voice agent in a Jupyter notebook, over the Realtime WebSocket protocol.

>>> import rtwidget as rt                                # doctest: +SKIP
>>> with rt.RealtimeSession(instructions="Be brief.") as session:
...     print(session.ask("Hello!"))

With no API key in the environment, sessions connect to the embedded local server.
"""

from __future__ import annotations

from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ErrorInfo,
    RealtimeError,
    ServerError,
    ServerRejected,
    ToolError,
)
from .protocol import Conversation, Item, Response
from .providers import Endpoint, Secret, resolve
from .server import LocalServer
from .session import NO_RECONNECT, AsyncRealtimeSession, RealtimeSession, Reconnect

__version__ = "0.1.0"

__all__ = [
    "NO_RECONNECT",
    "AsyncRealtimeSession",
    "AuthenticationError",
    "ConnectionClosed",
    "Conversation",
    "Endpoint",
    "ErrorInfo",
    "Item",
    "LocalServer",
    "RealtimeError",
    "RealtimeSession",
    "Reconnect",
    "Response",
    "Secret",
    "ServerError",
    "ServerRejected",
    "ToolError",
    "__version__",
    "resolve",
]
