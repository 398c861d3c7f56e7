"""Handlers for the daemon tests. Each records what it did in a ledger directory when given one."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import faktoryd


@faktoryd.job
def noop(*args: object) -> None:
    """Does nothing: for throughput and bookkeeping tests."""


@faktoryd.job
def record(ledger: str, tag: str) -> None:
    """Append ``tag pid`` to the ledger file (one line per execution, so duplicates show)."""
    with open(ledger, "a") as handle:
        handle.write(f"{tag} {os.getpid()}\n")


@faktoryd.job
def nap(seconds: float) -> None:
    """Sleeps in C (time.sleep): an async exception cannot interrupt it."""
    time.sleep(seconds)


@faktoryd.job
def exit_now(code: int = 1) -> None:
    """Leaves the process at once, like a crash in C code: no FAIL is sent by the child."""
    os._exit(code)


@faktoryd.job
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@faktoryd.job
def orphan(seconds: float) -> None:
    """Starts a grandchild that outlives its parent shell, so PID 1 must reap it."""
    subprocess.Popen(["sh", "-c", f"sleep {seconds} &"]).wait()


@faktoryd.job
def hog_gil() -> None:
    """Holds the GIL in C for minutes (one regular expression that backtracks exponentially): no other thread
    of the process runs, so only the supervisor can notice and act."""
    import re

    re.match(r"(a+)+$", "a" * 34 + "b")


@faktoryd.job
def grow(megabytes: int) -> None:
    """Keeps ``megabytes`` of memory alive in the process (for max_memory_mb)."""
    _BALLAST.append(bytearray(megabytes * 1024 * 1024))


_BALLAST: list[bytearray] = []
