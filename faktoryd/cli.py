"""The ``faktoryd`` command line.

``faktoryd --config PATH`` runs the daemon; ``check``, ``push`` and ``server`` are tools around it.
Exit codes: 0 clean stop, 1 unexpected error, 2 usage or configuration error, 3 the app failed to load.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ._version import __version__
from .client import Client
from .config import Config, ConfigError, config_path_from, load_config
from .errors import FaktoryError
from .logs import setup_logging
from .settings import Settings, env_settings
from .supervisor.appload import AppLoadError, check_app, describe, load_app
from .supervisor.arbiter import Arbiter
from .supervisor.child import run_child
from .supervisor.startup import EmbeddedServerProcess, warn_about_kill_timers
from .supervisor.status import read_status, status_path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_APP = 3

log = logging.getLogger("faktoryd")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"]:  # its options belong to the embedded server's own parser
        from .embedded.__main__ import main as server_main  # noqa: PLC0415 - asyncio only when serving

        return server_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"faktoryd: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
        description="Run Faktory job handlers in supervised worker processes: `faktoryd --config faktory.toml`.",
        epilog="Signals to the daemon: TERM/INT graceful stop (twice: immediately), QUIT immediate stop, "
        "TSTP quiet, HUP reload config and code, TTIN/TTOU one process more/fewer, USR1 dump stacks. "
        "Exit codes: 0 clean stop, 1 unexpected error, 2 usage or config error, 3 app failed to load.",
    )
    parser.add_argument("--version", action="version", version=f"faktoryd {__version__}")
    parser.add_argument("--config", "-c", metavar="PATH", help="the TOML config file (default: $FAKTORY_CONFIG)")
    parser.set_defaults(command="run", func=_run)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon (the default command)")
    _config_option(run)
    run.set_defaults(command="run", func=_run)

    check = commands.add_parser(
        "check",
        help="validate the config and import the app, then list handlers and queues",
        description="Validate the config file, import the app, and list jobtype -> handler and the queues. "
        "Exits 0 when all is well, 2 for a config error, 3 when the app does not load.",
    )
    _config_option(check)
    check.set_defaults(command="check", func=_check)

    status = commands.add_parser(
        "status",
        help="health check: exit 0 when the daemon and all its workers are up",
        description="Read the status file of the daemon running this config and exit 0 when the supervisor "
        "and every worker process are alive and ready, 1 otherwise (one line says why). For Docker's "
        "HEALTHCHECK and monitoring agents.",
    )
    _config_option(status)
    status.set_defaults(command="status", func=_status)

    push = commands.add_parser(
        "push",
        help="push one job",
        description="Push one job and print its jid. Each ARG is parsed as JSON when it can be "
        '(42, true, {"a":1}), else taken as a string.',
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
    server.add_argument("server_args", nargs="*", help="see `faktoryd server --help`")
    return parser


# ---------------------------------------------------------------------------------------------- daemon


def _run(args: argparse.Namespace) -> int:

    path = config_path_from(args.config)
    config = load_config(path)
    setup_logging(config.logging.level, config.logging.format)

    def reconfigure(new: Config) -> None:
        setup_logging(new.logging.level, new.logging.format)

    arbiter = Arbiter(
        config,
        load_config=lambda: load_config(path),
        run_child=run_child,
        check_app=check_app,
        on_reconfigure=reconfigure,
    )
    arbiter.install_signals()
    verdict = arbiter.prove_app()
    if verdict is None:
        log.info("stopped before starting")
        return EXIT_OK
    ok, report = verdict
    if not ok:
        log.error("the app failed to load: %s", report)
        return EXIT_APP
    log.info("app loaded from %s: %s", config.path, report.replace("\n", ", "))
    warn_about_kill_timers(config)
    embedded = None
    if config.embedded.enabled:
        embedded = EmbeddedServerProcess(
            config.embedded.host, config.embedded.port, config.logging.level, config.logging.format
        )
        if not embedded.wait_listening():
            log.error("the embedded Faktory server did not start on %s:%d", config.embedded.host, config.embedded.port)
            embedded.stop()
            return EXIT_ERROR
        arbiter.embedded_pid = embedded.pid
    try:
        return arbiter.run()
    finally:
        if embedded is not None:
            embedded.stop()


def _check(args: argparse.Namespace) -> int:

    config = load_config(config_path_from(args.config))
    try:
        registry = load_app(config)
    except AppLoadError as exc:
        print(f"faktoryd check: the app failed to load: {exc}", file=sys.stderr)
        return EXIT_APP
    worker = config.worker
    print(f"config:   {config.path}")
    print(f"server:   {config.settings().url}")
    order = worker.queue_order
    queues = ", ".join(f"{q}={worker.weights[q]}" if worker.weights else q for q in worker.queues)
    print(f"queues:   {queues} ({order})")
    print(f"workers:  {worker.processes} process(es) x {worker.threads} thread(s)")
    print("handlers:")
    for jobtype in sorted(registry):
        print(f"  {jobtype} -> {describe(registry, jobtype)}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    healthy, reason = read_status(status_path(Path(config_path_from(args.config)).resolve()))
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return EXIT_OK if healthy else EXIT_ERROR


# ---------------------------------------------------------------------------------------------- tools


def _config_option(command: argparse.ArgumentParser) -> None:
    """``--config`` after a command too; SUPPRESS keeps a value given before the command."""
    command.add_argument("--config", "-c", metavar="PATH", default=argparse.SUPPRESS, help="the TOML config file")


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time like 2030-01-01T09:00:00Z") from None
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
