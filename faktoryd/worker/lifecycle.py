"""The worker process's lifecycle: RUNNING -> QUIET -> TERMINATING -> STOPPED, and the shutdown deadline.

States only move forward, as on the server (a quiet worker cannot be un-quieted; it must restart). Every
thread reads :attr:`Lifecycle.state` without a lock on its hot path; changes happen under one condition
variable, which also lets threads sleep until the next change instead of polling.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("faktoryd.worker.lifecycle")


class State(enum.Enum):
    RUNNING = "running"
    QUIET = "quiet"
    TERMINATING = "terminating"
    STOPPED = "stopped"


class Event(enum.Enum):
    QUIET = "quiet"
    TERMINATE = "terminate"
    STOPPED = "stopped"


# (state, event) -> next state. A pair that is absent is ignored: e.g. QUIET after TERMINATE changes nothing.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.RUNNING, Event.QUIET): State.QUIET,
    (State.RUNNING, Event.TERMINATE): State.TERMINATING,
    (State.QUIET, Event.TERMINATE): State.TERMINATING,
    (State.RUNNING, Event.STOPPED): State.STOPPED,
    (State.QUIET, Event.STOPPED): State.STOPPED,
    (State.TERMINATING, Event.STOPPED): State.STOPPED,
}

# What BEAT reports as ``current_state`` in each state (None: omit it while running).
BEAT_STATE: dict[State, str | None] = {
    State.RUNNING: None,
    State.QUIET: "quiet",
    State.TERMINATING: "terminate",
    State.STOPPED: "terminate",
}

REASONS = ("signal", "stop", "terminate", "halt", "error")
"""Why a worker stops: a TERM/INT signal, ``Worker.stop()``, the server's terminate (BEAT reply or web UI), a
handler's WorkerHalt, or an error that ``run()`` raises."""


class Lifecycle:
    """The shared state of one worker, with the deadline by which running jobs must be done when terminating.

    ``on_change`` is called (outside the lock) after every change, including a moved deadline.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.state = State.RUNNING
        self.deadline: float | None = None
        """``time.monotonic()`` by which running jobs must finish; set when terminating."""
        self.reason: str | None = None
        """Why the worker is terminating (the first reason given): see :data:`REASONS`."""
        self._cond = threading.Condition(threading.Lock())
        self._on_change = on_change

    def __repr__(self) -> str:
        return f"<Lifecycle {self.state.value}>"

    @property
    def fetching(self) -> bool:
        """Whether new jobs may be fetched (RUNNING only)."""
        return self.state is State.RUNNING

    @property
    def beat_state(self) -> str | None:
        return BEAT_STATE[self.state]

    def quiet(self) -> bool:
        """Stop fetching; keep running jobs and beating. True if the state changed."""
        return self._handle(Event.QUIET)

    def terminate(self, timeout: float, reason: str) -> bool:
        """Stop fetching and give running jobs ``timeout`` seconds. True if the state changed.

        When already terminating, a second call only ever brings the deadline closer.
        """
        if reason not in REASONS:
            raise ValueError(f"unknown stop reason {reason!r}: expected one of {', '.join(REASONS)}")
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            changed = self._apply(Event.TERMINATE)
            if self.state is not State.TERMINATING:
                return False
            if changed:
                self.reason = reason
            moved = self.deadline is None or deadline < self.deadline
            if moved:
                self.deadline = deadline
                self._cond.notify_all()
        if (changed or moved) and self._on_change is not None:
            self._on_change()
        return changed

    def stopped(self) -> bool:
        """The worker is done: every job is reported and the threads are told to leave."""
        return self._handle(Event.STOPPED)

    def remaining(self) -> float | None:
        """Seconds left before the shutdown deadline, or None when not terminating."""
        deadline = self.deadline
        return None if deadline is None else deadline - time.monotonic()

    def sleep_while(self, keep_waiting: Callable[[], bool], seconds: float) -> None:
        """Sleep up to ``seconds`` while ``keep_waiting()`` holds. It is checked under the lock every change
        is made under, so a stop that lands just before the sleep is not missed."""
        end = time.monotonic() + seconds
        with self._cond:
            while keep_waiting():
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def wait_while(self, state: State, timeout: float | None = None) -> State:
        """Sleep while the state is ``state`` (at most ``timeout`` seconds); return the state then."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.state is state:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self.state

    def _handle(self, event: Event) -> bool:
        with self._cond:
            changed = self._apply(event)
        if changed and self._on_change is not None:
            self._on_change()
        return changed

    def _apply(self, event: Event) -> bool:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            return False
        log.debug("lifecycle %s -> %s", self.state.value, new.value)
        self.state = new
        self._cond.notify_all()
        return True
