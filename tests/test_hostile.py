"""Hostile servers, hostile clients and careless code, injected on 127.0.0.1. Each ends in the
guaranteed behaviour: the session goes on, reconnects, or fails at once with a clear error;
no secret leaves the process; the local server stays responsive and bounded."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_RETRY, RULES, RawClient, eventually
from support.faults import FaultProxy
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

import rtwidget as rt
from rtwidget import AuthenticationError, RealtimeSession
from rtwidget.client.options import NO_RECONNECT
from rtwidget.protocol import client_events
from rtwidget.server import LocalServer, Rule, ScriptedReplyEngine
from rtwidget.server.engines import ToneSynthesizer
from rtwidget.server.server_protocol import ServerProtocol
from rtwidget.server.server_session import ServerOptions

pytestmark = pytest.mark.timeout(120)


# --- helpers --------------------------------------------------------------------------------------


class HostileServer:
    """A WebSocket server on 127.0.0.1 that runs ``handler(ws)`` for each connection (and, if
    given, answers handshakes with ``process_request``)."""

    def __init__(self, handler: Callable[[ServerConnection], None],
                 process_request: Any = None) -> None:
        self.server: Server = serve(handler, "127.0.0.1", 0, process_request=process_request,
                                    logger=logging.getLogger("hostile"))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/v1/realtime"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(5)


def inject(server: LocalServer, message: dict[str, Any] | str) -> None:
    """Send a raw message to every client of ``server``, on the server's own connection."""
    text = message if isinstance(message, str) else json.dumps(message)
    assert server._loop is not None

    async def send_all() -> None:
        for conn in list(server.connections):
            await conn._session._send(text)

    asyncio.run_coroutine_threadsafe(send_all(), server._loop).result(10)


def session_to(url: str, **options: Any) -> RealtimeSession:
    return RealtimeSession("local", url=url, reconnect=FAST_RETRY, output_modalities=["text"],
                           **options)


def deeply_nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.fixture
def paced() -> Iterator[LocalServer]:
    """A server whose replies take a while (10 ms per word), so faults land mid-response."""
    rules = [*RULES, Rule(r"broken", say="half a \ud800 pair")]
    with LocalServer(engine=ScriptedReplyEngine(rules=rules), pace=0.01) as srv:
        yield srv


# --- 1. exceptions inside the session's loop ------------------------------------------------------


def test_a_server_message_nested_too_deeply_is_a_problem_and_the_session_goes_on(
        paced: LocalServer) -> None:
    with session_to(paced.url) as s:
        inject(paced, "[" * 100_000 + "]" * 100_000)
        assert s.ask("hello", timeout=10) == "You said: hello"
        assert any("nested too deeply" in p for p in s.conversation.problems)


def test_a_deep_message_before_session_created_does_not_block_the_constructor() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send("[" * 100_000 + "]" * 100_000)
        ws.send(json.dumps({"type": "session.created", "event_id": "e1",
                            "session": {"id": "sess_1", "model": "m"}}))
        with contextlib.suppress(Exception):
            ws.recv(timeout=30)

    with HostileServer(handler) as hostile, RealtimeSession(
            "url", url=hostile.url, reconnect=NO_RECONNECT, open_timeout=5) as s:
        assert s.connected
        assert any("nested too deeply" in p for p in s.conversation.problems)


def test_an_event_that_cannot_be_encoded_is_refused_at_the_call(session: RealtimeSession) -> None:
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        session.update(extra={"when": dt.datetime.now()})
    assert "when" not in json.dumps(session.config)  # the configuration did not take it
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        session.send({"type": "response.create", "response": {"metadata": {"at": object()}}})
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        session.create_response(metadata={"at": dt.date.today()})  # type: ignore[dict-item]
    assert session.ask("still there?", timeout=10) == "You said: still there?"
    assert session.update(instructions="Be brief.")["instructions"] == "Be brief."


def test_a_configuration_that_cannot_be_encoded_fails_the_constructor_at_once(
        server: LocalServer) -> None:
    threads = threading.active_count()
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        RealtimeSession("local", url=server.url, extra={"when": dt.datetime.now()})
    deep = {"type": "function", "name": "deep", "description": "d",
            "parameters": deeply_nested(900)}
    with pytest.raises(ValueError, match="nested too deeply"):
        RealtimeSession("local", url=server.url, tools=[deep], open_timeout=5)
    eventually(lambda: threading.active_count() <= threads, 5, "no session thread left behind")


# --- 2. tools that raise SystemExit / KeyboardInterrupt -------------------------------------------


def test_a_tool_that_exits_or_is_interrupted_becomes_an_error_result(server: LocalServer) -> None:
    def get_weather(city: str) -> dict[str, Any]:
        """Current weather in a city."""
        parser = argparse.ArgumentParser(prog="weather", add_help=False)
        parser.parse_args(["--no-such-flag", city])  # argparse calls sys.exit(2)
        return {}

    async def get_forecast(city: str) -> dict[str, Any]:
        """Tomorrow's weather in a city."""
        raise KeyboardInterrupt

    with session_to(server.url, tools=[get_weather]) as s:
        reply = s.ask("weather in Paris", timeout=10)
        assert "SystemExit" in reply
        (result,) = s.tool_results.values()
        assert result.error_type == "exception" and "SystemExit(2)" in (result.error or "")
        s.update(tools=[rt.tool(get_forecast, name="get_weather")])
        assert "KeyboardInterrupt" in s.ask("weather in Rome", timeout=10)
        assert s.ask("hello", timeout=10) == "You said: hello"


def test_a_callers_timeout_holds_while_the_loop_is_stuck(session: RealtimeSession) -> None:
    release = threading.Event()
    blocking = threading.Event()

    def stuck(_: dict[str, Any]) -> None:  # careless code: blocks the session's loop
        blocking.set()
        release.wait(30)
        blocking.clear()

    off = session.on("response.created", stuck)
    try:
        with pytest.raises(TimeoutError):
            session.ask("hello", timeout=1)
        assert blocking.is_set()  # the caller got its answer while the loop was still stuck
    finally:
        release.set()
        off()
    assert session.ask("again", timeout=10) == "You said: again"


def test_a_call_pending_when_the_loop_stops_raises_at_once(paced: LocalServer) -> None:
    s = session_to(paced.url)
    try:
        streaming = s.expect("response.output_text.delta")
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(s.ask, "long story", 60)
            streaming.wait()
            s._loop.call_soon_threadsafe(s._loop.stop)  # the loop is gone mid-call
            with pytest.raises(rt.ConnectionClosed, match="loop has stopped"):
                reply.result(30)
    finally:
        s.close()  # and close() still cleans up, on this thread
    assert not s.aio.connected and s.aio._task is not None and s.aio._task.done()


# --- 3. web pages and foreign host names ----------------------------------------------------------


def handshake_status(port: int, host: str, origin: str | None = None) -> int:
    """The HTTP status a raw WebSocket handshake with these headers gets."""
    lines = ["GET /v1/realtime HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_web_pages_from_other_sites_and_foreign_host_names_are_refused() -> None:
    token = "tok-" + os.urandom(6).hex()
    with LocalServer(token=token, allowed_origins=["https://hub.example.org"]) as srv:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{srv.url}?token={token}", origin="https://evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        for host in ("evil.example", f"127.0.0.1.evil.example:{srv.port}", "127.evil.example"):
            assert handshake_status(srv.port, host) == 403, host
        for origin in ("null", "http://127.0.0.1.evil.example", "file://"):
            assert handshake_status(srv.port, f"127.0.0.1:{srv.port}", origin) == 403, origin
        # the notebook's own origins, an allowed one, and clients that send no Origin
        for origin in ("http://localhost:8888", "http://127.0.0.1:8888", "http://[::1]:8888",
                       "https://hub.example.org"):
            with connect(f"{srv.url}?token={token}", origin=origin) as ws:  # type: ignore[arg-type]
                assert json.loads(ws.recv(10))["type"] == "session.created"
        assert handshake_status(srv.port, f"localhost:{srv.port}") == 401  # no token: auth next
        with RealtimeSession("local", url=srv.url, api_key=token,
                             output_modalities=["text"]) as s:
            assert s.ask("hi", timeout=10) == "You said: hi"


def test_one_client_cannot_take_every_connection() -> None:
    with LocalServer(max_connections=4, max_connections_per_client=2) as srv:
        page = "http://localhost:8888"
        with contextlib.ExitStack() as stack:
            for _ in range(2):
                stack.enter_context(connect(srv.url, origin=page))  # type: ignore[arg-type]
            with pytest.raises(InvalidStatus) as refused:
                connect(srv.url, origin=page)  # type: ignore[arg-type]
            assert refused.value.response.status_code == HTTPStatus.TOO_MANY_REQUESTS
            client = RawClient(srv.url)  # another client still gets in
            client.close()


# --- 4. bounded sizes on the server ---------------------------------------------------------------


def test_sizes_a_client_sets_are_bounded(raw: RawClient) -> None:
    raw.send({"type": "session.update", "event_id": "e1", "session": {"audio": {"input": {
        "turn_detection": {"type": "server_vad", "prefix_padding_ms": 10**9}}}}})
    error = raw.until("error")["error"]
    assert error["param"] == "session.audio.input.turn_detection.prefix_padding_ms"
    assert error["event_id"] == "e1"
    raw.send({"type": "session.update", "event_id": "e2", "session": {
        "instructions": "x" * 300_000}})
    assert raw.until("error")["error"]["param"] == "session.instructions"
    raw.send({"type": "session.update", "session": {"instructions": "ok"}})
    assert raw.until("session.updated")["session"]["instructions"] == "ok"


def test_out_of_band_responses_are_capped(paced: LocalServer) -> None:
    client = RawClient(paced.url)
    try:
        question = [client_events.text_message("long story", "user", "q1")]
        for i in range(20):
            client.send({"type": "response.create", "event_id": f"oob{i}", "response": {
                "conversation": "none", "input": question, "output_modalities": ["text"]}})
        refused = created = 0
        while refused + created < 20:
            event = client.next()
            if event["type"] == "response.created":
                created += 1
            elif event["type"] == "error":
                assert event["error"]["code"] == "too_many_active_responses"
                refused += 1
        assert created == ServerOptions.max_out_of_band and refused == 20 - created
        (conn,) = paced.connections
        assert len(conn.responses.out_of_band) <= ServerOptions.max_out_of_band
    finally:
        client.close()


# --- 5. a turn in flight when the server dies -----------------------------------------------------


def test_a_turn_sent_into_a_frozen_connection_is_sent_again_after_the_reconnect(
        paced: LocalServer) -> None:
    with FaultProxy(paced.port) as proxy, session_to(proxy.url()) as s:
        assert s.ask("hello", timeout=10) == "You said: hello"
        proxy.stall()  # the server stops answering; what is sent now is never processed
        reconnected = s.expect("rtwidget.reconnected", timeout=30)
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(s.ask, "are you there", 30)
            eventually(lambda: any(e.direction == "out" and e.type == "response.create"
                                   for e in list(s.conversation.log)[-3:]), 10,
                       "the turn being written")
            proxy.reset()  # the frozen connection dies with the turn in it
            reconnected.wait()
            assert reply.result(40) == "You said: are you there"
        texts = list(s.df["text"])
        assert texts.count("are you there") == 1 and texts[-1] == "You said: are you there"


# --- 6. secrets -----------------------------------------------------------------------------------


def test_secrets_are_masked_by_name_and_by_value_wherever_text_leaves(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    secret = {name: f"{name}-{os.urandom(8).hex()}" for name in (
        "key", "token", "access_key", "sig", "jwt", "pass", "code", "auth", "apim", "goog")}
    query = "&".join(f"{n}={secret[n]}" for n in ("token", "access_key", "sig", "jwt", "pass",
                                                   "code"))
    headers = {"X-Auth-Token": secret["auth"], "Ocp-Apim-Subscription-Key": secret["apim"],
               "X-Goog-Api-Key": secret["goog"]}

    def echo_the_key(connection: ServerConnection, request: Any) -> Any:
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")
        response.headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{secret["key"]} is not valid"')
        return response

    caplog.set_level(logging.DEBUG)
    with HostileServer(lambda ws: None, echo_the_key) as hostile:
        url = f"{hostile.url}?model=m&{query}"
        endpoint = rt.resolve("url", url=url, api_key=secret["key"], headers=headers)
        with pytest.raises(AuthenticationError) as refused:
            RealtimeSession(endpoint=endpoint, reconnect=NO_RECONNECT, record=tmp_path / "rec")
    assert "WWW-Authenticate" in caplog.text and "X-Goog-Api-Key" in caplog.text
    assert "model=m" in endpoint.describe()
    with LocalServer() as srv, RealtimeSession("local", url=srv.url, headers=headers,
                                               output_modalities=["text"]):
        kept = repr(srv.handshakes)  # what the local server keeps of a handshake
    ours = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if r.name != "hostile")  # the hostile server's own log is not ours
    shown = [repr(endpoint), endpoint.describe(), str(endpoint), ours, kept,
             str(refused.value), (tmp_path / "rec" / "meta.json").read_text()]
    for text in shown:
        for name, value in secret.items():
            assert value not in text, (name, text[:200])


# --- 7. lone surrogates from the wire -------------------------------------------------------------


def test_a_lone_surrogate_from_the_wire_is_made_safe_where_it_enters(
        paced: LocalServer, tmp_path: Path) -> None:
    with session_to(paced.url) as s:
        assert s.ask("broken", timeout=10) == "half a \ufffd pair"
        assert list(s.df["text"])[-1] == "half a \ufffd pair"
        for name in ("talk.parquet", "talk.json", "talk.jsonl"):
            assert s.export(tmp_path / name).stat().st_size > 0
        assert s.events.shape[0] > 0


# --- 8. ask() waits for the response it created ---------------------------------------------------


def test_ask_takes_its_own_response_not_an_out_of_band_or_foreign_one(
        paced: LocalServer) -> None:
    with session_to(paced.url) as s:
        streaming = s.expect("response.output_text.delta")
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(s.ask, "long story", 60)
            streaming.wait()
            inject(paced, {"type": "response.done", "event_id": "e_foreign", "response": {
                "id": "resp_foreign", "object": "realtime.response", "status": "completed",
                "output": []}})
            side = s.expect(lambda ev: ev.get("type") == "response.done"
                            and ev["response"].get("conversation_id") is None
                            and ev["response"]["id"] != "resp_foreign")
            s.create_response(conversation="none", output_modalities=["text"],
                              input=[client_events.text_message("hello", "user")])
            assert side.wait()["response"]["status"] == "completed"  # it ended first
            text = reply.result(60)
        assert text.startswith("Sentence number 0 of the story.")


# --- 9. item lookups on the server ----------------------------------------------------------------


def test_creating_items_costs_the_same_at_10000_items_as_at_none() -> None:
    async def fill() -> list[float]:
        async def send(text: str) -> None:
            return None

        conn = ServerProtocol(ServerOptions(engine=ScriptedReplyEngine(),
                                            synthesizer=ToneSynthesizer()), send, lambda: None)
        batches = []
        for batch in range(20):
            started = time.process_time()
            for i in range(500):
                item = client_events.text_message(f"message {batch}-{i}", "user",
                                                  f"item_{batch}_{i}")
                await conn.receive(json.dumps(client_events.item_create(item)))
            batches.append(time.process_time() - started)
        assert len(conn.items) == 10_000
        await conn.receive(json.dumps(client_events.item_delete("item_0_3")))
        await conn.receive(json.dumps(client_events.item_retrieve("item_19_499")))
        assert len(conn.items) == 9_999
        return batches

    batches = asyncio.run(fill())
    first, last = min(batches[1:4]), min(batches[-3:])
    assert last < 3 * first, batches  # linear lookups made the last batches 8x slower
