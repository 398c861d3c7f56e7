"""The Worker: one process's worth of processors, a heartbeat, a watchdog, and the loop that steers them.

``run()`` owns the control loop. Signals (when ``run()`` is called from the main thread), ``stop()``,
``quiet()`` and the other threads only record what happened and wake that loop through a self-pipe; the loop
changes the lifecycle, runs the hooks, and ends the run once every job is reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

from ..jobs import Job
from ..registry import Handler, Registry, default_registry
from ..settings import Settings, env_settings
from .backoff import Outage, Reconnector
from .fetch import queue_order as fetch_order
from .heartbeat import Heartbeat
from .interrupt import dump_threads
from .lifecycle import Lifecycle, State
from .middleware import Hook, Middleware, run_hooks
from .processor import Processor
from .runtime import Runtime
from .watchdog import Watchdog

log = logging.getLogger("faktoryd.worker")

SIGNALS = (
    signal.SIGTERM,  # terminate; a second TERM or INT skips the wait for running jobs
    signal.SIGINT,
    signal.SIGUSR2,  # terminate, and only that however often it comes (what a supervisor sends)
    signal.SIGQUIT,  # terminate without waiting: running jobs are FAILed as Faktory::Shutdown now
    signal.SIGTSTP,  # quiet
    signal.SIGTTIN,  # log every thread's stack
    signal.SIGUSR1,  # the same
)
"""The signals ``run()`` handles when it is called from the main thread."""

HandlerSpec = Registry | Mapping[str, Callable[..., Any]] | Callable[[Job], Any] | None


class Worker:
    """Fetches and runs jobs with ``threads`` processor threads until stopped.

    ``handlers`` is a :class:`~faktoryd.registry.Registry` (default: the one ``@faktoryd.job`` fills), a
    ``{jobtype: function}`` mapping, or one catch-all callable that receives each :class:`~faktoryd.Job`.
    ``queues`` is a list (fetched in ``queue_order``: ``"strict"`` by default, or ``"random"``) or a
    ``{queue: weight}`` mapping (``"weighted"``).

    Time limits: a job runs at most ``custom["timeout"]`` seconds, else its handler's ``timeout``, else
    ``job_timeout`` (None: no limit of its own), and never longer than its ``reserve_for`` minus a margin.
    ``shutdown_timeout`` is what running jobs get when the worker terminates; then they are FAILed as
    ``Faktory::Shutdown`` so they are retried.

    For a supervisor: pass ``wid``; ``on_ready(worker)`` is called once the worker has registered (first HELLO),
    ``on_job_start(job)`` when a job starts and ``on_job_done(job)`` once its ACK or FAIL is delivered, all from
    worker threads; ``stop()`` and ``quiet()`` work from any thread, and ``stop_reason`` says why it stopped.

    Hooks: ``on_startup`` run in ``run()`` before anything connects (one that raises aborts the run);
    ``on_quiet`` and ``on_shutdown`` run in ``run()``'s thread when the worker quiets or starts terminating.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        queues: Sequence[str] | Mapping[str, float] = ("default",),
        handlers: HandlerSpec = None,
        *,
        threads: int = 1,
        queue_order: str | None = None,
        labels: Sequence[str] | None = None,
        wid: str | None = None,
        shutdown_timeout: float = 25.0,
        job_timeout: float | None = None,
        heartbeat_interval: float = 15.0,
        middleware: Sequence[Middleware] = (),
        on_startup: Sequence[Hook] = (),
        on_quiet: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        on_job_start: Callable[[Job], None] | None = None,
        on_job_done: Callable[[Job], None] | None = None,
        on_ready: Hook | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads!r}")
        if shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must not be negative, not {shutdown_timeout!r}")
        if job_timeout is not None and not job_timeout > 0:
            raise ValueError(f"job_timeout must be a positive number of seconds or None, not {job_timeout!r}")
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be positive, not {heartbeat_interval!r}")
        self.settings = settings if settings is not None else env_settings()
        self.wid = wid or secrets.token_hex(8)
        self.labels = tuple(self.settings.labels if labels is None else labels)
        self.threads = threads
        self.shutdown_timeout = float(shutdown_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.on_startup = tuple(on_startup)
        self.on_quiet = tuple(on_quiet)
        self.on_shutdown = tuple(on_shutdown)
        self.on_ready = on_ready
        self.lifecycle = Lifecycle(on_change=self._changed)
        self.processors: list[Processor] = []
        self._retired: list[Processor] = []
        self._fetch_order = fetch_order(queues, queue_order, self.settings.queue_name)
        lookup, catch_all = _dispatch(handlers)
        outage = Outage(self.settings.url)
        self._heartbeat: Heartbeat | None = None
        self._watchdog: Watchdog | None = None
        self._runtime = Runtime(
            settings=self.settings,
            wid=self.wid,
            lifecycle=self.lifecycle,
            outage=outage,
            reconnector=Reconnector(self.settings, self.wid, self.labels, outage, self.lifecycle.sleep_while),
            fetch_line=self._fetch_order,
            lookup=lookup,
            catch_all=catch_all,
            middleware=tuple(middleware),
            job_timeout=job_timeout,
            shutdown_timeout=self.shutdown_timeout,
            report_grace=10.0,
            on_job_start=on_job_start,
            on_job_done=on_job_done,
            fail_later=self._fail_later,
            ready=self._ready,
            poke=self._poke,
            fatal=self._fatal_error,
        )
        self._signals: deque[int] = deque()
        self._fatal: BaseException | None = None
        self._wake_r, self._wake_w = -1, -1
        self._started = False

    def __repr__(self) -> str:
        return f"<Worker {self.wid} {self.lifecycle.state.value} {self.settings.url}>"

    @property
    def queues(self) -> list[str]:
        """The queue names fetched from (with the namespace prefix)."""
        return list(self._fetch_order.queues)

    # ------------------------------------------------------------------------------------------ control

    def quiet(self) -> None:
        """Stop fetching; running jobs finish and the worker keeps beating. Any thread may call it."""
        self.lifecycle.quiet()

    def stop(self, graceful: bool = True) -> None:
        """Terminate: no new FETCH; running jobs get ``shutdown_timeout`` seconds (none unless ``graceful``),
        then are FAILed as ``Faktory::Shutdown``. ``run()`` returns when everything is reported."""
        self.lifecycle.terminate(self.shutdown_timeout if graceful else 0.0, "stop")

    @property
    def stop_reason(self) -> str | None:
        """Why the worker stopped or is stopping: ``"signal"``, ``"stop"``, ``"terminate"`` (the server),
        ``"halt"`` (a handler's WorkerHalt), ``"error"``; None while it runs."""
        return self.lifecycle.reason

    def run(self) -> None:
        """Work until stopped (signal, ``stop()``, the server's terminate, a handler's WorkerHalt).

        In the main thread it handles TERM/INT (terminate; a second one skips the wait), USR2 (terminate,
        idempotent), QUIT (terminate at once), TSTP (quiet) and TTIN/USR1 (log every thread's stack), and
        restores the previous handlers on return.
        """
        if self._started:
            raise RuntimeError("a Worker runs once: create a new one to run again")
        self._started = True
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = self._install_signals()
        try:
            for hook in self.on_startup:
                hook(self)  # a startup hook that raises stops the worker before it fetches anything
            log.info(
                "worker %s starting: %d thread(s), queues %s, server %s",
                self.wid,
                self.threads,
                " ".join(self.queues),
                self.settings.url,
            )
            self._start_threads()
            self._control()
        finally:
            self._finish()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self._fatal is not None:
            raise self._fatal
        log.info("worker %s stopped", self.wid)

    # ------------------------------------------------------------------------------------------ internals

    def _start_threads(self) -> None:
        runtime = self._runtime
        self._heartbeat = Heartbeat(runtime, self.heartbeat_interval)
        self._heartbeat.start()
        self.processors = [Processor(runtime, slot) for slot in range(self.threads)]
        self._watchdog = Watchdog(runtime, lambda: self.processors, self._replace)
        self._watchdog.start()
        for proc in self.processors:
            proc.start()

    def _control(self) -> None:
        announced = State.RUNNING
        while True:
            self._wait_wakeup(1.0)
            while self._signals:
                self._handle_signal(self._signals.popleft())
            state = self.lifecycle.state
            if state is not announced:
                if state is State.QUIET:
                    log.warning("worker %s is quiet: no more fetching", self.wid)
                    run_hooks(self.on_quiet, self, "quiet")
                elif state is State.TERMINATING:
                    left = self.lifecycle.remaining() or 0.0
                    log.warning("worker %s is terminating: running jobs get %.1f s", self.wid, max(left, 0.0))
                    run_hooks(self.on_shutdown, self, "shutdown")
                announced = state
            if state is State.TERMINATING and self._all_reported():
                return

    def _all_reported(self) -> bool:
        """Every processor has left or is stuck in a handler whose job was taken, and every FAIL is out."""
        for proc in self.processors:
            if not proc.finished and not proc.stuck and proc.thread.is_alive():
                return False
        heartbeat = self._heartbeat
        if heartbeat is not None and heartbeat.pending:
            deadline = self.lifecycle.deadline
            if deadline is None or time.monotonic() < deadline + self._runtime.report_grace:
                return False
        return True

    def _finish(self) -> None:
        """After the control loop (or a failed start): stop the threads, END every connection."""
        self.lifecycle.terminate(0.0, "error")  # only sets the reason if the run ended without one
        while not self._all_reported():  # at once after a normal run; bounded after a failed one
            self._wait_wakeup(0.1)
        self.lifecycle.stopped()
        stuck_until = time.monotonic() + 0.5  # one short wait shared by every thread stuck in a handler
        for proc in self.processors:
            limit = stuck_until - time.monotonic() if proc.stuck else self._runtime.report_grace
            proc.thread.join(timeout=max(limit, 0.0))
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        for proc in self.processors + self._retired:
            conn = proc.conn
            if proc.thread.is_alive() and conn is not None:
                log.warning("processor %d is still blocked in a handler; closing its idle connection", proc.slot)
                conn.close()

    def _replace(self, old: Processor) -> None:
        """Called by the watchdog for a processor stuck in a handler: a new one takes its slot."""
        old.retired = True
        self._retired.append(old)
        new = Processor(self._runtime, old.slot)
        self.processors = [new if proc is old else proc for proc in self.processors]
        new.start()

    def _ready(self) -> None:
        log.info("worker %s registered with %s", self.wid, self.settings.url)
        if self.on_ready is not None:
            run_hooks([self.on_ready], self, "ready")

    def _fail_later(self, job: Job, error: BaseException, backtrace: list[str], started: float) -> None:
        assert self._heartbeat is not None
        self._heartbeat.fail_later(job, error, backtrace, started)

    def _fatal_error(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.lifecycle.terminate(self.shutdown_timeout, "error")
        self._poke()

    def _changed(self) -> None:
        self._poke()
        if self._heartbeat is not None:
            self._heartbeat.wake()

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _wait_wakeup(self, timeout: float) -> None:
        readable, _, _ = select.select([self._wake_r], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)

    # ------------------------------------------------------------------------------------------ signals

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Only record it: the control loop acts (a handler must not take locks the interrupted code holds)."""
        self._signals.append(signum)
        self._poke()

    def _handle_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in (signal.SIGTTIN, signal.SIGUSR1):
            dump_threads()
        elif signum == signal.SIGTSTP:
            log.warning("%s: quieting", name)
            self.quiet()
        elif signum == signal.SIGUSR2:
            log.warning("%s: terminating", name)
            self.lifecycle.terminate(self.shutdown_timeout, "signal")
        elif signum == signal.SIGQUIT:
            log.warning("%s: terminating without waiting for running jobs", name)
            self.lifecycle.terminate(0.0, "signal")
        elif self.lifecycle.state is State.TERMINATING:
            log.warning("%s again: not waiting for running jobs", name)
            self.lifecycle.terminate(0.0, "signal")
        else:
            log.warning("%s: terminating", name)
            self.lifecycle.terminate(self.shutdown_timeout, "signal")


def run_worker(
    settings: Settings | None = None,
    queues: Sequence[str] | Mapping[str, float] = ("default",),
    handlers: HandlerSpec = None,
    **options: Any,
) -> None:
    """Build a :class:`Worker` and run it until it stops: ``faktoryd.run_worker(queues=["mail"], threads=4)``."""
    Worker(settings, queues, handlers, **options).run()


def _dispatch(handlers: HandlerSpec) -> tuple[Callable[[str], Handler | None], bool]:
    """How to find the handler of a jobtype, and whether handlers take the Job rather than ``*args``."""
    if handlers is None:
        return default_registry.get, False
    if isinstance(handlers, Registry):
        return handlers.get, False
    if isinstance(handlers, Mapping):
        registry = Registry()
        for jobtype, fn in handlers.items():
            registry.register(fn, jobtype)
        return registry.get, False
    if callable(handlers):
        catch_all = Handler(handlers, getattr(handlers, "__name__", None) or "handler")
        return (lambda jobtype: catch_all), True
    raise TypeError(
        f"handlers must be a Registry, a {{jobtype: function}} mapping or one callable, not {type(handlers).__name__}"
    )
