"""A TCP proxy on 127.0.0.1 that injects network faults between a client and a server.

It forwards bytes both ways and, on command: resets every connection (RST), stalls the open ones (no
bytes either way, so pings go unanswered), cuts the next server message halfway, or answers
the next handshakes itself with an HTTP status (401, 429 + Retry-After, 503...).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stalled: bool = False


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_port``; see the module docstring."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self.pairs: list[_Pair] = []
        self._refusals: list[tuple[int, dict[str, str]]] = []
        self._cut_next = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    def url(self, path: str = "/v1/realtime") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._reset()
        await self._server.wait_closed()

    # --- faults ---------------------------------------------------------------------------------

    def refuse(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` handshakes with HTTP ``status``."""
        self._refusals += [(status, headers or {})] * times

    def reset(self) -> None:
        """Abort every open connection with a TCP reset, both sides."""
        self._call(self._reset())

    def stall(self) -> None:
        """Stop forwarding on the connections open now, for good; new ones flow."""
        for pair in list(self.pairs):
            pair.stalled = True

    def cut_next_message(self) -> None:
        """Forward only half of the next bytes the server sends, then drop the connection."""
        self._cut_next = True

    # --- plumbing -------------------------------------------------------------------------------

    async def _reset(self) -> None:
        for pair in self.pairs:
            for writer in (pair.client, pair.upstream):
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError):  # already closed by the other side
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                writer.transport.abort()
            for task in pair.tasks:
                task.cancel()
        self.pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusals:
            status, headers = self._refusals.pop(0)
            await reader.read(65536)  # the request (or a TLS hello: plain HTTP answers that too)
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"HTTP/1.1 {status} Fault\r\nContent-Length: 0\r\n{extra}"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pair = _Pair(writer, up_writer)
        self.pairs.append(pair)
        pair.tasks = [asyncio.ensure_future(self._pump(reader, up_writer, pair, False)),
                      asyncio.ensure_future(self._pump(up_reader, writer, pair, True))]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: _Pair, from_server: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if pair.stalled:
                    await asyncio.Event().wait()  # nothing more either way, pings included
                if from_server and self._cut_next:
                    self._cut_next = False
                    writer.write(data[: max(1, len(data) // 2)])
                    await writer.drain()
                    pair.client.transport.abort()
                    pair.upstream.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()
