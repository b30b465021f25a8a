"""The local Realtime server: a real WebSocket server on 127.0.0.1 speaking the protocol.

Sessions with no API key configured start it in a supervised child process of their own
(:func:`rtwidget.local_server`), where a crash in a native engine costs a restart, never the
notebook's kernel. Tests and code that embed it start it in-process instead (``await
server.start()`` on your loop, or ``server.start_in_thread()``), or from the command line
(``python -m rtwidget.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..aio.deadlines import within
from ..protocol.errors import ConfigError, UsageError
from ..protocol.redact import mask_secrets, wire_logger
from .engines import ReplyEngine, ScriptedReplyEngine, Synthesizer, ToneSynthesizer, Transcriber
from .server_protocol import ServerProtocol
from .server_session import ServerOptions
from .text_to_speech import default_voice_name
from .tls import Certificate, loopback_certificate
from .vad import VADS, EnergyVad, Vad, VadSettings

log = logging.getLogger("rtwidget.server")

PATHS = ("/", "/v1/realtime", "/api/v1/realtime/session", "/openai/realtime",
         "/openai/v1/realtime")


@dataclass(frozen=True)
class Handshake:
    """What a client sent when it connected (for tests of provider URLs and auth schemes).
    Credentials are reduced to their scheme; the secret itself is never kept."""

    path: str
    query: dict[str, list[str]]
    auth_scheme: str | None
    header_names: frozenset[str]
    headers: dict[str, str] = field(default_factory=dict)


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _loopback_name(host: str) -> bool:
    """Whether a host name from a request is this machine's (``127.evil.example`` is not)."""
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """The host of a ``Host`` header or of an origin's authority, without the port."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def _safe_headers(headers: Headers) -> dict[str, str]:
    secret = {"authorization", "api-key", "x-api-key", "cookie"}
    return {k.lower(): mask_secrets(v) for k, v in headers.raw_items() if k.lower() not in secret}


class LocalServer:
    """A Realtime server on ``host:port`` (port 0 picks a free one).

    ``engine`` writes the replies (default: :class:`ScriptedReplyEngine`, which echoes);
    ``synthesizer`` voices them (default: :class:`ToneSynthesizer`); ``transcriber`` turns user
    audio into text when given. ``token``, when set, is required from clients as
    ``Authorization: Bearer <token>`` (or ``Basic``, or a ``token`` query parameter).
    ``pace`` waits that many seconds between streamed deltas, to give clients time to cancel.
    ``turn_detection`` (``"server_vad"`` or ``"semantic_vad"``) is what new sessions start with.
    ``tls=True`` serves ``wss://`` with a self-signed loopback certificate kept in the user's
    cache directory (``server.certificate.cert``: give it to node as ``NODE_EXTRA_CA_CERTS``);
    or pass a :class:`~rtwidget.server.tls.Certificate` of your own.
    ``profile`` (``"natural"`` or ``"fast"``, see :mod:`rtwidget.server.defaults`) fills what
    is not given with that profile's offline engines, as :func:`offline_server` does.

    Limits keep one client from hurting the others: ``max_message_bytes`` per event,
    ``max_session_bytes`` of items per connection, ``max_connections`` at once (more get HTTP
    503), and ``send_timeout``: a client that stops reading for that long is disconnected
    instead of holding a reply's memory. Binding beyond loopback needs a ``token`` unless
    ``allow_anonymous=True``. ``max_connections_per_client`` caps the sessions one client (one
    browser origin, or one address for clients that send no ``Origin``) may hold, so that it
    cannot lock the others out.

    Web pages: a browser sends an ``Origin`` with every WebSocket handshake. Only loopback
    origins (a notebook at ``http://localhost:8888``) and those in ``allowed_origins`` are
    served, whatever token they offer, so a page on another site cannot drive the server; and a
    server bound to loopback answers only requests whose ``Host`` is a loopback name or in
    ``allowed_hosts`` (DNS rebinding). Clients that send no ``Origin`` (the kernel's own
    session, the ``openai`` package) are not affected.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        engine: ReplyEngine | None = None,
        synthesizer: Synthesizer | None = None,
        transcriber: Transcriber | None = None,
        vad_factory: Callable[[VadSettings], Vad] | str | None = None,
        token: str | None = None,
        max_message_bytes: int = 15 * 1024 * 1024,
        max_session_bytes: int = 256 * 1024 * 1024,
        max_connections: int = 64,
        max_connections_per_client: int | None = None,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        send_timeout: float = 30.0,
        allow_anonymous: bool = False,
        pace: float = 0.0,
        model: str = "local/scripted",
        engines: dict[str, ReplyEngine] | None = None,
        description: str = "",
        voice: str | None = None,
        turn_detection: str = "server_vad",
        tls: bool | Certificate = False,
        profile: str | None = None,
    ) -> None:
        missing: list[str] = []
        if profile is not None:
            from .defaults import best_available

            found = best_available(profile=profile)
            missing = list(found.missing)
            engines = {**found.engines, **(engines or {})}
            if engine is None and model == "local/scripted":
                model = found.model
            synthesizer = synthesizer or found.synthesizer
            transcriber = transcriber or found.transcriber
            vad_factory = vad_factory or found.vad
            description = description or found.describe()
        vad_factory = vad_factory or EnergyVad
        if not _is_loopback(host) and not token and not allow_anonymous:
            raise ConfigError(f"binding to {host} exposes the server beyond this machine: give a "
                             "token=, or allow_anonymous=True if that is really wanted")
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client or max(
            1, max_connections - max_connections // 4)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self._clients: Counter[str] = Counter()
        self.send_timeout = send_timeout
        default_vad = VADS[vad_factory] if isinstance(vad_factory, str) else vad_factory
        synthesizer = synthesizer or ToneSynthesizer()
        self.options = ServerOptions(
            engine=engine or (engines or {}).get(model) or ScriptedReplyEngine(),
            synthesizer=synthesizer,
            voice=voice or default_voice_name(synthesizer),
            transcriber=transcriber,
            vad_factory=default_vad,
            max_message_bytes=max_message_bytes,
            max_session_bytes=max_session_bytes,
            pace=pace,
            model=model,
            engines=dict(engines or {}),
            vads=dict(VADS),
            turn_detection=turn_detection,
        )
        # TLS on loopback (wss://), for clients that speak nothing else: a certificate of
        # its own, made once in the user's cache directory (see rtwidget.server.tls)
        self.certificate: Certificate | None = (
            loopback_certificate() if tls is True else tls or None)
        self.description = description or "scripted replies, tones"
        self.missing: list[str] = missing  # engines looked for and not used, and why
        self._token = token
        self.handshakes: list[Handshake] = []
        self.connections: set[ServerProtocol] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "wss" if self.certificate is not None else "ws"
        return f"{scheme}://{host}:{self.port}/v1/realtime"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalServer {self.url} {state}, {len(self.connections)} connection(s)>"

    # --- lifecycle on the caller's loop --------------------------------------------------------

    async def start(self) -> LocalServer:
        """Bind and start serving on the running loop."""
        if self._server is not None:
            return self
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=max(self.options.max_message_bytes * 4, 1 << 20),
            compression=None,
            ping_interval=20,
            ping_timeout=20,
            logger=wire_logger("server"),
            ssl=self.certificate.server_context() if self.certificate is not None else None,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        log.info("local Realtime server on %s", self.url)
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        await server.wait_closed()

    # --- lifecycle on a thread of its own -----------------------------------------------------

    def start_in_thread(self) -> LocalServer:
        """Start on a private event-loop thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="rtwidget-local-server",
                                  daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
            raise
        self._loop, self._thread = loop, thread
        return self

    def stop_in_thread(self) -> None:
        """Stop a server started with :meth:`start_in_thread`, joining its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_in_thread()

    def close_connections(self, code: int = 1001, reason: str = "") -> int:
        """Close every open session with this WebSocket close code (to drain the server, or to
        see how clients take each code); returns how many were closed. For a server started
        with :meth:`start_in_thread`; call it from any other thread."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            raise UsageError("close_connections() needs a server started with "
                               "start_in_thread()")

        async def close_all() -> int:
            sockets = list(server.connections)
            await asyncio.gather(*(ws.close(code, reason) for ws in sockets),
                                 return_exceptions=True)
            return len(sockets)

        return asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=10)

    # --- connections ---------------------------------------------------------------------------

    def _authorized(self, request: Request, query: dict[str, list[str]]) -> bool:
        if self._token is None:
            return True
        offered = query.get("token", [""])[0]
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "basic") and value:
            offered = value.strip()
        offered = request.headers.get("api-key", offered)  # Azure's header
        return hmac.compare_digest(offered.encode(), self._token.encode())

    def _foreign(self, request: Request) -> str | None:
        """Why a request from a web page or through a foreign host name is refused, if it is."""
        origins = request.headers.get_all("Origin")
        if origins:
            origin = origins[0].strip().rstrip("/").lower() if len(origins) == 1 else "several"
            scheme, _, authority = origin.partition("://")
            local = scheme in ("http", "https") and _loopback_name(_host_name(authority))
            if not local and origin not in self.allowed_origins:
                return (f"web pages from {origin[:100]} may not use this server (allowed: "
                        "loopback origins and allowed_origins)\n")
        hosts = request.headers.get_all("Host")
        host = hosts[0] if len(hosts) == 1 else ", ".join(hosts)
        if _is_loopback(self.host) and not _loopback_name(_host_name(host)) \
                and _host_name(host) not in self.allowed_hosts \
                and host.lower() not in self.allowed_hosts:
            return f"this server answers to loopback host names, not {host[:100]!r}\n"
        return None

    @staticmethod
    def _client(connection: ServerConnection, request: Request) -> str:
        """Who is connecting, for the per-client limit: the page's origin, else the address."""
        origin = request.headers.get("Origin")
        if origin:
            return "origin " + origin.strip().lower()
        address = connection.remote_address
        return "address " + str(address[0] if address else "?")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        auth = request.headers.get("Authorization")
        self.handshakes.append(Handshake(
            path=parts.path,
            query={k: v for k, v in query.items() if k != "token"},
            auth_scheme=auth.partition(" ")[0] if auth else None,
            header_names=frozenset(k.lower() for k in request.headers),
            headers=_safe_headers(request.headers),
        ))
        del self.handshakes[:-100]
        if (refused := self._foreign(request)) is not None:
            log.warning("refused a request: %s", refused.strip())
            return connection.respond(HTTPStatus.FORBIDDEN, refused)
        if parts.path.rstrip("/") == "/voices/v1/voices":
            return self._voices(connection, request, query)
        if parts.path.rstrip("/") not in {p.rstrip("/") for p in PATHS}:
            return connection.respond(HTTPStatus.NOT_FOUND,
                                      f"no Realtime endpoint at {parts.path}; use /v1/realtime\n")
        if not self._authorized(request, query):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        if len(self.connections) >= self.max_connections:
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                          f"{self.max_connections} sessions already open\n")
            response.headers["Retry-After"] = "5"
            return response
        if self._clients[self._client(connection, request)] >= self.max_connections_per_client:
            response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS,
                                          f"{self.max_connections_per_client} sessions already "
                                          "open from this client\n")
            response.headers["Retry-After"] = "5"
            return response
        return None

    def _voices(self, connection: ServerConnection, request: Request,
                query: dict[str, list[str]]) -> Response:
        """Inworld's List Voices call, answered with this server's own voices."""
        from .voice_list import inworld_page

        if not self._authorized(request, query):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        page = inworld_page(self.options.synthesizer.voices(),
                            {k: v[0] for k, v in query.items() if v})
        if page is None:
            return connection.respond(HTTPStatus.BAD_REQUEST, "bad filter, pageSize or "
                                      "pageToken\n")
        response = connection.respond(HTTPStatus.OK, json.dumps(page))
        response.headers["Content-Type"] = "application/json"
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        def abort() -> None:
            ws.transport.abort()

        async def send(text: str) -> None:
            try:
                await within(ws.send(text), self.send_timeout)
            except asyncio.TimeoutError:
                log.warning("a client read nothing for %g s; disconnecting it", self.send_timeout)
                abort()
                raise ConnectionClosed(None, None) from None

        asked = parse_qs(urlsplit(ws.request.path).query) if ws.request is not None else {}
        model = next((m for m in asked.get("model", []) if 0 < len(m) <= 200), None)
        conn = ServerProtocol(self.options, send, abort, model)
        self.connections.add(conn)
        client = self._client(ws, ws.request) if ws.request is not None else "?"
        self._clients[client] += 1
        try:
            await conn.start()
            async for raw in ws:
                await conn.receive(raw)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(conn)
            self._clients[client] -= 1
            if self._clients[client] <= 0:
                del self._clients[client]
            await conn.close()


def offline_server(host: str = "127.0.0.1", port: int = 0, *, without: Iterable[str] = (),
                   profile: str = "natural", **options: Any) -> LocalServer:
    """A local server with the best offline engines installed (``rtwidget[local]``: SmolLM2 on
    llama.cpp, Flite with eSpeak NG, PocketSphinx, Silero VAD; for ``profile="natural"``,
    Whisper and Piper ahead of PocketSphinx and Flite where ``rtwidget[natural]`` and
    ``rtwidget[voice]`` are installed); what is missing falls back to the scripted engine, tones
    and the energy VAD, and the server's ``description`` and ``missing`` say which. ``without``
    leaves engines out by name (see :data:`~rtwidget.server.defaults.ENGINES`)."""
    from .defaults import best_available

    found = best_available(without, profile)
    for reason in found.missing:
        log.warning("local server: %s", reason)
    settings: dict[str, Any] = {
        "engines": found.engines, "model": found.model, "synthesizer": found.synthesizer,
        "transcriber": found.transcriber, "vad_factory": found.vad,
        "description": found.describe(), "turn_detection": "semantic_vad",
    }
    settings.update(options)
    server = LocalServer(host, port, **settings)
    server.missing = list(found.missing)
    return server
