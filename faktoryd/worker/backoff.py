"""Reconnecting: capped exponential backoff with jitter, and one log line per outage and per recovery.

Every connection of a worker reconnects on its own, but they all see the same outage; :class:`Outage` keeps
the log to one warning when the first connection is lost and one line when the last one is back.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from ..connection import Connection
from ..errors import AuthenticationError, FaktoryError
from ..settings import Settings

log = logging.getLogger("faktoryd.worker")


class Backoff:
    """Delays of ``initial * 2**n`` seconds capped at ``cap``, each drawn in ``[d/2, d]`` so that many
    workers losing the same server do not all come back in the same instant."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.cap = cap
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return base / 2 + self._rng() * base / 2

    def reset(self) -> None:
        self._attempt = 0


class Outage:
    """Tracks which connections of one worker are down, to log an outage once and its end once.

    An idle connection may only notice an outage after the others have recovered (the heartbeat between beats,
    a processor busy with a long job). Its failure belongs to the outage already logged when its connection
    was opened before that outage began: it is then handled silently.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._down: set[object] = set()
        self._began = float("-inf")
        self._announced = False
        self._lock = threading.Lock()

    def down(self, who: object, reason: BaseException, since: float | None = None) -> None:
        """``who`` lost its connection (opened at monotonic time ``since``; None if it never had one)."""
        with self._lock:
            announce = False
            if not self._down and not (since is not None and since < self._began):
                self._began = time.monotonic()
                self._announced = announce = True
            self._down.add(who)
        if announce:
            log.warning("lost the Faktory server at %s (%s); reconnecting with backoff", self.url, reason)
        else:
            log.debug("%s also lost the server: %s", who, reason)

    def up(self, who: object) -> None:
        with self._lock:
            if who not in self._down:
                return
            self._down.discard(who)
            announce = not self._down and self._announced
            if announce:
                self._announced = False
            elapsed = time.monotonic() - self._began
        if announce:
            log.warning("reconnected to the Faktory server at %s after %.1f s", self.url, elapsed)

    def forget(self, who: object) -> None:
        """``who`` stopped trying (the worker is stopping): it no longer holds the outage open."""
        with self._lock:
            self._down.discard(who)


class Reconnector:
    """Opens the worker's connections (every one with the same wid and labels) and retries with backoff.

    ``sleep_while(keep_waiting, seconds)`` is how it waits between attempts: the worker's lifecycle ends the
    wait as soon as ``keep_trying()`` turns false, even when that happened during the failed attempt, so a
    stopping worker does not sit out a 30 s delay.
    """

    def __init__(
        self,
        settings: Settings,
        wid: str,
        labels: tuple[str, ...],
        outage: Outage,
        sleep_while: Callable[[Callable[[], bool], float], None],
    ) -> None:
        self.settings = settings
        self.wid = wid
        self.labels = labels
        self.outage = outage
        self._sleep_while = sleep_while

    def open(self) -> Connection:
        """One attempt: a connected worker connection, or FaktoryConnectionError / AuthenticationError."""
        return Connection(self.settings, wid=self.wid, labels=self.labels).open()

    def connect(
        self,
        who: object,
        keep_trying: Callable[[], bool],
        backoff: Backoff,
        sleep: Callable[[float], None] | None = None,
    ) -> Connection | None:
        """Open a connection, retrying with ``backoff`` while ``keep_trying()``; None if it said stop first.

        ``sleep`` replaces the default wait between attempts, for a caller that must be woken by its own stop
        (the heartbeat). A refused password is raised at once: waiting will not fix it.
        """
        while keep_trying():
            try:
                conn = self.open()
            except AuthenticationError:
                self.outage.forget(who)
                raise
            except FaktoryError as exc:
                self.outage.down(who, exc)
                if sleep is not None:
                    sleep(backoff.next())
                else:
                    self._sleep_while(keep_trying, backoff.next())
                continue
            self.outage.up(who)
            backoff.reset()
            return conn
        self.outage.forget(who)
        return None
