"""One fixture starts the local server on a free port of 127.0.0.1; sessions connect to it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from rtwidget import RealtimeSession, Reconnect
from rtwidget.protocol.audio import SAMPLE_RATE
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine, ToneSynthesizer, offline_server
from rtwidget.server.server_protocol import ServerProtocol
from rtwidget.server.server_session import ServerOptions

RULES = [
    Rule(r"weather in (?P<city>\w+)", calls=[("get_weather", {"city": "{city}"})]),
    Rule(r"compare (\w+) and (\w+)",
         calls=[("get_weather", {"city": "{0}"}), ("get_weather", {"city": "{1}"})]),
    Rule(r"long story", say=" ".join(f"Sentence number {i} of the story." for i in range(60))),
    Rule(r"drop", say="I will stop talking right about now, sorry.", drop=True),
    Rule(r"report on (?P<topic>\w+)", calls=[("make_report", {"topic": "{topic}"})]),
    Rule(r"still running", say="One moment, let me check that.", on="instructions"),
]

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}

FAST_RETRY = Reconnect(base_delay=0.05, max_delay=0.2, max_attempts=5)

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Call ``check`` until it returns something truthy (returned) without raising
    ``AssertionError``: the barrier for state another thread or process changes with no event
    to wait on. After ``timeout`` seconds the test fails with the last assertion, or saying
    ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            failure = AssertionError(f"{what or 'the condition'} did not happen within "
                                     f"{timeout:g} s (last: {result!r})")
        except AssertionError as exc:
            failure = exc
        if time.monotonic() >= deadline:
            raise failure
        time.sleep(0.02)


@pytest.fixture
def engine() -> ScriptedReplyEngine:
    """The deterministic reply engine, scripted with the rules above."""
    return ScriptedReplyEngine(rules=RULES)


@pytest.fixture
def server(engine: ScriptedReplyEngine) -> Iterator[LocalServer]:
    """A real local Realtime server on 127.0.0.1 (free port), stopped after the test."""
    with LocalServer(engine=engine) as srv:
        yield srv


@pytest.fixture
def session(server: LocalServer) -> Iterator[RealtimeSession]:
    """A session on the local server, text replies, fast reconnects."""
    with RealtimeSession("local", url=server.url, reconnect=FAST_RETRY,
                         output_modalities=["text"]) as s:
        yield s


@pytest.fixture(scope="module")
def voiced_server() -> Iterator[LocalServer]:
    """The fast profile's real voice, ears and VAD (Flite, PocketSphinx, Silero) with the rules
    above for words: what SmolLM2 says at temperature 0 depends on the CPU's kernels (to "tell
    me a long story", a short answer on some machines), so a test of what happens around a
    reply, like a barge-in, scripts the reply."""
    engine = ScriptedReplyEngine(rules=RULES)
    server = offline_server(profile="fast", without=["replies"], engine=engine,
                            engines={"local/scripted": engine}).start_in_thread()
    try:
        yield server
    finally:
        server.stop_in_thread()


class RawClient:
    """A bare WebSocket client for protocol-level tests: send JSON, read events."""

    def __init__(self, url: str) -> None:
        self._connect = connect(url, max_size=None)
        self.ws: ClientConnection = self._connect.__enter__()
        self.seen: list[dict[str, Any]] = []
        created = self.next()
        assert created["type"] == "session.created"

    def send(self, event: Any) -> None:
        self.ws.send(event if isinstance(event, (str, bytes)) else json.dumps(event))

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        self.seen.append(event)
        return event

    def until(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            event = self.next(timeout)
            if event["type"] == kind:
                return event

    def close(self) -> None:
        self._connect.__exit__(None, None, None)


@pytest.fixture
def raw(server: LocalServer) -> Iterator[RawClient]:
    """A bare protocol client connected to the local server."""
    client = RawClient(server.url)
    yield client
    client.close()


def socketless_connection() -> tuple[ServerProtocol, list[dict[str, Any]]]:
    """A local-server connection driven without sockets (``await conn.receive(text)``), with
    the scripted engine and tones; the events it sends land in the list."""
    sent: list[dict[str, Any]] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    options = ServerOptions(engine=ScriptedReplyEngine(), synthesizer=ToneSynthesizer())
    return ServerProtocol(options, send, lambda: None), sent


def utterance(words: str = "hello there how are you today", lead_ms: int = 400,
              tail_ms: int = 900, seed: int = 7) -> bytes:
    """PCM16 24 kHz: quiet room noise, a voiced stretch, quiet again."""
    rng = np.random.default_rng(seed)
    voiced = np.frombuffer(ToneSynthesizer().synthesize(words, None, 1.0), dtype="<i2")
    noise = lambda ms: rng.normal(0, 30, SAMPLE_RATE * ms // 1000)  # noqa: E731
    audio = np.concatenate([noise(lead_ms), voiced + rng.normal(0, 30, voiced.size),
                            noise(tail_ms)])
    return np.clip(audio, -32768, 32767).astype("<i2").tobytes()


def frames(pcm: bytes, ms: int = 20) -> list[bytes]:
    """``pcm`` cut into frames of ``ms`` milliseconds."""
    size = SAMPLE_RATE * 2 * ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


@pytest.fixture(autouse=True)
def _empty_default_registry() -> Iterator[None]:
    """Tests that use ``@rt.tool`` leave the default registry as they found it (empty)."""
    import rtwidget

    rtwidget.tools.clear()
    yield
    rtwidget.tools.clear()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, proc: Any, timeout: float, log: Any = None) -> None:
    """Poll ``url`` until a child server answers; kill it and fail (with its log's tail) if it
    exits or the time runs out."""
    import time
    import urllib.request
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                tail = Path(log).read_text()[-3000:] if log else ""
                raise RuntimeError(f"{proc.args[1:4]} did not start serving {url}\n{tail}") \
                    from None
            time.sleep(0.3)
