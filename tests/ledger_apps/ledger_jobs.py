"""The job handler of the ledger test (tests/test_ledger.py), run by the real ``faktoryd`` executable.

Every execution appends to a ledger file of its own process in ``$FAKTORYD_LEDGER_DIR``: one ``S`` line when the
handler starts and one ``E`` line with the outcome when it ends (none when the process dies first). Each line is
one ``os.write`` on an ``O_APPEND`` descriptor, so lines of concurrent threads never interleave and a SIGKILL
never leaves half a line.

    S <jid> <pid> <attempt> <unix time> <kind>
    E <jid> <pid> <attempt> <unix time> <outcome>     outcome: ok, flaky, doomed, interrupted:<exception>

``attempt`` is how many times the server says the job failed before this run (``current_job().retry_count``).
"""

from __future__ import annotations

import os
import threading
import time

import faktoryd

_lock = threading.Lock()
_files: dict[int, int] = {}  # pid -> descriptor of that process's ledger file (a forked child opens its own)


class Flaky(Exception):
    """Raised by a ``flaky`` job on its first run only: its retry succeeds."""


class Doomed(Exception):
    """Raised by a ``doomed`` job on every run (they are pushed with retry=-1: straight to the dead set)."""


def _append(line: str) -> None:
    pid = os.getpid()
    with _lock:
        fd = _files.get(pid)
        if fd is None:
            path = os.path.join(os.environ["FAKTORYD_LEDGER_DIR"], f"{pid}.ledger")
            fd = _files[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    os.write(fd, line.encode())


@faktoryd.job
def ledger(kind: str, seconds: float) -> None:
    """``fast``: return at once; ``long``: run ``seconds`` (in short naps, so an interrupt lands); ``flaky``:
    raise on the first attempt; ``doomed``: raise always."""
    ctx = faktoryd.current_job()
    assert ctx is not None
    head = f"{ctx.jid} {os.getpid()} {ctx.retry_count}"
    _append(f"S {head} {time.time():.6f} {kind}\n")
    outcome = "ok"
    try:
        if kind == "long":
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(min(0.05, max(end - time.monotonic(), 0)))
        elif kind == "flaky" and ctx.retry_count == 0:
            outcome = "flaky"
            raise Flaky(f"flaky job {ctx.jid} fails on its first attempt")
        elif kind == "doomed":
            outcome = "doomed"
            raise Doomed(f"doomed job {ctx.jid} always fails")
    except BaseException as exc:
        if outcome == "ok":
            outcome = f"interrupted:{type(exc).__name__}"
        raise
    finally:
        _append(f"E {head} {time.time():.6f} {outcome}\n")
