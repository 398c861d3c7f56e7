"""``python -m faktoryd.embedded``: run the embedded Faktory server in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .server import EmbeddedServer

log = logging.getLogger("faktoryd.embedded")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m faktoryd.embedded",
        description="An in-memory Faktory server (protocol-faithful to Faktory 1.10.0) for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback)")
    parser.add_argument(
        "--port", type=int, default=7419, help="port to bind, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--password-file", metavar="PATH", help="require the password in this file (surrounding whitespace ignored)"
    )
    parser.add_argument(
        "--fetch-timeout", type=float, default=2.0, metavar="S", help="seconds a FETCH blocks (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT or SIGTERM, stop cleanly. Returns the exit status."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    password = None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.read().strip() or None
        except OSError as exc:
            log.error("cannot read the password file: %s", exc)
            return 2
    server = EmbeddedServer(args.host, args.port, password, fetch_timeout=args.fetch_timeout)
    try:
        server.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    host = f"[{server.host}]" if ":" in server.host else server.host
    log.info("listening on tcp://%s:%d", host, server.port)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
