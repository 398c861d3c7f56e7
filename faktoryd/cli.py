"""The ``faktoryd`` command line.

Exit codes: 0 clean stop, 1 unexpected error, 2 usage or configuration error, 3 the app failed to load.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._version import __version__
from .client import Client
from .errors import FaktoryError
from .settings import Settings, env_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_APP = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, TypeError) as exc:
        print(f"faktoryd {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FaktoryError as exc:
        print(f"faktoryd {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faktoryd",
        description="Client, worker and worker daemon for the Faktory job server.",
        epilog="Exit codes: 0 clean stop, 1 unexpected error, 2 usage or config error, 3 app failed to load.",
    )
    parser.add_argument("--version", action="version", version=f"faktoryd {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    push = commands.add_parser(
        "push",
        help="push one job",
        description="Push one job. Each ARG is parsed as JSON when it can be (42, true, {\"a\":1}), "
        "else taken as a string.",
    )
    push.add_argument("jobtype")
    push.add_argument("args", nargs="*", metavar="ARG")
    push.add_argument("--queue", help="queue name (default: FAKTORY_QUEUE or 'default')")
    when = push.add_mutually_exclusive_group()
    when.add_argument(
        "--at", type=_aware_time, help="run at this ISO 8601 time with a UTC offset, e.g. 2030-01-01T09:00:00Z"
    )
    when.add_argument("--in", dest="delay", type=float, metavar="SECONDS", help="run this many seconds from now")
    push.add_argument("--retry", type=int, default=25, help="retries before the job dies (default 25)")
    push.add_argument("--reserve-for", type=int, help="seconds a worker may hold the job (default 1800)")
    push.add_argument("--custom", type=json.loads, help="JSON object of custom data")
    push.add_argument("--url", help="Faktory URL (default: from FAKTORY_PROVIDER / FAKTORY_URL)")
    push.set_defaults(command="push", func=_push)

    server = commands.add_parser(
        "server",
        help="run the embedded Faktory server (development and tests)",
        description="Run faktoryd's in-memory Faktory server in the foreground. State is lost when it stops.",
        add_help=False,
    )
    server.add_argument("server_args", nargs=argparse.REMAINDER, help="see `faktoryd server --help`")
    server.set_defaults(command="server", func=_server)
    return parser


def _aware_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +HH:MM")
    return moment


def _json_or_string(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _push(args: argparse.Namespace) -> int:
    settings = Settings.from_url(args.url) if args.url else env_settings()
    with Client(settings) as client:
        jid = client.perform(
            args.jobtype,
            *[_json_or_string(a) for a in args.args],
            queue=args.queue,
            at=args.at,
            delay=args.delay,
            retry=args.retry,
            reserve_for=args.reserve_for,
            custom=args.custom,
        )
    print(jid)
    return EXIT_OK


def _server(args: argparse.Namespace) -> int:
    from .embedded.__main__ import main as server_main  # noqa: PLC0415 (asyncio only when serving)

    return server_main(args.server_args)
