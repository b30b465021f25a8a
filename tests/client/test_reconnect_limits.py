"""A server that flaps, and turns too big to send: the session neither redials forever nor wedges
on an event the server will never take. Real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from conftest import eventually
from websockets.asyncio.server import ServerConnection, serve

import rtwidget as rt
from rtwidget import LocalServer, Reconnect

FLAPPY = Reconnect(base_delay=0.01, max_delay=0.05, max_attempts=4, stable_after=5.0)


class FlappingServer:
    """Accepts, confirms the configuration, then closes with 1011 (``close_code``) at once."""

    def __init__(self, close_code: int = 1011, before_update: bool = False) -> None:
        self.close_code, self.before_update = close_code, before_update
        self.handshakes = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._serve(),), daemon=True)

    async def _handle(self, ws: ServerConnection) -> None:
        self.handshakes += 1
        await ws.send(json.dumps({"type": "session.created", "session": {}}))
        if not self.before_update:
            update = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "session.updated",
                                      "session": update.get("session", {})}))
        await ws.close(self.close_code, "internal error")

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/realtime"
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> FlappingServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.mark.parametrize("before_update", [False, True], ids=["after-config", "before-config"])
def test_a_flapping_server_is_given_up_on_instead_of_redialled_forever(
        before_update: bool) -> None:
    with FlappingServer(before_update=before_update) as server:
        try:
            session = rt.RealtimeSession("url", url=server.url, reconnect=FLAPPY,
                                         output_modalities=["text"])
        except rt.ConnectionClosed as exc:  # it never stayed connected long enough to return
            assert before_update and "gave up after 4 reconnect attempts" in str(exc)
        else:
            eventually(lambda: session.aio.closed, timeout=30, what="giving up")
            closed = [e for e in session.conversation.log if e.type == "rtwidget.closed"]
            assert "gave up after 4 reconnect attempts" in str(closed[-1].payload["reason"])
            session.close()
        assert server.handshakes == 1 + FLAPPY.max_attempts


def test_a_first_connection_that_drops_at_once_is_redialled_not_raised() -> None:
    # the constructor returns once connected and configured, even if that connection is gone
    # again by the time it looks: the session is redialling, as after any drop
    with FlappingServer() as server:
        for _ in range(3):
            session = rt.RealtimeSession("url", url=server.url, reconnect=FLAPPY,
                                         output_modalities=["text"])
            session.close()


@pytest.fixture
def small_server() -> Iterator[LocalServer]:
    """A local server that takes messages of 1 MiB at most (smaller than the client's limit)."""
    with LocalServer(max_message_bytes=256 * 1024) as server:
        yield server


def test_an_event_too_big_for_any_server_is_refused_at_the_call(server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=server.url, output_modalities=["text"]) as session:
        for big in ("x" * (16 * 1024 * 1024), "é" * (8 * 1024 * 1024)):
            with pytest.raises(rt.InvalidInput, match="15 MiB"):
                session.say(big)
        with pytest.raises(rt.InvalidInput, match="15 MiB"):
            session.send_audio_item(bytes(16 * 1024 * 1024))
        assert session.aio.reconnects == 0  # nothing was sent that a server closed over
        assert "Still here" in session.ask("Still here?")


def test_an_event_the_server_closed_the_connection_over_is_not_sent_again(
        small_server: LocalServer) -> None:
    with rt.RealtimeSession("local", url=small_server.url, output_modalities=["text"],
                            reconnect=Reconnect(base_delay=0.01, max_delay=0.05)) as session:
        reconnected = session.expect("rtwidget.reconnected", timeout=30)
        session.say("y" * (2 * 1024 * 1024))  # under 15 MiB: this server refuses it
        reconnected.wait()
        assert "Ping" in session.ask("Ping", timeout=30)
        problems = session.conversation.problems
        assert any("over a message too big (code 1009) after the conversation.item.create"
                   in p and "not sent again" in p for p in problems), problems
        assert not any("a server event was larger" in p for p in problems), problems
        assert session.aio.reconnects == 1  # once, not again and again
