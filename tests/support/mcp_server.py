"""A real MCP server for the tests, built with the SDK's ``MCPServer`` (FastMCP): run it as
``python -m tests.support.mcp_server stdio`` or ``... http PORT`` (streamable HTTP on
127.0.0.1:PORT/mcp). Its tools: ``add``, ``weather``, ``fail`` (an error result), ``slow``,
``crash`` (the process dies mid-call) and ``secret_seen`` (whether a request carried the
``Authorization`` header it was given, without echoing it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

ROOT = Path(__file__).resolve().parents[2]

server = MCPServer("rtwidget-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny and 21 degrees in {city}"


@server.tool()
def fail(reason: str = "no reason") -> str:
    """Always fails."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Waits, then answers."""
    await asyncio.sleep(seconds)
    return f"waited {seconds} s"


@server.tool()
def crash() -> str:
    """Kills the server process in the middle of the call."""
    os._exit(3)


@server.tool()
def secret_seen(ctx: Context) -> str:  # type: ignore[type-arg]
    """Whether the HTTP request carried an Authorization header."""
    request = getattr(ctx.request_context, "request", None)
    headers = getattr(request, "headers", None) or {}
    return "yes" if headers.get("authorization") else "no"


def command(transport: str = "stdio", port: int | None = None) -> list[str]:
    """The command line that runs this server."""
    return [sys.executable, "-m", "tests.support.mcp_server", transport,
            *([str(port)] if port else [])]


def start_http(port: int, timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """Start the server over streamable HTTP on 127.0.0.1:``port`` and wait until it answers."""
    proc = subprocess.Popen(command("http", port), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/mcp"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except urllib.error.HTTPError:
            return proc  # it answers (a plain GET is refused): serving
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"the MCP test server did not start on port {port}") from None
            time.sleep(0.2)


@contextlib.contextmanager
def serving_http() -> Iterator[str]:
    """The server over streamable HTTP on a free port of 127.0.0.1, for the block: its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start_http(port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
