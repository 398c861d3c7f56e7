"""The contenders: how to start each one's worker at a given concurrency, and each one's push methods.

Every contender runs in processes of its own, started in a new session so the harness can SIGKILL the whole
tree. Python contenders run with this checkout on ``PYTHONPATH`` (for ``bench.contenders``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BENCH_DIR, PYTHON, REPO

NODE_DIR = BENCH_DIR / "node"
WORK_DIR = BENCH_DIR / "work"
FAKTORYD = str(Path(PYTHON).with_name("faktoryd"))

Command = list[str]


@dataclass
class Contender:
    name: str
    """Short key used in tables."""
    description: str
    work: Callable[[str, str, int, int], Command] | None = None
    """(url, queue, processes, threads) -> command line of a worker that fetches ``queue``."""
    pushes: dict[str, Callable[[str, str, int], Command]] = field(default_factory=dict)
    """method label -> (url, queue, count) -> command line that pushes ``count`` jobs and prints seconds."""
    available: bool = True
    note: str = ""
    python: bool = True
    extra: bool = False
    """A reference row for the throughput tables only (not run in the latency, memory and lifecycle workloads)."""
    env: dict[str, str] = field(default_factory=dict)


def muted_daemon(mute: str) -> Contender:
    """The daemon with per-job work of its children switched off (see faktoryd_app.py): an experiment."""
    return Contender(f"faktoryd, {mute} muted", "experiment", work=faktoryd_daemon(), env={"BENCH_MUTE": mute})


def environment(probe_port: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FAKTORY_URL", "FAKTORY_PROVIDER")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if probe_port:
        env["BENCH_PROBE_PORT"] = str(probe_port)
    else:
        env.pop("BENCH_PROBE_PORT", None)
    return env


def daemon_config(
    url: str,
    queue: str,
    processes: int,
    threads: int,
    *,
    shutdown_timeout: float = 5,
    level: str = "WARNING",
) -> Path:
    """A faktoryd config for one run (log level WARNING: the default INFO writes two lines per job)."""
    WORK_DIR.mkdir(exist_ok=True)
    path = WORK_DIR / f"faktoryd-{queue}.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [faktory]
            url = "{url}"

            [worker]
            processes = {processes}
            threads = {threads}
            queues = ["{queue}"]
            shutdown_timeout = {shutdown_timeout}

            [app]
            path = ["{REPO}"]
            modules = ["bench.contenders.faktoryd_app"]

            [logging]
            level = "{level}"
            """
        )
    )
    return path


def _module(name: str, *args: object) -> Command:
    return [PYTHON, "-m", f"bench.contenders.{name}", *map(str, args)]


def faktoryd_daemon(level: str = "WARNING") -> Callable[[str, str, int, int], Command]:
    def command(url: str, queue: str, processes: int, threads: int) -> Command:
        return [FAKTORYD, "--config", str(daemon_config(url, queue, processes, threads, level=level))]

    return command


def node_ready() -> tuple[bool, str]:
    """Install npm ``faktory-worker`` into bench/node when node and npm exist."""
    if not shutil.which("node") or not shutil.which("npm"):
        return False, "node/npm not installed: npm faktory-worker skipped"
    if not (NODE_DIR / "node_modules" / "faktory-worker").is_dir():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "faktory-worker"],
                capture_output=True,
                timeout=300,
                check=False,
            )
    if not (NODE_DIR / "node_modules" / "faktory-worker").is_dir():
        return False, "`npm install faktory-worker` failed: npm faktory-worker skipped"
    return True, ""


def _node_work(url: str, queue: str, processes: int, threads: int) -> Command:
    # One node process per worker process; the shell forks them so one process group holds them all.
    script = " & ".join(f"node {NODE_DIR / 'bench.js'} work {url} {queue} {threads}" for _ in range(processes))
    return ["sh", "-c", script + " & wait"]


def lineup(*, with_node: bool = True) -> list[Contender]:
    ok, why = node_ready() if with_node else (False, "skipped (--no-node)")
    return [
        Contender(
            "raw",
            "protocol bound: one blocking socket per slot, one process per slot, FETCH -> ACK",
            work=lambda url, q, p, t: _module("raw", "work", url, q, p * t),
            pushes={
                "PUSH loop": lambda url, q, n: _module("raw", "push", url, q, n),
                "PUSHB loop": lambda url, q, n: _module("raw", "pushb", url, q, n),
            },
        ),
        Contender(
            "raw-pipelined",
            "the raw loop, but each ACK sent in one write with the next FETCH (one round trip per job)",
            work=lambda url, q, p, t: _module("raw", "pipelined", url, q, p * t),
            extra=True,
        ),
        Contender(
            "faktoryd",
            "faktoryd daemon (`faktoryd --config`: supervisor + processes x threads); `Client.push`/`push_bulk`",
            work=faktoryd_daemon(),
            pushes={
                "push": lambda url, q, n: _module("faktoryd_push", "push", url, q, n),
                "push_bulk": lambda url, q, n: _module("faktoryd_push", "pushb", url, q, n),
            },
        ),
        Contender(
            "faktoryd-lib",
            "faktoryd's `Worker` as a library, one per process, without the supervisor (shows what the daemon's "
            "supervisor channel costs)",
            work=lambda url, q, p, t: _module("faktoryd_lib", "work", url, q, p, t),
            extra=True,
        ),
        Contender(
            "faktory",
            "PyPI `faktory` 1.0.0 (faktory_worker_python), `use_threads=True`, one Worker per process",
            work=lambda url, q, p, t: _module("faktory_peer", "work", url, q, p, t),
            pushes={"push": lambda url, q, n: _module("faktory_peer", "push", url, q, n)},
            note="no bulk push in its API",
        ),
        Contender(
            "pyfaktory",
            "PyPI `pyfaktory` 0.2.13, one Consumer (pebble process pool of `threads`) per process",
            work=lambda url, q, p, t: _module("pyfaktory_peer", "work", url, q, p, t),
            pushes={
                "push": lambda url, q, n: _module("pyfaktory_peer", "push", url, q, n),
                "push_bulk": lambda url, q, n: _module("pyfaktory_peer", "pushb", url, q, n),
            },
        ),
        Contender(
            "node",
            "npm `faktory-worker` 4.x, one Worker (concurrency = threads) per process",
            work=_node_work if ok else None,
            pushes={
                "push": lambda url, q, n: ["node", str(NODE_DIR / "bench.js"), "push", url, q, str(n)],
                "pushBulk": lambda url, q, n: ["node", str(NODE_DIR / "bench.js"), "pushb", url, q, str(n)],
            }
            if ok
            else {},
            available=ok,
            note=why,
            python=False,
        ),
    ]
