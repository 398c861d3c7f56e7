"""The one entry point: ``python -m bench [--quick] [--url URL] [--only WORKLOAD ...]``.

Starts the embedded server in a process of its own (unless ``--url`` names a server), runs the workloads with
every contender, and writes bench/RESULTS.md. Against a real server it FLUSHes it before every run: never point
it at a server whose jobs you want to keep.
"""

from __future__ import annotations

import argparse
import pickle
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import report, workloads
from bench.common import BENCH_DIR, Server, machine
from bench.lineup import WORK_DIR, lineup

WORKLOADS = {
    "server": workloads.server_workload,
    "push": workloads.push_workload,
    "process": workloads.process_workload,
    "latency": workloads.latency_workload,
    "memory": workloads.memory_workload,
    "lifecycle": workloads.lifecycle_workload,
    "overhead": workloads.overhead_workload,
    "profile": workloads.profile_workload,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running Faktory server (it is FLUSHed!); default: the embedded server")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs (under 2 minutes)")
    parser.add_argument("--only", nargs="+", choices=list(WORKLOADS), help="run only these workloads")
    parser.add_argument("--no-node", action="store_true", help="skip npm faktory-worker")
    parser.add_argument("--contenders", nargs="+", metavar="NAME", help="only these contenders (raw is always kept)")
    parser.add_argument("--repeats", type=int, help="runs per cell (default: 3, quick: 1)")
    parser.add_argument(
        "--output", type=Path, default=BENCH_DIR / "RESULTS.md", help="the report (default: bench/RESULTS.md)"
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the report from the last run's saved results"
    )
    args = parser.parse_args(argv)
    WORK_DIR.mkdir(exist_ok=True)
    saved = WORK_DIR / "results.pickle"
    if args.render:
        meta, results = pickle.loads(saved.read_bytes())
        args.output.write_text(report.render(meta, results))
        return 0
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    contenders = lineup(with_node=not args.no_node and (not args.contenders or "node" in args.contenders))
    if args.contenders:
        contenders = [c for c in contenders if c.name in args.contenders or c.name.startswith("raw")]
    for contender in contenders:
        if not contender.available:
            log(f"{contender.name}: {contender.note}")
    server = Server(args.url)
    log(f"server {server.url} ({'embedded, own process' if server.embedded else 'external'})")
    ctx = workloads.Context(server=server, quick=args.quick, contenders=contenders, log=log, repeats=args.repeats)
    results = {}
    try:
        for name in args.only or list(WORKLOADS):
            log(f"--- {name}")
            results[name] = WORKLOADS[name](ctx)
    finally:
        server.stop()
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    info = machine()
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "server": "embedded (python -m faktoryd.embedded, own process)" if server.embedded else args.url,
        **info,
        "duration": f"{time.monotonic() - started:.0f} s",
        "contenders": "; ".join(
            f"`{c.name}`: {c.description}" + (f" ({c.note})" if c.note else "") for c in contenders
        ),
    }
    meta = {"command": command, "machine": info, "embedded": server.embedded}
    saved.write_bytes(pickle.dumps((meta, results)))
    args.output.write_text(report.render(meta, results))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
