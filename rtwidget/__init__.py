"""rtwidget: a live voice agent in a Jupyter notebook, over the Realtime WebSocket protocol.

>>> import rtwidget as rt                                # doctest: +SKIP
>>> @rt.tool
... def add(a: int, b: int) -> int:
...     '''Add two numbers.'''
...     return a + b
>>> with rt.RealtimeSession(instructions="Be brief.") as session:
...     print(session.ask("What is 2 + 3?"))
...     session.df

With no API key in the environment, sessions connect to the embedded local server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client.local_process import LocalServerProcess, ServerExit, local_server
from .client.options import NO_RECONNECT, Reconnect, SessionOptions
from .client.providers import Endpoint, Secret, ask_key, resolve
from .client.session import AsyncRealtimeSession
from .client.sync import Expectation, RealtimeSession
from .client.voices import voices
from .data.cost import Cost, cost
from .data.frame import COLUMNS, LiveView, load_conversation
from .data.latency import plot_latency, turn_latency
from .data.prices import prices
from .evaluation import (
    Branch,
    Comparison,
    EvalRun,
    EvalSuite,
    Interrupt,
    Judge,
    Scenario,
    SimulatedUser,
    checks,
    compare,
)
from .notebook.chat import chat
from .notebook.widget import VoiceChat
from .protocol import Conversation, Item, Response
from .protocol.audio import AudioFormatError
from .protocol.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionClosed,
    EngineError,
    EngineUnavailable,
    ErrorInfo,
    InvalidInput,
    NotFound,
    RealtimeError,
    ServerError,
    ServerRejected,
    ToolError,
    UsageError,
    WaitTimeout,
)
from .protocol.record_format import RecordingError, RecordingExists
from .recording.reader import Recording, load_recording
from .recording.replay import Replay, diff
from .telemetry import telemetry
from .tooling.call_context import CallContext, ToolCancelled
from .tooling.mcp_client import McpServer, mcp
from .tooling.registry import ToolRegistry, ToolSet, tool, tools
from .tooling.runner import ToolResult
from .tooling.schema import Tool, build_tool

if TYPE_CHECKING:
    from .server import LocalServer


def __getattr__(name: str) -> Any:
    """``rt.LocalServer`` loads the local server when it is first asked for, so that
    ``import rtwidget`` does not."""
    if name == "LocalServer":
        from .server import LocalServer

        return LocalServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "LocalServer"})


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext rtwidget``: registers ``%rtchat`` and ``%rttools``."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)


__version__ = "0.1.0"

__all__ = [
    "COLUMNS",
    "NO_RECONNECT",
    "AsyncRealtimeSession",
    "AudioFormatError",
    "AuthenticationError",
    "Branch",
    "CallContext",
    "Comparison",
    "ConfigError",
    "ConnectionClosed",
    "Conversation",
    "Cost",
    "Endpoint",
    "EngineError",
    "EngineUnavailable",
    "ErrorInfo",
    "EvalRun",
    "EvalSuite",
    "Expectation",
    "Interrupt",
    "InvalidInput",
    "Item",
    "Judge",
    "LiveView",
    "LocalServer",
    "LocalServerProcess",
    "McpServer",
    "NotFound",
    "RealtimeError",
    "RealtimeSession",
    "Reconnect",
    "Recording",
    "RecordingError",
    "RecordingExists",
    "Replay",
    "Response",
    "Scenario",
    "Secret",
    "ServerError",
    "ServerExit",
    "ServerRejected",
    "SessionOptions",
    "SimulatedUser",
    "Tool",
    "ToolCancelled",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSet",
    "UsageError",
    "VoiceChat",
    "WaitTimeout",
    "__version__",
    "ask_key",
    "build_tool",
    "chat",
    "checks",
    "compare",
    "cost",
    "diff",
    "load_conversation",
    "load_ipython_extension",
    "load_recording",
    "local_server",
    "mcp",
    "plot_latency",
    "prices",
    "resolve",
    "telemetry",
    "tool",
    "tools",
    "turn_latency",
    "voices",
]
