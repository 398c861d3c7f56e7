"""Interrupting a handler's thread from another thread, and dumping every thread's stack.

CPython can raise an exception asynchronously in another thread (``PyThreadState_SetAsyncExc``). It is
delivered the next time that thread runs Python bytecode: ordinary Python code stops at once, but a thread
blocked inside C (``time.sleep``, a socket read, a C extension) only sees it when the call returns.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import traceback
from types import FrameType

log = logging.getLogger("faktoryd.worker")

# Two prototypes of the same C function: one passes an exception class, the other NULL (cancel).
_set_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


def raise_in_thread(ident: int, exc_type: type[BaseException]) -> bool:
    """Schedule ``exc_type`` to be raised in the thread ``ident``. False if no such thread exists."""
    return _set_async_exc(ident, exc_type) == 1


def clear_pending(ident: int) -> None:
    """Cancel an exception scheduled by :func:`raise_in_thread` that has not been delivered yet."""
    _clear_async_exc(ident, None)


def thread_frame(ident: int) -> FrameType | None:
    """The frame thread ``ident`` is executing now (None if it has ended)."""
    return sys._current_frames().get(ident)


def dump_threads() -> None:
    """Log every thread's stack (SIGTTIN), to see where a stuck worker is."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    log.warning("thread dump: %d threads", len(frames))
    for ident, frame in frames.items():
        stack = "".join(traceback.format_stack(frame))
        log.warning("thread %s (%d):\n%s", names.get(ident, "?"), ident, stack.rstrip())
