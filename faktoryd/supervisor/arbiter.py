"""The supervisor: one loop that keeps a pool of worker processes alive and turns signals into Faktory's
quiet and terminate.

Like gunicorn's arbiter, it is a single thread around ``select``: signals arrive through a self-pipe
(``signal.set_wakeup_fd``), each child reports over its own pipe, and timers (restarts, deadlines, the
watchdog) are checked on every turn. It never runs threads, so forking a child is always safe.

The pool is a set of numbered slots. Each slot has one owner process; during a rolling replacement (HUP,
recycling) a candidate is started for the slot first and the owner is retired only once the candidate has
said HELLO to the server, so there is never a moment without workers.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import select
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from . import channel
from .children import Child, CrashPacer, Role, describe_exit, fork_child
from .failer import Failer, PendingFail
from .notify import Notifier, set_title
from .status import WRITE_EVERY, status_path, write_status

log = logging.getLogger("faktoryd.supervisor")

HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)
# What the supervisor sends its children. USR2 and QUIT rather than TERM: when a terminal's Ctrl-C or
# systemd's KillMode=control-group already sent a child its own INT/TERM, a second TERM from us would read as
# "stop now"; USR2 is an idempotent "stop gracefully".
GRACEFUL_STOP = signal.SIGUSR2
IMMEDIATE_STOP = signal.SIGQUIT
HALT_GRACE = 5.0  # seconds a child gets after an immediate stop: a FETCH in flight returns within 2 s
KILL_MARGIN = 2.0  # seconds after shutdown_timeout before a child is SIGKILLed
STATUS_EVERY = 5.0
# The children's pipes are read on this beat rather than watched: a child writes two lines per job, and waking
# the supervisor for each would cost more CPU than the job. The pipes are large enough to hold far more than a
# beat's worth (see fork_child), and a dead child's pipe is drained before its jobs are accounted for.
READ_EVERY = 0.1


class Phase(enum.Enum):
    STARTING = "starting"  # children spawned, not all have said HELLO yet
    RUNNING = "running"
    STOPPING = "stopping"  # graceful: children finish their jobs within shutdown_timeout
    HALTING = "halting"  # immediate: children FAIL their jobs and leave
    DONE = "done"


# Which signal moves which phase where; a missing entry means the signal is ignored in that phase.
_STOP_TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.STARTING, "graceful"): Phase.STOPPING,
    (Phase.RUNNING, "graceful"): Phase.STOPPING,
    (Phase.STOPPING, "graceful"): Phase.HALTING,
    (Phase.STARTING, "immediate"): Phase.HALTING,
    (Phase.RUNNING, "immediate"): Phase.HALTING,
    (Phase.STOPPING, "immediate"): Phase.HALTING,
}


@dataclass
class Reload:
    """A HUP in progress: the new config is being proved (its app imported) in a short-lived process."""

    config: Config
    pid: int
    fd: int
    output: bytes = b""


RunChild = Callable[[Config, int, int, bool], int]
CheckApp = Callable[[Config, int], int]
LoadConfig = Callable[[], Config]


class Arbiter:
    """Runs the pool until a stop signal (or the server's terminate) and returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        load_config: LoadConfig,
        run_child: RunChild,
        check_app: CheckApp,
        on_reconfigure: Callable[[Config], None] = lambda config: None,
        embedded_pid: int | None = None,
    ) -> None:
        self.config = config
        self.embedded_pid = embedded_pid
        self._load_config = load_config
        self._run_child = run_child
        self._check_app = check_app
        self._on_reconfigure = on_reconfigure
        self.phase = Phase.STARTING
        self.generation = 1
        self.target = config.worker.processes
        self.closed_slots: set[int] = set()  # slots whose worker the server told to terminate
        self.quiet = False
        self.children: dict[int, Child] = {}
        self.replace_queue: deque[Child] = deque()
        self.reload: Reload | None = None
        self.pacer = CrashPacer(cap=config.worker.restart_backoff_max)
        self.failer = Failer(config.settings())
        self.notifier = Notifier()
        self.selector = selectors.DefaultSelector()
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._early: list[int] = []  # signals read before the loop started
        self.exit_code = 0
        self._status_file_warned = False
        self._last_status = 0.0
        self._last_status_file = 0.0
        self.status_file = status_path(config.path)
        self._last_watchdog = 0.0
        self._started = time.monotonic()

    # ------------------------------------------------------------------------------------------ the loop

    def install_signals(self) -> None:
        """Take over the process's signals: first thing at start, because a PID 1 without a handler never
        receives TERM at all. Signals that arrive before :meth:`run` are acted on when it starts."""
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, _noop)
        signal.siginterrupt(signal.SIGCHLD, False)
        self.selector.register(self._sig_r, selectors.EVENT_READ, None)

    def prove_app(self) -> tuple[bool, str] | None:
        """Import the app in a short-lived forked process (the supervisor itself never imports it, so a reload
        can bring new code). Returns (ok, report: the handlers or what failed), or None when a stop signal
        came first: then the check is killed and the daemon should exit."""
        config = self.config
        pid, fd = fork_child(lambda write_fd: self._check_app(config, write_fd), self._close_in_child)
        output = b""
        try:
            while True:
                readable, _, _ = select.select([fd, self._sig_r], [], [])
                if self._sig_r in readable and self._stop_requested():
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return None
                if fd in readable:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    output += chunk
        finally:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0, output.decode("utf-8", "replace").strip()

    def _stop_requested(self) -> bool:
        """Read pending signals before the loop runs: a stop wins; others are kept for the loop."""
        with contextlib.suppress(BlockingIOError):
            self._early.extend(os.read(self._sig_r, 4096))
        return any(signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) for signum in self._early)

    def run(self) -> int:
        """Spawn the pool and run the loop until the pool is stopped. Returns the exit code."""
        log.info(
            "supervisor %d starting %d worker process(es) x %d thread(s), queues %s, server %s",
            os.getpid(),
            self.target,
            self.config.worker.threads,
            ",".join(self.config.worker.queues),
            self.config.settings().url,
        )
        self._drain_signals()
        self._set_title()
        if self.phase is Phase.STARTING:
            for slot in range(1, self.target + 1):
                self._spawn(slot)
        try:
            while self.phase is not Phase.DONE:
                self._turn()
        finally:
            self._shutdown_cleanup()
        log.info("supervisor %d stopped", os.getpid())
        return self.exit_code

    def _turn(self) -> None:
        for key, _ in self.selector.select(self._timeout()):
            if key.fd == self._sig_r:
                self._drain_signals()
            elif isinstance(key.data, Reload):
                self._read_reload(key.data)
        for child in list(self.children.values()):
            self._read_child(child)
        self._reap()
        self._tick(time.monotonic())

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + READ_EVERY]
        deadlines += [c.kill_at for c in self.children.values() if c.kill_at is not None]
        if self.failer.pending:
            deadlines.append(self.failer.retry_at)
        if self._missing_slots():
            deadlines.append(self.pacer.not_before)
        return max(0.0, min(deadlines) - now)

    # ------------------------------------------------------------------------------------------ signals

    def _drain_signals(self) -> None:
        data, self._early = self._early, []
        with contextlib.suppress(BlockingIOError):
            data += os.read(self._sig_r, 4096)
        for signum in data:
            name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
            handler = getattr(self, f"handle_{name.lower()}", None)
            if handler is not None:
                handler()

    def handle_sigchld(self) -> None:
        """Reaping happens on every turn; the signal only wakes the loop."""

    def handle_sigterm(self) -> None:
        self._stop("graceful", "SIGTERM")

    def handle_sigint(self) -> None:
        self._stop("graceful", "SIGINT")

    def handle_sigquit(self) -> None:
        self._stop("immediate", "SIGQUIT")

    def handle_sighup(self) -> None:
        if self.phase not in (Phase.STARTING, Phase.RUNNING):
            return
        if self.reload is not None:
            log.info("SIGHUP: a reload is already being checked; ignoring this one")
            return
        log.info("SIGHUP: reloading the configuration and the app")
        self.notifier.reloading()
        try:
            config = self._load_config()
        except ValueError as exc:  # ConfigError: one line naming file, key and problem
            log.error("reload failed, keeping the running configuration: %s", exc)
            self._reload_finished()
            return
        pid, fd = fork_child(lambda write_fd: self._check_app(config, write_fd), self._close_in_child)
        self.reload = Reload(config, pid, fd)
        self.selector.register(fd, selectors.EVENT_READ, self.reload)

    def handle_sigtstp(self) -> None:
        log.info("SIGTSTP: quieting every worker (no new jobs; running jobs finish)")
        self.quiet = True
        for child in self.children.values():
            child.send_signal(signal.SIGTSTP)
        self._set_title()

    def handle_sigttin(self) -> None:
        if self.phase not in (Phase.STARTING, Phase.RUNNING):
            return
        self.target += 1
        log.info("SIGTTIN: growing the pool to %d process(es)", self.target)

    def handle_sigttou(self) -> None:
        if self.phase not in (Phase.STARTING, Phase.RUNNING):
            return
        if self.target <= 1:
            log.info("SIGTTOU: the pool is already at one process")
            return
        self.target -= 1
        log.info("SIGTTOU: shrinking the pool to %d process(es)", self.target)
        now = time.monotonic()
        for child in self.children.values():
            if child.role is Role.WORKER and child.slot > self.target:
                child.retire(now, self.config.worker.shutdown_timeout + KILL_MARGIN)

    def handle_sigusr1(self) -> None:
        log.info("SIGUSR1: asking every worker to log its threads' stacks")
        for child in self.children.values():
            child.send_signal(signal.SIGUSR1)

    def _stop(self, kind: str, why: str) -> None:
        new = _STOP_TRANSITIONS.get((self.phase, kind))
        if new is None:
            return
        self.phase = new
        now = time.monotonic()
        self.notifier.stopping()
        self.replace_queue.clear()
        if new is Phase.STOPPING:
            grace = self.config.worker.shutdown_timeout + KILL_MARGIN
            log.info(
                "%s: stopping gracefully; running jobs get %g s (a second signal stops at once)",
                why,
                self.config.worker.shutdown_timeout,
            )
            for child in self.children.values():
                child.retire(now, grace, GRACEFUL_STOP)
        else:
            log.info("%s: stopping now; running jobs are FAILed so Faktory retries them", why)
            for child in self.children.values():
                child.retire(now, HALT_GRACE, IMMEDIATE_STOP)
        if self.reload is not None:
            os.kill(self.reload.pid, signal.SIGKILL)
        self._set_title()

    # ------------------------------------------------------------------------------------------ children

    def _spawn(self, slot: int, replaces: Child | None = None) -> Child:
        config, quiet, generation = self.config, self.quiet, self.generation
        pid, fd = fork_child(
            lambda write_fd: self._run_child(config, slot, write_fd, quiet), self._close_in_child
        )
        now = time.monotonic()
        worker = config.worker
        limit = worker.max_jobs_per_child
        if limit and worker.max_jobs_jitter:
            limit += random.randint(0, worker.max_jobs_jitter)
        child = Child(pid, slot, generation, fd, started_at=now, job_limit=limit, last_seen=now, replaces=replaces)
        self.children[pid] = child
        log.info("started %s%s", child.name, f" to replace pid {replaces.pid}" if replaces else "")
        return child

    def _close_in_child(self) -> None:
        """In a freshly forked child: drop everything that belongs to the supervisor."""
        signal.set_wakeup_fd(-1)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        for fd in (self._sig_r, self._sig_w, *(c.fd for c in self.children.values())):
            os.close(fd)
        if self.reload is not None:
            os.close(self.reload.fd)
        self.selector.close()
        self.failer.forget()
        self.notifier.forget()
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)

    def _read_child(self, child: Child) -> None:
        """Take in everything the child has written so far."""
        while True:
            try:
                data = os.read(child.fd, 1 << 20)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            child.last_seen = time.monotonic()
            for message in child.reader.feed(data):
                self._on_message(child, message)

    def _on_message(self, child: Child, message: channel.Message) -> None:
        match message:
            case channel.Started(jid, jobtype):
                child.running[jid] = jobtype
            case channel.Done(jid):
                child.running.pop(jid, None)
            case channel.Ping(busy, rss_kb, jobs):
                child.busy, child.rss_kb, child.jobs = busy, rss_kb, jobs
            case channel.Ready(wid):
                child.ready, child.wid = True, wid
                log.info("%s is ready (wid %s)", child.name, wid, extra={"wid": wid, "child": child.slot})
                old = child.replaces
                if old is not None and old.pid in self.children:
                    old.retire(time.monotonic(), self.config.worker.shutdown_timeout + KILL_MARGIN)
                child.replaces = None
            case channel.Leaving(reason):
                child.leaving = reason

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._child_exited(child, status)
            elif self.reload is not None and pid == self.reload.pid:
                self._reload_checked(status)
            elif pid == self.embedded_pid:
                self.embedded_pid = None
                self.exit_code = 1
                log.error("the embedded Faktory server (pid %d) %s; stopping", pid, describe_exit(status)[1])
                self._stop("graceful", "embedded server gone")
            else:
                log.debug("reaped orphaned process %d", pid)

    def _child_exited(self, child: Child, status: int) -> None:
        self._read_child(child)  # its last words: jobs it finished, the reason it left
        os.close(child.fd)
        errtype, what = describe_exit(status, killed_by_us=bool(child.kill_reason))
        now = time.monotonic()
        if child.running:
            cause = f"worker process {child.pid} {what}" + (f" ({child.kill_reason})" if child.kill_reason else "")
            for jid, jobtype in child.running.items():
                self.failer.add(PendingFail(jid, jobtype, errtype, f"{cause} while running this job"))
            self.failer.flush(now)
        expected = child.role is Role.RETIRING or child.leaving is not None
        if child.leaving == "terminate":
            log.info("%s left: the Faktory server told it to terminate; not replacing it", child.name)
            self.closed_slots.add(child.slot)
        elif expected:
            log.info("%s %s", child.name, what)
        else:
            delay = self.pacer.crashed(now) if self.phase in (Phase.STARTING, Phase.RUNNING) else 0.0
            log.error(
                "%s %s unexpectedly%s",
                child.name,
                what,
                f"; replacing it in {delay:.1f} s" if delay else "; replacing it",
            )
        for other in self.children.values():
            if other.replaces is child:
                other.replaces = None

    # ------------------------------------------------------------------------------------------ reload

    def _read_reload(self, reload: Reload) -> None:
        try:
            data = os.read(reload.fd, 65536)
        except BlockingIOError:
            return
        if data:
            reload.output += data
        else:
            self.selector.unregister(reload.fd)

    def _reload_checked(self, status: int) -> None:
        reload, self.reload = self.reload, None
        assert reload is not None
        if reload.fd in self.selector.get_map():
            self.selector.unregister(reload.fd)
        os.close(reload.fd)
        code = os.waitstatus_to_exitcode(status)
        if self.phase not in (Phase.STARTING, Phase.RUNNING):
            return  # stopping: the check was killed and its result no longer matters
        if code != 0:
            summary = reload.output.decode("utf-8", "replace").strip() or f"app check exited with {code}"
            log.error("reload failed, keeping the running app: %s", summary)
            self._reload_finished()
            return
        old = self.config
        self.config = reload.config
        self.generation += 1
        self._on_reconfigure(reload.config)
        if reload.config.worker.processes != old.worker.processes:
            self.target = reload.config.worker.processes
        self.failer.use(reload.config.settings())
        self.replace_queue.extend(c for c in self.children.values() if c.role is Role.WORKER and not c.replaces)
        log.info("reload checked; replacing %d worker process(es) one by one", len(self.replace_queue))
        self._reload_finished()

    def _reload_finished(self) -> None:
        self.notifier.ready(self._status_text())

    # ------------------------------------------------------------------------------------------ timers

    def _tick(self, now: float) -> None:
        for child in list(self.children.values()):
            if child.kill_at is not None and now >= child.kill_at:
                self._kill(child, child.deadline_reason)
            elif now - child.last_seen > self.config.worker.watchdog_timeout:
                self._kill(child, f"no word from it for {self.config.worker.watchdog_timeout:g} s (watchdog)")
        self.failer.flush(now)
        if self.phase in (Phase.STOPPING, Phase.HALTING):
            if not self.children:
                self.phase = Phase.DONE
            return
        self._fill_slots(now)
        self._recycle()
        self._advance_replacements()
        if self.phase is Phase.STARTING and self._all_ready():
            self.phase = Phase.RUNNING
            log.info("all %d worker process(es) are ready", len(self._owners()))
            self.notifier.ready(self._status_text())
            self._set_title()
        if not self.children and self.target <= len(self.closed_slots):
            log.info("every worker was told to terminate by the Faktory server; exiting")
            self.phase = Phase.DONE
            return
        if now - self._last_status >= STATUS_EVERY:
            self._last_status = now
            self.notifier.status(self._status_text())
            self._set_title()
        if now - self._last_status_file >= WRITE_EVERY:
            self._last_status_file = now
            self._write_status_file()
        interval = self.notifier.watchdog_interval
        if interval and now - self._last_watchdog >= interval and self._healthy(now):
            self._last_watchdog = now
            self.notifier.watchdog()

    def _kill(self, child: Child, reason: str) -> None:
        log.error("killing %s: %s", child.name, reason)
        child.kill_reason = reason
        child.kill_at = None
        child.last_seen = float("inf")  # not again: the reaper takes it from here
        child.send_signal(signal.SIGKILL)

    def _owners(self) -> list[Child]:
        return [c for c in self.children.values() if c.role is Role.WORKER and c.replaces is None]

    def _missing_slots(self) -> list[int]:
        if self.phase not in (Phase.STARTING, Phase.RUNNING):
            return []
        taken = {c.slot for c in self.children.values() if c.role is Role.WORKER}
        return [s for s in range(1, self.target + 1) if s not in taken and s not in self.closed_slots]

    def _fill_slots(self, now: float) -> None:
        for slot in self._missing_slots():
            if not self.pacer.may_spawn(now):
                return
            self._spawn(slot)
            self.pacer.spawned(now)

    def _recycle(self) -> None:
        """Queue one child at a time that has run its job quota or outgrown its memory limit."""
        if self.replace_queue or any(c.replaces for c in self.children.values()):
            return
        worker = self.config.worker
        for child in self._owners():
            if child.job_limit and child.jobs >= child.job_limit:
                log.info("%s ran %d jobs (max_jobs_per_child); recycling it", child.name, child.jobs)
            elif worker.max_memory_mb and child.rss_kb > worker.max_memory_mb * 1024:
                log.info(
                    "%s uses %d MB (max_memory_mb %d); recycling it",
                    child.name,
                    child.rss_kb // 1024,
                    worker.max_memory_mb,
                )
            else:
                continue
            self.replace_queue.append(child)
            return

    def _advance_replacements(self) -> None:
        """Start the next replacement once the previous candidate is ready (one at a time)."""
        if any(c.replaces for c in self.children.values()):
            return
        while self.replace_queue:
            old = self.replace_queue.popleft()
            if old.pid in self.children and old.role is Role.WORKER:
                self._spawn(old.slot, replaces=old)
                return

    def _all_ready(self) -> bool:
        owners = self._owners()
        return len(owners) >= self.target - len(self.closed_slots) and all(c.ready for c in owners)

    def _healthy(self, now: float) -> bool:
        limit = self.config.worker.watchdog_timeout
        return all(now - c.last_seen < limit for c in self.children.values())

    # ------------------------------------------------------------------------------------------ reporting

    def _status_text(self) -> str:
        owners = self._owners()
        busy = sum(c.busy for c in owners)
        threads = len(owners) * self.config.worker.threads
        state = "quiet" if self.quiet else self.phase.value
        return f"{state}: {len(owners)} worker process(es), {busy} busy / {threads - busy} idle threads"

    def _write_status_file(self) -> None:
        owners = self._owners()
        data = {
            "pid": os.getpid(),
            "phase": self.phase.value,
            "quiet": self.quiet,
            "expected": self.target - len(self.closed_slots),
            "busy": sum(c.busy for c in owners),
            "workers": [
                {"pid": c.pid, "slot": c.slot, "ready": c.ready, "busy": c.busy, "jobs": c.jobs, "rss_kb": c.rss_kb}
                for c in owners
            ],
        }
        try:
            write_status(self.status_file, data)
        except OSError as exc:
            if not self._status_file_warned:
                self._status_file_warned = True
                log.warning("cannot write the status file %s (`faktoryd status` will fail): %s", self.status_file, exc)

    def _set_title(self) -> None:
        set_title(f"faktoryd supervisor [{self._status_text()}] {self.config.path}")

    def _shutdown_cleanup(self) -> None:
        self.failer.flush(time.monotonic())
        if self.failer.pending:
            log.error(
                "could not FAIL %d job(s) of killed workers before exiting; Faktory will retry them when "
                "their reservation expires",
                self.failer.pending,
            )
        self.failer.close()
        self.notifier.close()
        with contextlib.suppress(OSError):
            self.status_file.unlink()
        signal.set_wakeup_fd(-1)
        self.selector.close()
        os.close(self._sig_r)
        os.close(self._sig_w)


def _noop(signum: int, frame: object) -> None:
    """Signals are read from the wakeup fd; the Python-level handler has nothing to do."""
