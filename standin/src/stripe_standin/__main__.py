"""``python -m stripe_standin``: run the local Stripe stand-in.

Binds 127.0.0.1 only (it accepts any ``sk_`` key and has unauthenticated test
hooks, so it must never be reachable from elsewhere). ``--port 0`` picks a
free port; the first line printed on stdout is always
``standin listening on http://127.0.0.1:<port>``, which
``stripe_standin.process`` waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import threading

from aiohttp import web

from stripe_standin.constants import DEFAULT_PORT
from stripe_standin.webhooks import RETRY_DELAYS

HOST = "127.0.0.1"
READY_PREFIX = "standin listening on "


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_standin",
        description="Local Stripe stand-in: localstripe plus Checkout Sessions, a hosted "
        "payment page, fees, refund fixes and signed webhooks.",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument(
        "--webhook-url",
        action="append",
        default=[],
        metavar="URL",
        help="deliver every event to URL (repeatable)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=None,
        metavar="SECRET",
        help="signing secret of the --webhook-url endpoints (e.g. whsec_...)",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="base URL browsers use to reach the stand-in (default http://127.0.0.1:PORT)",
    )
    parser.add_argument(
        "--retry-delays",
        default=",".join(str(d) for d in RETRY_DELAYS),
        help="comma-separated pauses (seconds) between webhook delivery attempts",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when stdin closes (used when started by another process)",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="accepted for compatibility with localstripe; the stand-in always starts empty",
    )
    return parser


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when the parent closes our stdin (or dies), so no stand-in is orphaned."""

    def wait_for_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, name="stdin-watch", daemon=True).start()


async def _serve(args: argparse.Namespace) -> None:
    from stripe_standin.app import StandInConfig, create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, args.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"standin: cannot listen on {HOST}:{args.port}: {exc}") from exc
    port = sock.getsockname()[1]
    base_url = f"http://{HOST}:{port}"
    delays = tuple(float(d) for d in args.retry_delays.split(",") if d.strip())
    config = StandInConfig(
        public_url=(args.public_url or base_url).rstrip("/"),
        webhook_urls=tuple(args.webhook_url),
        webhook_secret=args.webhook_secret,
        retry_delays=delays,
    )
    app = create_app(config)
    runner = web.AppRunner(
        app, access_log=None if args.quiet else logging.getLogger("aiohttp.access")
    )
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_with_parent:
        _watch_stdin(loop, stop)

    print(f"{READY_PREFIX}{base_url}", flush=True)
    for url in config.webhook_urls:
        logging.getLogger("stripe_standin").info("delivering webhooks to %s", url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.webhook_url and not args.webhook_secret:
        _parser().error("--webhook-url needs --webhook-secret")
    if not 0 <= args.port <= 65535:
        _parser().error("--port must be between 0 and 65535")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s standin %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
