"""What the supervisor knows about each child process, and how children are forked and paced.

A child is an independent Faktory worker process. The supervisor tracks, from the child's pipe, which jobs
it is running (so a crash becomes FAILs at once), when it last spoke (the watchdog), and its memory and job
count (recycling). Forking happens only here, from the supervisor's single thread.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import channel

PIPE_SIZE = 1 << 20  # the unprivileged maximum on Linux (/proc/sys/fs/pipe-max-size)


class Role(enum.Enum):
    """Why a child exists and what its exit means."""

    WORKER = "worker"  # a pool member; replaced if it dies unexpectedly
    RETIRING = "retiring"  # asked to stop (reload, recycle, scale down, shutdown); not replaced


@dataclass
class Child:
    pid: int
    slot: int
    generation: int
    fd: int
    started_at: float
    job_limit: int  # recycle after this many jobs (0: never)
    last_seen: float = 0.0
    wid: str | None = None
    ready: bool = False
    role: Role = Role.WORKER
    running: dict[str, str] = field(default_factory=dict)  # jid -> jobtype
    jobs: int = 0
    busy: int = 0
    rss_kb: int = 0
    leaving: str | None = None  # the reason the child gave before exiting on purpose
    kill_at: float | None = None  # SIGKILL it if still alive at this monotonic time
    kill_reason: str = ""  # why the supervisor SIGKILLed it, once it did
    deadline_reason: str = ""  # what ``kill_at`` means, for the log line if it comes to that
    replaces: Child | None = None  # the old child this one takes over from, once ready
    reader: channel.Reader = field(default_factory=channel.Reader)

    @property
    def name(self) -> str:
        return f"worker {self.slot} (pid {self.pid})"

    def send_signal(self, signum: int) -> None:
        """Send a signal, ignoring a child that is already gone (its exit will be reaped)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def retire(self, now: float, grace: float, signum: int = signal.SIGUSR2) -> None:
        """Ask the child to stop gracefully; the supervisor kills it if it is still alive after ``grace``."""
        self.role = Role.RETIRING
        deadline = now + grace
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)
        self.deadline_reason = f"still running {grace:g} s after it was told to stop"
        self.send_signal(signum)


def fork_child(run: Callable[[int], int], close_in_child: Callable[[], None]) -> tuple[int, int]:
    """Fork a child that runs ``run(write_fd)`` and exits with its result. Returns ``(pid, read_fd)``.

    The supervisor runs no threads, so forking is safe. The child never returns into the supervisor's
    code: whatever happens, it leaves through ``os._exit``.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError, AttributeError):  # room for seconds of reports between two reads
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; its behaviour is tested through the daemon
        code = 1
        try:
            os.close(read_fd)
            close_in_child()
            code = run(write_fd)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback  # noqa: PLC0415 - only on the child's crash path

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return pid, read_fd


class CrashPacer:
    """Paces replacements of children that die unexpectedly, across the whole pool.

    The first crash is replaced at once (a SIGKILLed child is back within a second); each crash in a row
    doubles the wait from 0.5 s up to ``cap`` (with jitter), so a crash loop never spins. A quiet period
    (no crash for ``reset_after`` seconds) forgives the history.
    """

    def __init__(self, cap: float = 30.0, reset_after: float = 60.0, rng: Callable[[], float] = random.random) -> None:
        self.cap = cap
        self.reset_after = reset_after
        self._rng = rng
        self._streak = 0
        self._last_crash = -1e9
        self.not_before = 0.0

    def crashed(self, now: float) -> float:
        """Record a crash; returns the delay before the next spawn."""
        if now - self._last_crash > self.reset_after:
            self._streak = 0
        self._last_crash = now
        if self._streak == 0:
            delay = 0.0
        else:
            base = min(self.cap, 0.5 * 2.0 ** (self._streak - 1))
            delay = base * (0.75 + 0.25 * self._rng())
        self._streak += 1
        self.not_before = max(self.not_before, now + delay)
        return delay

    def may_spawn(self, now: float) -> bool:
        return now >= self.not_before

    def spawned(self, now: float) -> None:
        """A spawn happened: the next one in a crash streak waits again."""
        if self._streak:
            base = min(self.cap, 0.5 * 2.0 ** (self._streak - 1))
            self.not_before = now + base * (0.75 + 0.25 * self._rng())


def describe_exit(status: int, *, killed_by_us: bool = False) -> tuple[str, str]:
    """``(errtype, text)`` for a child's wait status: which signal killed it, or which code it exited with."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (the OOM killer, or an operator)" if signum == signal.SIGKILL and not killed_by_us else ""
        return f"faktoryd.ChildKilled({name})", f"was killed by {name}{hint}"
    code = os.waitstatus_to_exitcode(status)
    return f"faktoryd.ChildExited({code})", f"exited with status {code}"


def monotonic() -> float:
    return time.monotonic()
