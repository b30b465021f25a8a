"""A stand-in for Inworld's Realtime API where the local server behaves differently: a WebSocket
proxy on 127.0.0.1 in front of a real :class:`LocalServer` that reshapes what the server says
the way Inworld's documentation and examples show it.

- ``response.function_call_arguments.done`` without ``name`` (pipecat's Inworld service: the
  name arrives on the ``function_call`` item only);
- ``error`` events with ``"event_id": null`` (the error example in Inworld's Realtime WebSocket
  API reference);
- back-channel audio (``response.backchannel.audio.delta``/``.done``, Inworld's back-channel
  guide and its examples' decoders) while the user's audio comes in;
- the handshake's ``Authorization`` header checked by a predicate (Basic key or Bearer JWT).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

BACKCHANNEL_PCM = (np.sin(np.arange(2400) / 5) * 8000).astype("<i2").tobytes()  # 100 ms


class InworldLike:
    """Run with ``with InworldLike(upstream_url) as proxy:``; connect to ``proxy.url``."""

    def __init__(self, upstream: str, *, authorized: Callable[[str], bool] = lambda _: True,
                 backchannel: bool = False) -> None:
        self.upstream = upstream
        self.authorized = authorized
        self.backchannel = backchannel
        self.auth_headers: list[str] = []
        self.received: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()

    def __enter__(self) -> InworldLike:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/api/v1/realtime/session"

    def drop_all(self) -> None:
        """Close every client connection with 1011, as a failing server would."""
        async def drop() -> None:
            for ws in list(self._clients):
                await ws.close(1011, "gone")
        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)

    async def _start(self) -> Server:
        return await serve(self._relay, "127.0.0.1", 0, process_request=self._check)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _check(self, _: ServerConnection, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        self.auth_headers.append(header)
        if self.authorized(header):
            return None
        return Response(401, "Unauthorized", Headers(), b"bad credentials\n")

    async def _relay(self, client: ServerConnection) -> None:
        self._clients.add(client)
        try:
            async with connect(self.upstream, max_size=None) as upstream:
                down = asyncio.ensure_future(self._down(upstream, client))
                try:
                    async for raw in client:
                        event = json.loads(raw)
                        self.received.append(event)
                        await upstream.send(raw)
                        if self.backchannel and event.get("type") == "input_audio_buffer.append":
                            self.backchannel = False  # once per connection is enough
                            await self._send_backchannel(client)
                finally:
                    down.cancel()
                    with contextlib.suppress(BaseException):
                        await down
        finally:
            self._clients.discard(client)

    async def _down(self, upstream: Any, client: ServerConnection) -> None:
        async for raw in upstream:
            await client.send(json.dumps(self.reshape(json.loads(raw))))

    @staticmethod
    def reshape(event: dict[str, Any]) -> dict[str, Any]:
        """A local server event as Inworld's documentation shows it."""
        if event.get("type") == "response.function_call_arguments.done":
            event.pop("name", None)
        if event.get("type") == "error" and isinstance(event.get("error"), dict):
            event["error"]["event_id"] = None
        return event

    async def _send_backchannel(self, client: ServerConnection) -> None:
        half = len(BACKCHANNEL_PCM) // 2
        for chunk in (BACKCHANNEL_PCM[:half], BACKCHANNEL_PCM[half:]):
            await client.send(json.dumps({
                "type": "response.backchannel.audio.delta", "event_id": "evt_bc",
                "backchannel_id": "bc_1", "delta": base64.b64encode(chunk).decode()}))
        await client.send(json.dumps({"type": "response.backchannel.audio.done",
                                      "event_id": "evt_bc2", "backchannel_id": "bc_1",
                                      "phrase": "uh-huh"}))
