"""Middleware around job execution, and the worker's lifecycle hooks.

A middleware is ``def mw(job, call_next): ...; return call_next()``: it runs around every job in the processor
thread, sees the job before and the result or exception after, and may skip the job by not calling
``call_next``. Middleware is composed once, when the worker starts; with none the handler is called directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..jobs import Job

log = logging.getLogger("faktoryd.worker")

Middleware = Callable[[Job, Callable[[], Any]], Any]
Hook = Callable[[Any], None]
"""A startup, quiet or shutdown hook: called with the Worker."""


def chain(middleware: Sequence[Middleware], run: Callable[[Job], Any]) -> Callable[[Job], Any]:
    """``run`` wrapped by ``middleware``, the first one outermost."""
    call = run
    for mw in reversed(middleware):
        call = partial(_layer, mw, call)
    return call


def _layer(mw: Middleware, inner: Callable[[Job], Any], job: Job) -> Any:
    return mw(job, partial(inner, job))


def run_hooks(hooks: Sequence[Hook], worker: Any, event: str) -> None:
    """Run hooks for ``event``; one that raises is logged and the others still run."""
    for hook in hooks:
        try:
            hook(worker)
        except Exception:
            log.exception("%s hook %r raised", event, hook)
