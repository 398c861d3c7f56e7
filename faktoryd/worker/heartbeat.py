"""The heartbeat thread: BEAT on its own connection, and the FAILs of jobs taken by the watchdog.

It beats every ``interval`` seconds (and at once when the local state changes), with ``rss_kb`` and, once quiet
or terminating, ``current_state``, until the worker stops. A ``quiet`` or ``terminate`` reply changes the
lifecycle; ``-ERR unknown worker`` (the server reaped us) re-registers with a fresh HELLO. FAILs handed over by
the watchdog go out on this same connection, so a processor stuck in a handler cannot hold them up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from .. import protocol
from ..connection import Connection
from ..errors import AuthenticationError, FaktoryError, ServerError
from ..jobs import Job
from .backoff import Backoff
from .errors import errtype_of
from .report import log_finish, message_of
from .runtime import Runtime

log = logging.getLogger("faktoryd.worker")

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def rss_kb() -> int:
    """This process's resident memory in KiB (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


class Heartbeat:
    def __init__(self, runtime: Runtime, interval: float = 15.0) -> None:
        self.runtime = runtime
        self.interval = interval
        self.conn: Connection | None = None
        self._outbox: deque[tuple[Job, bytes, BaseException, float]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._backoff = Backoff()
        self._connected_at: float | None = None
        self._sent_state: str | None = None
        self._resent = False  # the FAIL at the head of the outbox may have reached the server already
        self._registered = False
        self.thread = threading.Thread(target=self._main, name="faktoryd-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Look again now: the lifecycle changed or a FAIL is waiting."""
        with self._cond:
            self._cond.notify()

    def fail_later(self, job: Job, error: BaseException, backtrace: list[str], started: float) -> None:
        """Queue the FAIL of a job the watchdog took from its processor (``started``: when the job began)."""
        command = protocol.fail(job.jid, errtype_of(error), message_of(error), backtrace)
        with self._cond:
            self._outbox.append((job, command, error, started))
            self._cond.notify()

    @property
    def pending(self) -> int:
        """FAILs not delivered yet."""
        return len(self._outbox)

    def stop(self) -> None:
        """Stop beating (undelivered FAILs are given up, with an error line each); END the connection."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.thread.join()

    def _main(self) -> None:
        try:
            self._loop()
        except AuthenticationError as exc:
            log.error("%s", exc)
            self.runtime.fatal(exc)
        except BaseException as exc:
            log.critical("heartbeat crashed; stopping the worker", exc_info=True)
            self.runtime.fatal(exc)
        finally:
            conn, self.conn = self.conn, None
            if conn is not None:
                conn.close()
            for job, _, _, _ in self._outbox:
                log.error(
                    "could not FAIL %s %s before exiting; it is retried when its reservation expires",
                    job.jobtype,
                    job.jid,
                )

    def _loop(self) -> None:
        lifecycle = self.runtime.lifecycle
        next_beat = time.monotonic()
        while True:
            with self._cond:
                while not self._stopping and not self._outbox:
                    wait = next_beat - time.monotonic()
                    if wait <= 0 or lifecycle.beat_state != self._sent_state:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
            if self._outbox and not self._deliver():
                continue
            due = time.monotonic() >= next_beat or lifecycle.beat_state != self._sent_state
            if due and self._beat():
                next_beat = time.monotonic() + self.interval

    def _keep_trying(self) -> bool:
        return not self._stopping

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait(seconds)

    def _request(self, command: bytes) -> protocol.Reply:
        """One command on the heartbeat connection, reconnecting first if needed. Raises on failure."""
        conn = self.conn
        if conn is None:
            runtime = self.runtime
            conn = self.conn = runtime.reconnector.connect(self, self._keep_trying, self._backoff, self._sleep)
            if conn is None:
                raise _Stopping
            self._connected_at = time.monotonic()
            if not self._registered:
                self._registered = True
                runtime.ready()
        return conn.request(command)

    def _lost(self, exc: BaseException) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.runtime.outage.down(self, exc, self._connected_at)
        self._connected_at = None
        self._sleep(self._backoff.next())

    def _deliver(self) -> bool:
        """Send the queued FAILs; False when the connection failed (retried after a pause)."""
        while self._outbox:
            job, command, error, started = self._outbox[0]
            try:
                self._request(command)
            except _Stopping:
                return False
            except AuthenticationError:
                raise
            except ServerError as exc:
                if exc.message.startswith(("shutdown in progress", "too many connections")):
                    self._lost(exc)
                    return False
                if not (self._resent and exc.message.startswith("Job not found")):
                    log.warning("server refused the FAIL of %s %s: %s", job.jobtype, job.jid, exc)
            except FaktoryError as exc:
                self._resent = self._resent or getattr(exc, "request_sent", True)
                self._lost(exc)
                return False
            self._resent = False
            self._outbox.popleft()
            log_finish(job, time.monotonic() - started, error)
            if self.runtime.on_job_done is not None:
                self.runtime.on_job_done(job)
            self.runtime.poke()
        return True

    def _beat(self) -> bool:
        """One BEAT; acts on the reply. False if it could not be sent."""
        runtime = self.runtime
        lifecycle = runtime.lifecycle
        state = lifecycle.beat_state
        try:
            reply = self._request(protocol.beat(runtime.wid, rss_kb=rss_kb(), current_state=state))
        except _Stopping:
            return False
        except AuthenticationError:
            raise
        except ServerError as exc:
            if exc.message.startswith("unknown worker"):
                log.warning("the server forgot this worker (reaped after missed heartbeats?); registering again")
                conn, self.conn = self.conn, None
                if conn is not None:
                    conn.close()
                self._sleep(self._backoff.next())
                return False
            self._lost(exc)
            return False
        except FaktoryError as exc:
            self._lost(exc)
            return False
        self._sent_state = state
        try:
            told = protocol.parse_beat(reply)
        except FaktoryError as exc:
            log.error("%s", exc)
            return True
        if told == "quiet" and lifecycle.quiet():
            log.warning("the server asked this worker to quiet: no more fetching")
        elif told == "terminate" and lifecycle.terminate(runtime.shutdown_timeout, "terminate"):
            log.warning("the server asked this worker to terminate")
        return True


class _Stopping(Exception):
    """The heartbeat is stopping and has no connection: give up the current command."""
