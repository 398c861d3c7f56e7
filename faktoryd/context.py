"""The job being processed, readable from inside a handler (and from code it calls, or its coroutines).

The worker sets it around each handler call in a :class:`contextvars.ContextVar`, so every thread sees its own
job and an ``async def`` handler's tasks inherit it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .jobs import Job


@dataclass(frozen=True, slots=True)
class JobContext:
    """The current job and what the worker knows about running it."""

    job: Job
    wid: str
    started: float
    """``time.monotonic()`` when the job was fetched."""
    deadline: float
    """``time.monotonic()`` at which the job will be interrupted (its time limit or the shutdown deadline)."""

    @property
    def jid(self) -> str:
        return self.job.jid

    @property
    def jobtype(self) -> str:
        return self.job.jobtype

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def args(self) -> list[Any]:
        return self.job.args

    @property
    def custom(self) -> dict[str, Any]:
        return self.job.custom or {}

    @property
    def retry_count(self) -> int:
        """How many times this job failed before this run (0 on its first run)."""
        return self.job.retry_count

    def elapsed(self) -> float:
        """Seconds since the job was fetched."""
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left before the job's time limit (it may be cut shorter by a shutdown)."""
        return self.deadline - time.monotonic()


_current: ContextVar[JobContext] = ContextVar("faktoryd_current_job")


def current_context() -> JobContext:
    """The context of the job this code runs for. Raises LookupError outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("no current job: faktoryd.current_context() only works inside a job handler") from None


def current_job() -> Job:
    """The Job this code runs for (jid, jobtype, queue, args, custom, retry_count...). LookupError outside one."""
    return current_context().job
