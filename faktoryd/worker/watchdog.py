"""One thread that enforces every deadline: job time limits and the shutdown deadline.

It scans the processors every ``tick`` seconds (a handful of attribute reads each), so deadlines cost no
thread, timer or lock per job. When a job's time is up it takes the job from its processor (see
:mod:`.processor`), interrupts the handler, and hands the FAIL to the heartbeat thread, which sends it on its
own connection: a handler stuck in C cannot delay the FAIL. If the handler does not return within ``grace``
seconds while the worker keeps running, the processor is retired and a fresh one takes its slot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..context import JobContext
from .errors import JobTimeout, Shutdown
from .interrupt import raise_in_thread, thread_frame
from .lifecycle import State
from .processor import Processor
from .report import stack_lines
from .runtime import Runtime

log = logging.getLogger("faktoryd.worker")


class Watchdog:
    def __init__(
        self,
        runtime: Runtime,
        processors: Callable[[], Sequence[Processor]],
        replace: Callable[[Processor], None],
        *,
        tick: float = 0.1,
        grace: float = 2.0,
    ) -> None:
        self.runtime = runtime
        self._processors = processors
        self._replace = replace
        self.tick = tick
        self.grace = grace
        self._taken: list[tuple[Processor, JobContext, float]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name="faktoryd-watchdog", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()

    def _main(self) -> None:
        try:
            while not self._stop.wait(self.tick):
                self.check(time.monotonic())
        except BaseException as exc:
            log.critical("watchdog crashed; stopping the worker", exc_info=True)
            self.runtime.fatal(exc)

    def check(self, now: float) -> None:
        """Take and interrupt every job past its deadline; replace processors stuck past the grace period."""
        shutdown = self.runtime.lifecycle.deadline
        for proc in self._processors():
            ctx = proc.current
            if ctx is None:
                continue
            if shutdown is not None and shutdown <= ctx.deadline:
                if now >= shutdown:
                    self._take(proc, ctx, Shutdown, now)
            elif now >= ctx.deadline:
                self._take(proc, ctx, JobTimeout, now)
        if self._taken:
            self._check_stuck(now)

    def _take(self, proc: Processor, ctx: JobContext, reason: type[JobTimeout | Shutdown], now: float) -> None:
        with proc.lock:
            if proc.current is not ctx:
                return  # it finished in the meantime: its own report goes out
            proc.current = None
            proc.taken = ctx
            backtrace = stack_lines(thread_frame(proc.ident))
            task, loop = proc.task, proc.loop
            if task is not None and loop is not None:
                loop.call_soon_threadsafe(task.cancel)
            else:
                raise_in_thread(proc.ident, reason)
        job = ctx.job
        error = reason()
        if reason is JobTimeout:
            error = JobTimeout(f"job exceeded its time limit of {ctx.deadline - ctx.started:.1f} s")
        log.warning("%s %s: %s; interrupting it", job.jobtype, job.jid, error)
        self.runtime.fail_later(job, error, backtrace, ctx.started)
        self._taken.append((proc, ctx, now))
        self.runtime.poke()

    def _check_stuck(self, now: float) -> None:
        keep = []
        for proc, ctx, taken_at in self._taken:
            if proc.taken is not ctx or proc.retired:
                continue  # the handler returned
            if now - taken_at < self.grace or self.runtime.lifecycle.state is not State.RUNNING:
                keep.append((proc, ctx, taken_at))
                continue
            log.error(
                "%s %s does not respond to the interrupt (blocked outside Python?); "
                "leaving its thread behind and starting a new processor",
                ctx.job.jobtype,
                ctx.job.jid,
            )
            self._replace(proc)
        self._taken = keep
