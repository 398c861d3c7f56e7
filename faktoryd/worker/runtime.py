"""What the threads of one worker share: identity, lifecycle, connections, handlers and options.

Built once by :class:`~faktoryd.worker.worker.Worker`; the processor, heartbeat and watchdog threads read it
and never change it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..jobs import Job
from ..registry import Handler
from ..settings import Settings
from .backoff import Outage, Reconnector
from .lifecycle import Lifecycle
from .middleware import Middleware

DEFAULT_RESERVE_FOR = 1800
MIN_RESERVE_FOR = 60
MAX_RESERVE_FOR = 86400


@dataclass(frozen=True, eq=False)
class Runtime:
    settings: Settings
    wid: str
    lifecycle: Lifecycle
    outage: Outage
    reconnector: Reconnector
    fetch_line: Callable[[], bytes]
    lookup: Callable[[str], Handler | None]
    catch_all: bool
    """True when the handler is one callable receiving the Job, not a registry called with ``*args``."""
    middleware: tuple[Middleware, ...]
    job_timeout: float | None
    shutdown_timeout: float
    report_grace: float
    """Seconds past the shutdown deadline that undelivered ACK/FAILs keep being retried during an outage."""
    on_job_start: Callable[[Job], None] | None
    on_job_done: Callable[[Job], None] | None
    fail_later: Callable[[Job, BaseException, list[str], float], None]
    """Hand a FAIL (job, error, backtrace, monotonic start time) to the heartbeat thread, which delivers it on
    its own connection."""
    ready: Callable[[], None]
    """Called by the heartbeat once its first HELLO succeeded: the worker is registered with the server."""
    poke: Callable[[], None]
    """Wake the worker's control loop (a thread ended, a job was abandoned...)."""
    fatal: Callable[[BaseException], None]
    """Report an error that must stop the worker and be raised from ``run()``."""

    def time_limit(self, job: Job, handler_timeout: float | None) -> float:
        """Seconds the job may run: ``custom["timeout"]``, else the handler's, else the worker's default, and
        never past its reservation (clamped as the server does) minus a margin, so the server never gives it
        to another worker while it still runs here."""
        reserve = job.reserve_for or DEFAULT_RESERVE_FOR
        reserve = min(max(reserve, MIN_RESERVE_FOR), MAX_RESERVE_FOR)
        cap = reserve - max(10.0, reserve * 0.05)
        limit = handler_timeout or self.job_timeout
        custom = job.custom
        if custom:
            wanted = custom.get("timeout")
            if isinstance(wanted, int | float) and not isinstance(wanted, bool) and wanted > 0:
                limit = wanted
        return cap if limit is None else min(float(limit), cap)
