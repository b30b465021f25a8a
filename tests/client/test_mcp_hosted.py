"""A session with a ``type: "mcp"`` tool through the local server (which runs the MCP server's
tools itself, against a real MCP server process): approval requests answered by ``approve=``
(a function, or True/False), the MCP rows in ``df``, the headers' secret kept out of df, the
event log, the recording and reprs, the recording loaded and replayed, and providers whose docs
do not list MCP tools refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import rtwidget as rt
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine
from tests.conftest import eventually
from tests.support.mcp_server import serving_http

SECRET = "s3cr3t-mcp-token-0123456789"
RULES = [Rule(r"weather in (?P<city>\w+)", calls=[("weather", {"city": "{city}"})])]


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with serving_http() as url:
        yield url


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES)) as srv:
        yield srv


def _mcp_tool(url: str, **extra: object) -> dict[str, object]:
    return {"type": "mcp", "server_label": "tests", "server_url": url,
            "headers": {"Authorization": f"Bearer {SECRET}"}, **extra}


@pytest.mark.parametrize("approve", [True, False])
def test_approval_requests_are_answered_by_the_callback(server: LocalServer, mcp_url: str,
                                                        tmp_path: Path, approve: bool) -> None:
    asked = []

    def decide(request: rt.Item) -> bool:
        asked.append((request.server_label, request.name, json.loads(request.arguments)))
        return approve

    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"],
                            tools=[_mcp_tool(mcp_url, require_approval="always")],
                            approve=decide, record=tmp_path / "rec") as s:
        eventually(lambda: any(i.type == "mcp_list_tools" and i.status == "completed"
                               for i in s.conversation), what="the listing")
        s.say("What is the weather in Oslo?")
        final = eventually(lambda: [i for i in s.conversation if i.type == "message"
                                    and i.role == "assistant" and i.status == "completed"],
                           what="the reply after the answer")
        df = s.df
        events = s.aio.conversation.log
        text = repr(s) + repr(s.options) + repr(s.tools)
    assert asked == [("tests", "weather", {"city": "Oslo"})]
    kinds = list(df["type"])
    assert kinds[:3] == ["mcp_list_tools", "message", "mcp_approval_request"]
    assert "mcp_approval_response" in kinds
    answer = df[df["type"] == "mcp_approval_response"].iloc[0]
    assert answer["text"] == ("approved" if approve else "denied")
    if approve:
        call = df[df["type"] == "mcp_call"].iloc[0]
        assert (call["mcp_server"], call["tool_name"], call["output"]) == (
            "tests", "weather", "Sunny and 21 degrees in Oslo")
        assert final[0].text == "The tool returned Sunny and 21 degrees in Oslo."
    else:
        assert "mcp_call" not in kinds
        assert "denied" in final[0].text
    listing = df[df["type"] == "mcp_list_tools"].iloc[0]
    assert "weather" in listing["text"] and listing["mcp_server"] == "tests"
    # the secret is nowhere rtwidget writes
    assert SECRET not in df.to_csv() + text
    assert SECRET not in json.dumps([e.payload for e in events], default=str)
    for file in (tmp_path / "rec").iterdir():
        assert SECRET.encode() not in file.read_bytes(), file.name
    recording = rt.load_recording(tmp_path / "rec")
    assert list(recording.df["type"]) == kinds
    rerun = recording.replay(url=server.url, provider="local", tools=[
        _mcp_tool(mcp_url, require_approval="never")], speed=float("inf"))
    try:
        assert "mcp_call" in list(rerun.df["type"])
    finally:
        rerun.close()


def test_inworld_is_refused_mcp_tools_before_anything_is_sent(mcp_url: str) -> None:
    with pytest.raises(rt.ConfigError, match="does not document MCP tools"):
        rt.RealtimeSession("inworld", api_key="inworld-test-key-8c1f", tools=[_mcp_tool(mcp_url)],
                           connect=False)


def test_an_mcp_tool_without_a_url_is_refused() -> None:
    with pytest.raises(rt.ToolError, match="server_url"):
        rt.ToolSet([{"type": "mcp", "server_label": "x"}])
