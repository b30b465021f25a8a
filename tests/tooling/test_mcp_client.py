"""rt.mcp(): a real MCP server process (stdio, and streamable HTTP on 127.0.0.1) whose tools a
session offers and runs through the local server like notebook tools; failures, a server that
dies, closing, name collisions."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine
from tests.conftest import eventually
from tests.support.mcp_server import command, serving_http

RULES = [Rule(r"weather in (?P<city>\w+)", calls=[("weather", {"city": "{city}"})]),
         Rule(r"add (\d+) and (\d+)", calls=[("add", {"a": "{0}", "b": "{1}"})]),
         Rule(r"break it", calls=[("fail", {})]),
         Rule(r"crash", calls=[("crash", {})])]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        yield srv


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    with serving_http() as url:
        yield url


def _ask(server: LocalServer, registry: rt.ToolRegistry, text: str) -> tuple[str, object]:
    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"],
                            tools=registry) as s:
        reply = s.ask(text)
        return reply, s.df


def test_a_stdio_servers_tools_run_like_notebook_tools(server: LocalServer) -> None:
    registry = rt.ToolRegistry()
    with rt.mcp(command(), registry=registry, label="test") as mcp:
        assert set(mcp.tools) == {"add", "weather", "fail", "slow", "crash", "secret_seen"}
        assert registry["add"].parameters["properties"]["a"]["type"] == "integer"
        reply, df = _ask(server, registry, "What is the weather in Oslo?")
    assert reply == "The tool returned Sunny and 21 degrees in Oslo."
    call = df[df["type"] == "function_call_output"].iloc[0]
    assert call["tool_name"] == "weather" and call["output"] == "Sunny and 21 degrees in Oslo"
    assert registry.names == []  # closing removed them


def test_an_http_servers_tools_run_and_bad_arguments_are_refused(server: LocalServer,
                                                                 http_url: str) -> None:
    registry = rt.ToolRegistry()
    with rt.mcp(url=http_url, registry=registry):
        reply, _ = _ask(server, registry, "weather in Lima")
        assert reply == "The tool returned Sunny and 21 degrees in Lima."
        reply, _ = _ask(server, registry, "add 2 and 40")  # the rule sends strings
        assert "'2' is not of type 'integer'" in reply
        with pytest.raises(rt.ToolError, match="'x' is not of type 'integer'"):
            registry["add"].parse(json.dumps({"a": 1, "b": "x"}))


def test_an_error_result_and_a_dying_server_give_error_results(server: LocalServer) -> None:
    registry = rt.ToolRegistry()
    with rt.mcp(command(), registry=registry) as mcp:
        _, df = _ask(server, registry, "break it")
        out = df[df["type"] == "function_call_output"].iloc[0]
        assert "failed on purpose" in out["error"]
        _, df = _ask(server, registry, "crash")
        out = df[df["type"] == "function_call_output"].iloc[0]
        assert "McpUnavailable" in out["error"] or "McpCallFailed" in out["error"]
        eventually(lambda: not mcp.alive, what="the dead server noticed")
        with pytest.raises(Exception, match="gone"):
            mcp.call("add", {"a": 1, "b": 2})
        assert "gone" in repr(mcp)


def test_a_name_already_taken_is_refused_and_a_prefix_avoids_it() -> None:
    registry = rt.ToolRegistry()

    @registry.register
    def weather(city: str) -> str:
        return "rain"

    with pytest.raises(rt.ToolError, match="prefix="):
        rt.mcp(command(), registry=registry)
    assert registry.names == ["weather"]
    with rt.mcp(command(), registry=registry, prefix="remote_") as mcp:
        assert "remote_weather" in registry and mcp.call("weather", {"city": "Oslo"})


def test_a_command_that_is_not_an_mcp_server_fails_to_connect_clearly() -> None:
    import sys

    with pytest.raises(rt.RealtimeError, match=r"could not connect|did not answer"):
        rt.mcp([sys.executable, "-c", "import sys; print('hello', file=sys.stderr)"],
               connect_timeout=20)
