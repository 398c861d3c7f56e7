"""What a FAIL says about an error: errtype, message (1000 characters) and backtrace (50 lines).

Backtraces start below the worker's own machinery (this package, and the thread bootstrap above it): those
frames are the same for every job and would push the handler's frames out of the server's 50-line limit.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from types import FrameType, TracebackType

from .. import protocol
from .errors import errtype_of

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
