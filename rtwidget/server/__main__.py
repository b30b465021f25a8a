"""``python -m rtwidget.server``: run the local Realtime server until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys

from .app import LocalServer, offline_server


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
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    if args.host not in ("127.0.0.1", "::1", "localhost") and not args.token:
        parser.error("binding beyond loopback needs --token (or RTWIDGET_SERVER_TOKEN)")

    async def run() -> None:
        options = {"token": args.token, "pace": args.pace, "allowed_origins": args.allow_origin}
        if args.scripted:
            server = LocalServer(args.host, args.port, **options)
        else:
            server = offline_server(args.host, args.port, **options)
        await server.start()
        print(f"rtwidget local Realtime server on {server.url} ({server.description})",
              flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
