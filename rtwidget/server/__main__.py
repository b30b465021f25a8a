"""``python -m rtwidget.server``: run the local Realtime server until interrupted.

With ``--supervised`` it runs as the child of the process that started it (a notebook kernel):
it prints one JSON line on standard output once it serves (``{"url", "description",
"missing", "pid"}``), writes a traceback of every thread to standard error if native code
crashes it, and exits when its standard input closes or its parent process is gone, so it never
outlives the kernel, however the kernel ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import time

from .app import LocalServer, offline_server
from .defaults import ENGINES, PROFILES


def _exit_with_parent(parent: int) -> None:
    """End this process at once when standard input reaches its end (the parent closed it, or
    died: the pipe closes with it) or the parent process changes (re-parented after a kill)."""

    def stdin_closed() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        os._exit(0)

    def parent_gone() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    for target in (stdin_closed, parent_gone):
        threading.Thread(target=target, name=f"rtwidget-{target.__name__}", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m rtwidget.server",
                                     description="Run the local Realtime WebSocket server.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else needs --token)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    parser.add_argument("--token", default=os.environ.get("RTWIDGET_SERVER_TOKEN"),
                        help="require this token from clients (env RTWIDGET_SERVER_TOKEN)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="also serve web pages from this origin, e.g. "
                        "https://hub.example.org (loopback origins always are; repeatable)")
    parser.add_argument("--pace", type=float, default=0.0,
                        help="seconds between streamed deltas (default 0)")
    parser.add_argument("--scripted", action="store_true",
                        help="deterministic scripted replies and tones, no offline engines")
    parser.add_argument("--profile", choices=PROFILES, default="natural",
                        help="natural: Whisper ears and Piper's voice where installed (the "
                        "default); fast: PocketSphinx and Flite, the lowest latency")
    parser.add_argument("--without", action="append", default=[], choices=ENGINES,
                        help="leave this offline engine out (repeatable)")
    parser.add_argument("--tls", action="store_true",
                        help="serve wss:// with a self-signed certificate for loopback, made "
                        "once in the user's cache directory (its path is printed: trust it, "
                        "e.g. NODE_EXTRA_CA_CERTS=<path> for node)")
    parser.add_argument("--supervised", action="store_true",
                        help="run as a child process: print a JSON line when ready, exit with "
                        "the parent (closed standard input or a new parent process)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    if args.host not in ("127.0.0.1", "::1", "localhost") and not args.token:
        parser.error("binding beyond loopback needs --token (or RTWIDGET_SERVER_TOKEN)")
    if args.supervised:
        faulthandler.enable(all_threads=True)
        _exit_with_parent(os.getppid())

    async def run() -> None:
        options = {"token": args.token, "pace": args.pace, "allowed_origins": args.allow_origin,
                   "tls": args.tls}
        if args.scripted:
            server = LocalServer(args.host, args.port, **options)
        else:
            server = offline_server(args.host, args.port, without=args.without,
                                    profile=args.profile, **options)
        await server.start()
        cert = str(server.certificate.cert) if server.certificate is not None else None
        if args.supervised:
            print(json.dumps({"url": server.url, "description": server.description,
                              "missing": server.missing, "pid": os.getpid(),
                              "certificate": cert}), flush=True)
        else:
            print(f"rtwidget local Realtime server on {server.url} ({server.description})",
                  flush=True)
            if cert is not None:
                print(f"TLS certificate: {cert}\n  trust it in node with "
                      f"NODE_EXTRA_CA_CERTS={cert}", flush=True)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
