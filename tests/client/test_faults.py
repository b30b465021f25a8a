"""Network faults between the session and the server, injected on 127.0.0.1: resets, each close
code class, stalls, half-written frames, refused handshakes, TLS mismatches, oversized events.
Each ends in a reconnect that keeps the conversation, or in one clear final error; nothing is
left running."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST_RETRY, RULES, eventually
from support.faults import FaultProxy

from rtwidget import AuthenticationError, RealtimeSession, ServerRejected
from rtwidget.server import LocalServer, ScriptedReplyEngine

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def paced() -> Iterator[LocalServer]:
    """A server whose replies take a while (10 ms per word), so faults land mid-response."""
    with LocalServer(engine=ScriptedReplyEngine(rules=RULES), pace=0.01) as srv:
        yield srv


@pytest.fixture
def proxy(paced: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(paced.port) as p:
        yield p


def session_to(url: str, **options: object) -> RealtimeSession:
    return RealtimeSession("local", url=url, reconnect=FAST_RETRY, output_modalities=["text"],
                           **options)  # type: ignore[arg-type]


def statuses(s: RealtimeSession) -> list[str]:
    return [r.status for r in s.conversation.responses.values()]


def cut_mid_reply(s: RealtimeSession, fault: object) -> None:
    """Start a long reply, inject ``fault`` once it streams, wait for the reconnect."""
    streaming = s.expect("response.output_text.delta")
    s.say("long story")
    streaming.wait()
    reconnected = s.expect("rtwidget.reconnected", timeout=30)
    fault()  # type: ignore[operator]
    reconnected.wait()


def test_a_reset_mid_response_reconnects_with_config_and_history(
        proxy: FaultProxy, paced: LocalServer) -> None:
    with session_to(proxy.url(), instructions="Be brief.") as s:
        assert s.ask("hello") == "You said: hello"
        cut_mid_reply(s, proxy.reset)
        assert statuses(s) == ["completed", "failed"]  # the cut reply is marked, not lost
        assert s.ask("again") == "You said: again"
        assert s.conversation.session["instructions"] == "Be brief."  # config sent again
        server_side = next(iter(paced.connections))
        restored = [i.data.get("role") for i in server_side.items]
        assert restored[:2] == ["user", "assistant"]  # history re-created on the new connection
        assert list(s.df["role"]) == ["user", "assistant", "user", "assistant", "user",
                                      "assistant"]
        assert s.aio.reconnects == 1 and proxy.accepted == 2


@pytest.mark.parametrize("code, outcome", [
    (1000, "retry"), (1001, "retry"), (1011, "retry"), (1012, "retry"), (1013, "retry"),
    (4000, "retry"), (1008, AuthenticationError), (4001, AuthenticationError),
    (4003, AuthenticationError), (1002, ServerRejected), (1003, ServerRejected),
    (1007, ServerRejected),
])
def test_each_close_code_class_gets_the_right_ending(paced: LocalServer, code: int,
                                                      outcome: object) -> None:
    with session_to(paced.url) as s:
        s.ask("hello")
        if outcome == "retry":
            reconnected = s.expect("rtwidget.reconnected", timeout=30)
            assert paced.close_connections(code, "going") == 1
            reconnected.wait()
            assert s.ask("still here") == "You said: still here"
            assert len(s.df) == 4
            return
        closed = s.expect("rtwidget.closed", timeout=30)
        paced.close_connections(code, "refused")
        assert str(code) in closed.wait()["reason"]
        assert isinstance(s.aio._fatal, outcome)  # type: ignore[arg-type]
        with pytest.raises(outcome):  # type: ignore[call-overload]
            s.ask("anyone?")
        assert len(s.df) == 2 and s.conversation.last_response().status == "completed"


def test_a_stalled_connection_is_noticed_by_its_pings_and_replaced(proxy: FaultProxy) -> None:
    with session_to(proxy.url(), ping_interval=0.2, ping_timeout=0.4) as s:
        s.ask("hello")
        reconnected = s.expect("rtwidget.reconnected", timeout=30)
        proxy.stall()
        reconnected.wait()
        assert s.ask("after the stall") == "You said: after the stall"
        reasons = [e.payload.get("reason") for e in s.conversation.log
                   if e.type == "rtwidget.reconnecting"]
        assert reasons and all(reasons)


def test_a_half_written_frame_ends_in_a_reconnect(proxy: FaultProxy) -> None:
    with session_to(proxy.url()) as s:
        s.ask("hello")
        cut_mid_reply(s, proxy.cut_next_message)
        assert statuses(s) == ["completed", "failed"]
        assert s.ask("again") == "You said: again"


@pytest.mark.parametrize("status, times, headers, outcome", [
    (401, 1, {}, AuthenticationError),
    (403, 1, {}, AuthenticationError),
    (400, 1, {}, ServerRejected),
    (404, 1, {}, ServerRejected),
    (429, 1, {"Retry-After": "1"}, "connects"),
    (500, 2, {}, "connects"),
    (502, 1, {}, "connects"),
    (503, 3, {"Retry-After": "0"}, "connects"),
])
def test_refused_handshakes_are_retried_or_final_by_status(
        proxy: FaultProxy, status: int, times: int, headers: dict[str, str],
        outcome: object) -> None:
    proxy.refuse(status, times, headers)
    started = time.monotonic()
    if outcome == "connects":
        with session_to(proxy.url()) as s:
            assert s.ask("made it") == "You said: made it"
        assert proxy.accepted == times + 1
        if "Retry-After" in headers:
            assert time.monotonic() - started >= float(headers["Retry-After"]) * 0.9
        return
    with pytest.raises(outcome) as caught:  # type: ignore[call-overload]
        session_to(proxy.url())
    assert str(status) in str(caught.value)
    assert proxy.accepted == 1  # a final answer is not retried


def test_tls_to_a_plain_http_server_fails_at_once_and_says_why(proxy: FaultProxy) -> None:
    proxy.refuse(400)  # a plain HTTP server answers the TLS hello with text
    with pytest.raises(ServerRejected, match="TLS handshake failed"):
        session_to(proxy.url().replace("ws://", "wss://"))
    assert proxy.accepted == 1  # one attempt, not ten with backoff


@pytest.fixture
def self_signed_tls(tmp_path: Path) -> Iterator[tuple[int, list[int]]]:
    """A TLS server on 127.0.0.1 with a self-signed certificate nobody trusts."""
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    accepted: list[int] = []

    def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(accept, "127.0.0.1", 0, ssl=context)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield server.sockets[0].getsockname()[1], accepted
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_a_certificate_that_does_not_verify_is_final(
        self_signed_tls: tuple[int, list[int]]) -> None:
    port, attempts = self_signed_tls
    with pytest.raises(ServerRejected, match="certificate did not verify"):
        session_to(f"wss://127.0.0.1:{port}/v1/realtime")
    assert len(attempts) <= 1  # not retried (the handshake may fail before it is accepted)


def test_an_oversized_server_event_costs_a_reconnect_not_the_session(paced: LocalServer
                                                                     ) -> None:
    with RealtimeSession("local", url=paced.url, reconnect=FAST_RETRY,
                         max_message_bytes=5000) as s:  # smaller than an audio delta
        reconnected = s.expect("rtwidget.reconnected", timeout=30)
        s.say("long story")
        reconnected.wait()
        assert any("larger than max_message_bytes" in p for p in s.conversation.problems)
        s.update(output_modalities=["text"])
        assert s.ask("short now") == "You said: short now"
        assert s.df["role"].tolist()[-2:] == ["user", "assistant"]


def _server_tasks(server: LocalServer) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    assert server._loop is not None
    return asyncio.run_coroutine_threadsafe(count(), server._loop).result(5)


def _resources() -> tuple[int, int]:
    gc.collect()
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def test_faults_leave_no_thread_task_or_socket_behind(proxy: FaultProxy,
                                                      paced: LocalServer) -> None:
    def one_life() -> None:
        with session_to(proxy.url(), ping_interval=0.2, ping_timeout=0.4) as s:
            s.ask("hello")
            cut_mid_reply(s, proxy.reset)
            cut_mid_reply(s, proxy.cut_next_message)
            reconnected = s.expect("rtwidget.reconnected", timeout=30)
            proxy.stall()
            reconnected.wait()
            s.ask("bye")
        proxy.reset()  # the proxy's own hold on the stalled connection (it is in this process)

    one_life()  # the first life loads modules and warms pools; count from the second
    eventually(lambda: not paced.connections, 10, "the server closing the first life's socket")
    before, tasks_before = _resources(), _server_tasks(paced)
    for _ in range(3):
        one_life()

    def released() -> bool:
        assert _resources() == before  # threads, open file descriptors (sockets included)
        assert not paced.connections and _server_tasks(paced) == tasks_before
        return True

    eventually(released, 10)
