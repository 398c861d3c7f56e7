"""What a FAIL says about an error (errtype, message of 1000 characters, backtrace of 50 lines), and the log
lines of each job's start and end (with ``jid``, ``jobtype`` and ``duration`` as record attributes too, for
structured log formats).

Backtraces start below the worker's own machinery (this package, and the thread bootstrap above it): those
frames are the same for every job and would push the handler's frames out of the server's 50-line limit.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Sequence
from types import FrameType, TracebackType

from .. import protocol
from ..jobs import Job
from .errors import InvalidJobPayload, UnknownJobType, errtype_of

log = logging.getLogger("faktoryd.worker")

MAX_MESSAGE = 1000
MAX_BACKTRACE = 50
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def message_of(exc: BaseException) -> str:
    """``str(exc)`` cut to what the server keeps; never raises (a broken ``__str__`` falls back)."""
    try:
        text = str(exc)
    except Exception:
        text = f"<unprintable {type(exc).__name__}>"
    return (text or type(exc).__name__)[:MAX_MESSAGE]


def _format(frames: Sequence[traceback.FrameSummary]) -> list[str]:
    """The frames below the worker's own (the handler's), as one line per frame plus its source."""
    start = 0
    for index, frame in enumerate(frames):
        if frame.filename.startswith(_OWN_DIR):
            start = index + 1
    kept = list(frames[start:]) or list(frames)
    return [line.rstrip("\n") for line in traceback.format_list(kept[-MAX_BACKTRACE:])]


def traceback_lines(tb: TracebackType | None) -> list[str]:
    """The traceback of an exception, one entry per frame, innermost last."""
    return _format(traceback.extract_tb(tb))


def stack_lines(frame: FrameType | None) -> list[str]:
    """Where a thread is now (for a job interrupted by a deadline), innermost last."""
    return _format(traceback.extract_stack(frame)) if frame is not None else []


def fail_for(jid: str, exc: BaseException, backtrace: list[str] | None = None) -> bytes:
    """The FAIL command for a job that ended with ``exc`` (its own traceback unless ``backtrace`` is given)."""
    lines = traceback_lines(exc.__traceback__) if backtrace is None else backtrace
    return protocol.fail(jid, errtype_of(exc), message_of(exc), lines)


def log_start(job: Job) -> None:
    if log.isEnabledFor(logging.INFO):
        extra = {"jid": job.jid, "jobtype": job.jobtype, "queue": job.queue}
        log.info("start %s %s", job.jobtype, job.jid, extra=extra)


def log_finish(job: Job, duration: float, error: BaseException | None) -> None:
    """``done`` or ``fail`` with the duration. A job this worker cannot even run (unknown jobtype, bad
    payload) is worth a warning; a handler's exception is business as usual."""
    level = logging.INFO
    if isinstance(error, UnknownJobType | InvalidJobPayload):
        level = logging.WARNING
    if not log.isEnabledFor(level):
        return
    extra = {"jid": job.jid, "jobtype": job.jobtype, "queue": job.queue, "duration": round(duration, 6)}
    if error is None:
        log.log(level, "done %s %s in %.3f s", job.jobtype, job.jid, duration, extra=extra)
    else:
        errtype = errtype_of(error)
        extra["errtype"] = errtype
        text = "fail %s %s in %.3f s: %s: %s"
        log.log(level, text, job.jobtype, job.jid, duration, errtype, error, extra=extra)
