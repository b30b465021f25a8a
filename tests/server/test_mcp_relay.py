"""The local server runs a session's ``type: "mcp"`` tools itself, against a real MCP server
process (streamable HTTP on 127.0.0.1): the listing, the calls, approvals both ways, a server
that is not on loopback, a dead one; every event checked against the ``openai`` package's GA
models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect

from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine
from tests.conftest import free_port
from tests.server.test_ga_events import Talk
from tests.support.ga_events import ga_problems
from tests.support.mcp_server import serving_http

MCP_RULES = [Rule(r"weather in (?P<city>\w+)", calls=[("weather", {"city": "{city}"})]),
             Rule(r"break it", calls=[("fail", {"reason": "test"})])]


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with serving_http() as url:
        yield url


@pytest.fixture
def talk() -> Iterator[Talk]:
    with LocalServer(engine=ScriptedReplyEngine(rules=MCP_RULES), pace=0.001) as server, \
            connect(server.url, max_size=None) as ws:
        yield Talk(ws)


def _tools(talk: Talk, url: str, **extra: Any) -> dict[str, Any]:
    talk.send(type="session.update", session={"type": "realtime", "output_modalities": ["text"],
                                              "tools": [{"type": "mcp", "server_label": "test",
                                                         "server_url": url, **extra}]})
    return talk.until("mcp_list_tools.completed")


def _no_ga_problems(talk: Talk) -> None:
    problems = [p for e in talk.events for p in ga_problems(e)]
    assert problems == []


def test_tools_are_listed_called_and_answered_in_one_response(talk: Talk, mcp_url: str) -> None:
    _tools(talk, mcp_url, require_approval="never", allowed_tools=["weather", "add"])
    listed = talk.until("conversation.item.done")["item"]
    assert listed["type"] == "mcp_list_tools"
    assert sorted(t["name"] for t in listed["tools"]) == ["add", "weather"]
    talk.say("What is the weather in Oslo?")
    talk.send(type="response.create")
    done = talk.until("response.done")["response"]
    kinds = [o["type"] for o in done["output"]]
    assert kinds == ["mcp_call", "message"]
    call = done["output"][0]
    assert call["output"] == "Sunny and 21 degrees in Oslo"
    assert json.loads(call["arguments"]) == {"city": "Oslo"}
    assert done["output"][1]["content"][0]["text"] == \
        "The tool returned Sunny and 21 degrees in Oslo."
    seen = [e["type"] for e in talk.events]
    for kind in ("mcp_list_tools.in_progress", "response.mcp_call_arguments.delta",
                 "response.mcp_call_arguments.done", "response.mcp_call.in_progress",
                 "response.mcp_call.completed"):
        assert kind in seen
    _no_ga_problems(talk)


def test_an_error_result_fails_the_call_and_the_model_is_told(talk: Talk, mcp_url: str) -> None:
    _tools(talk, mcp_url, require_approval="never")
    talk.say("please break it")
    talk.send(type="response.create")
    done = talk.until("response.done")["response"]
    call = done["output"][0]
    assert call["error"]["type"] == "tool_execution_error"
    assert "failed on purpose: test" in call["error"]["message"]
    assert "response.mcp_call.failed" in [e["type"] for e in talk.events]
    _no_ga_problems(talk)


@pytest.mark.parametrize("approve", [True, False])
def test_approval_requests_wait_for_the_clients_answer(talk: Talk, mcp_url: str,
                                                       approve: bool) -> None:
    _tools(talk, mcp_url, require_approval="always")
    talk.say("What is the weather in Rome?")
    talk.send(type="response.create")
    first = talk.until("response.done")["response"]
    assert [o["type"] for o in first["output"]] == ["mcp_approval_request"]
    request = first["output"][0]
    assert request["name"] == "weather" and json.loads(request["arguments"]) == {"city": "Rome"}
    talk.send(type="conversation.item.create", item={
        "type": "mcp_approval_response", "approval_request_id": request["id"],
        "approve": approve})
    talk.until("conversation.item.done")
    talk.send(type="response.create")
    second = talk.until("response.done")["response"]
    kinds = [o["type"] for o in second["output"]]
    text = second["output"][-1]["content"][0]["text"]
    if approve:
        assert kinds == ["mcp_call", "message"]
        assert second["output"][0]["approval_request_id"] == request["id"]
        assert text == "The tool returned Sunny and 21 degrees in Rome."
    else:
        assert kinds == ["message"]
        assert "denied" in text
    _no_ga_problems(talk)


def test_a_server_off_loopback_is_refused_with_an_error(talk: Talk) -> None:
    talk.send(type="session.update", session={"type": "realtime", "tools": [
        {"type": "mcp", "server_label": "far", "server_url": "https://example.com/mcp"}]})
    talk.until("mcp_list_tools.failed")
    error = talk.until("error")["error"]
    assert error["code"] == "mcp_list_tools_failed" and "loopback" in error["message"]


def test_a_dead_mcp_server_fails_the_listing_not_the_session(talk: Talk) -> None:
    port = free_port()  # nothing listens there
    talk.send(type="session.update", session={"type": "realtime", "tools": [
        {"type": "mcp", "server_label": "gone", "server_url": f"http://127.0.0.1:{port}/mcp"}]})
    talk.until("mcp_list_tools.failed")
    assert talk.until("error")["error"]["code"] == "mcp_list_tools_failed"
    talk.say("hello")
    talk.send(type="response.create")
    assert talk.until("response.done")["response"]["status"] == "completed"
