"""The exceptions of the worker, and the errtype each one reports to the server.

The errtype of a FAIL is the exception's qualified class name (``module.QualName``, builtins bare). A class may
pin its own with a ``faktory_errtype`` class attribute: the worker's own exceptions do, so that their errtypes
stay the documented ``faktoryd.JobTimeout`` and ``Faktory::Shutdown`` wherever the classes live.
"""

from __future__ import annotations

from typing import ClassVar


class WorkerHalt(Exception):
    """Raised by a handler to stop the whole worker cleanly (like a TERM signal).

    The job that raised it is FAILed (so it is retried by its retry policy) unless ``ack=True``, which
    reports it done. Other running jobs get the usual ``shutdown_timeout`` to finish.
    """

    faktory_errtype: ClassVar[str] = "faktoryd.WorkerHalt"

    def __init__(self, message: str = "worker halted by a handler", *, ack: bool = False) -> None:
        super().__init__(message)
        self.ack = ack


class JobTimeout(BaseException):
    """Raised inside a handler that ran past its time limit.

    A BaseException, like KeyboardInterrupt, so that a handler's ``except Exception:`` does not swallow it.
    The job is FAILed as ``faktoryd.JobTimeout`` whatever the handler does with it.
    """

    faktory_errtype: ClassVar[str] = "faktoryd.JobTimeout"

    def __init__(self, message: str = "job exceeded its time limit") -> None:
        super().__init__(message)


class Shutdown(BaseException):
    """Raised inside a handler still running when the worker's shutdown deadline passes.

    The job is FAILed as ``Faktory::Shutdown`` (the errtype of the Ruby worker), so it is retried soon.
    """

    faktory_errtype: ClassVar[str] = "Faktory::Shutdown"

    def __init__(self, message: str = "worker shut down before the job finished") -> None:
        super().__init__(message)


class UnknownJobType(Exception):
    """No handler is registered for a fetched job's jobtype."""

    faktory_errtype: ClassVar[str] = "faktoryd.UnknownJobType"


class InvalidJobPayload(Exception):
    """A fetched job could not be decoded (bad JSON, missing jobtype or args, wrong types)."""

    faktory_errtype: ClassVar[str] = "faktoryd.InvalidJobPayload"


INTERRUPTS = (JobTimeout, Shutdown)
"""The exceptions the worker itself raises into a handler's thread."""


def errtype_of(exc: BaseException) -> str:
    """The errtype reported for ``exc``: its class's ``faktory_errtype``, else its qualified class name."""
    cls = type(exc)
    pinned = getattr(cls, "faktory_errtype", None)
    if isinstance(pinned, str) and pinned:
        return pinned
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
