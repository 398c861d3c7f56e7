"""One processor thread: FETCH -> run the handler (time limit, middleware) -> ACK or FAIL, on its own connection.

The hot path is one FETCH, one JSON decode, one handler call and one ACK/FAIL: no sleeps, no extra round trips,
one uncontended lock to hand the job over with the watchdog.

Hand-over with the watchdog: ``current`` holds the running job's context. Whoever clears it under ``lock``
owns the job's report. The watchdog clears it when a deadline passes, interrupts the handler and has the FAIL
sent by the heartbeat thread; the processor then sends nothing for that job, so no late ACK can follow a
timeout. A handler stuck in C keeps this thread; the watchdog retires it and starts a replacement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import protocol
from ..connection import Connection
from ..context import JobContext, _current
from ..errors import AuthenticationError, FaktoryError, ServerError
from ..jobs import Job
from ..registry import Handler
from .backoff import Backoff
from .errors import INTERRUPTS, InvalidJobPayload, Shutdown, UnknownJobType, WorkerHalt, errtype_of
from .interrupt import clear_pending
from .lifecycle import State
from .middleware import chain
from .report import fail_for, log_finish, log_start, message_of
from .runtime import Runtime

log = logging.getLogger("faktoryd.worker")


class Processor:
    """A worker thread with its own connection. ``slot`` is its place among the worker's ``threads``."""

    def __init__(self, runtime: Runtime, slot: int) -> None:
        self.runtime = runtime
        self.slot = slot
        self.lock = threading.Lock()
        self.current: JobContext | None = None
        """The job whose report this thread still owns; the watchdog may take it (under ``lock``)."""
        self.taken: JobContext | None = None
        """Set by the watchdog with ``current``'s job when it takes it; cleared once the handler has returned.
        While set, this thread is stuck in a handler whose job is already reported."""
        self.retired = False
        """Set by the watchdog when a replacement took this slot: leave after the current handler returns."""
        self.finished = False
        """Set as the thread's last act: its connection is closed and it reports nothing more."""
        self.ident = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.conn: Connection | None = None
        self._handler: Handler | None = None
        self._backoff = Backoff()
        self._connected_at: float | None = None
        self._fetch_sent = False
        """A FETCH went out right behind the last ACK/FAIL, on ``conn``; its reply is still to be read."""
        self._pipelining = False
        """Set by ``_loop_jobs``, which reads the replies of pipelined FETCHes (only it may pipeline them)."""
        self._execute = chain(runtime.middleware, self._call_handler)
        self.thread = threading.Thread(target=self._main, name=f"faktoryd-processor-{slot}", daemon=True)

    def __repr__(self) -> str:
        return f"<Processor {self.slot}{' retired' if self.retired else ''}>"

    def start(self) -> None:
        self.thread.start()

    @property
    def stuck(self) -> bool:
        """Its job was taken by the watchdog but the handler has not returned (blocked in C)."""
        return self.taken is not None

    def _main(self) -> None:
        self.ident = threading.get_ident()
        try:
            self._loop_jobs()
        except AuthenticationError as exc:
            log.error("%s", exc)
            self.runtime.fatal(exc)
        except BaseException as exc:
            log.critical("processor %d crashed; stopping the worker", self.slot, exc_info=True)
            self.runtime.fatal(exc)
        finally:
            conn, self.conn = self.conn, None
            if conn is not None:
                conn.close()
            if self.loop is not None and self.task is None:
                self.loop.close()
            self.finished = True  # before the poke: the thread is still "alive" for a moment after it
            self.runtime.poke()

    # ------------------------------------------------------------------------------------------ fetching

    def _loop_jobs(self) -> None:
        runtime = self.runtime
        lifecycle = runtime.lifecycle
        fetch_line = runtime.fetch_line
        self._pipelining = True
        while True:
            if self._fetch_sent:
                # The FETCH that went out with the last ACK/FAIL: its reply comes first, whatever the state
                # (a worker never leaves a FETCH unanswered, PROTOCOL.md 4.5).
                self._fetch_sent = False
                conn = self.conn
                assert conn is not None
                try:
                    reply = conn.read_reply()
                except FaktoryError as exc:
                    self._lost(exc, self._may_fetch)
                    continue
            else:
                if self.retired:
                    return
                state = lifecycle.state
                if state is not State.RUNNING:
                    if state is State.QUIET:
                        lifecycle.wait_while(State.QUIET)
                        continue
                    return
                conn = self.conn or self._connect(self._may_fetch)
                if conn is None:
                    continue
                try:
                    reply = conn.request(fetch_line())
                except FaktoryError as exc:  # lost, garbled, or "-ERR shutdown in progress": start over
                    self._lost(exc, self._may_fetch)
                    continue
            if reply is None:
                continue
            if isinstance(reply, bytes):
                self._process(reply)
            else:
                log.error("unexpected FETCH reply %r; reconnecting", reply)
                self._lost(FaktoryError(f"unexpected FETCH reply {reply!r:.80}"), self._may_fetch)

    def _may_fetch(self) -> bool:
        return self.runtime.lifecycle.fetching and not self.retired

    def _connect(self, keep_trying: Any) -> Connection | None:
        self.conn = self.runtime.reconnector.connect(self, keep_trying, self._backoff)
        self._connected_at = time.monotonic() if self.conn is not None else None
        return self.conn

    def _lost(self, exc: BaseException, keep_waiting: Callable[[], bool] | None = None) -> None:
        """The connection failed (or the server is going away): drop it and wait before reconnecting.

        The fetch loop passes ``keep_waiting`` (still fetching?), so a stop that came during the failed attempt
        ends the wait at once; a report being delivered waits out the backoff or the next lifecycle change."""
        lifecycle = self.runtime.lifecycle
        state = lifecycle.state
        conn, self.conn = self.conn, None
        self._fetch_sent = False
        if conn is not None:
            conn.abort()
        self.runtime.outage.down(self, exc, self._connected_at)
        self._connected_at = None
        lifecycle.sleep_while(keep_waiting or (lambda: lifecycle.state is state), self._backoff.next())

    # ------------------------------------------------------------------------------------------ one job

    def _process(self, payload: bytes) -> None:
        runtime = self.runtime
        started = time.monotonic()
        try:
            job = Job.from_dict(json.loads(payload.decode()))  # str: json skips sniffing the encoding
            if not isinstance(job.jobtype, str) or not isinstance(job.jid, str):
                raise TypeError("jid and jobtype must be strings")
        except Exception as exc:
            self._reject(payload, exc)
            return
        handler = runtime.lookup(job.jobtype)
        if handler is None:
            error = UnknownJobType(f"No handler registered for job type {job.jobtype!r}")
            self._report(job, protocol.fail(job.jid, errtype_of(error), str(error)), started, error)
            return
        deadline = started + runtime.time_limit(job, handler.timeout)
        shutdown = runtime.lifecycle.deadline
        if shutdown is not None and shutdown < deadline:
            deadline = shutdown
            if deadline <= started:
                # Fetched while the worker was already out of time: hand it back at once to be retried.
                self._report(job, fail_for(job.jid, Shutdown(), []), started, Shutdown())
                return
        ctx = JobContext(job, runtime.wid, started, deadline)
        self._handler = handler
        error: BaseException | None = None
        try:
            self.current = ctx  # from here on the watchdog may interrupt: stay inside this try
            if runtime.on_job_start is not None:
                runtime.on_job_start(job)
            log_start(job)
            token = _current.set(ctx)
            try:
                self._execute(job)
            except BaseException as exc:
                error = exc
            finally:
                _current.reset(token)
            with self.lock:
                mine = self.current is ctx
                self.current = None
            if not mine:
                # The watchdog took the job after the handler returned; cancel its interrupt if not yet raised.
                clear_pending(self.ident)
        except INTERRUPTS:
            mine = False  # the watchdog only interrupts a job it has taken
        if mine:
            self._finish(job, error, started)
        else:
            self.taken = None
            log.debug("%s %s was taken over by the watchdog", job.jobtype, job.jid)

    def _finish(self, job: Job, error: BaseException | None, started: float) -> None:
        """Report a job whose handler returned (ACK) or raised (FAIL)."""
        runtime = self.runtime
        if error is None:
            self._report(job, protocol.ack(job.jid), started, None)
        elif isinstance(error, WorkerHalt):
            log.warning("%s %s asked the worker to stop: %s", job.jobtype, job.jid, error)
            command = protocol.ack(job.jid) if error.ack else fail_for(job.jid, error)
            self._report(job, command, started, None if error.ack else error, then_fetch=False)
            runtime.lifecycle.terminate(runtime.shutdown_timeout, "halt")
        else:
            self._report(job, fail_for(job.jid, error), started, error)

    def _call_handler(self, job: Job) -> Any:
        """The innermost step of the middleware chain: the handler itself."""
        handler = self._handler
        assert handler is not None
        args = (job,) if self.runtime.catch_all else job.args
        if handler.is_async:
            return self._run_async(handler.fn(*args))
        return handler.fn(*args)

    def _run_async(self, coro: Any) -> Any:
        """Run a coroutine on this thread's event loop; the watchdog cancels ``task`` to interrupt it."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.new_event_loop()
        task = loop.create_task(coro)
        self.task = task
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                self.loop = None  # interrupted inside the loop's own code: do not trust that loop again
            raise
        finally:
            self.task = None

    def _reject(self, payload: bytes, exc: BaseException) -> None:
        """A job that cannot be decoded: FAIL it if its jid can be found, so it does not sit reserved."""
        error = InvalidJobPayload(f"cannot decode job payload: {type(exc).__name__}: {message_of(exc)}")
        jid = _find_jid(payload)
        if jid is None:
            log.error(
                "invalid job payload %r without a jid (%s): it stays reserved until its reservation expires",
                payload[:200],
                error,
            )
            return
        job = Job(jobtype="?", jid=jid)
        self._report(job, protocol.fail(jid, errtype_of(error), str(error)[:1000]), time.monotonic(), error)

    # ------------------------------------------------------------------------------------------ reporting

    def _report(
        self, job: Job, command: bytes, started: float, error: BaseException | None, *, then_fetch: bool = True
    ) -> None:
        """Deliver the ACK/FAIL, reconnecting as needed: the server keeps the reservation across an outage.

        While the worker runs, the next FETCH goes out in the same write (pipelined): the server answers the
        report, then the FETCH, so a job costs one round trip instead of two. ``_loop_jobs`` reads the FETCH.
        """
        runtime = self.runtime
        resent = False
        while True:
            conn = self.conn or self._connect(self._may_report)
            if conn is None:
                log.error(
                    "could not report %s %s before shutdown; the server will retry it when its reservation expires",
                    job.jobtype,
                    job.jid,
                )
                return
            try:
                if then_fetch and self._pipelining and self._may_fetch():
                    self._fetch_sent = True  # until the connection fails (``_lost``)
                    conn.request(command + runtime.fetch_line())
                else:
                    conn.request(command)
                break
            except ServerError as exc:
                if exc.message.startswith(("shutdown in progress", "too many connections")):
                    self._lost(exc)
                    continue
                if not (resent and exc.message.startswith("Job not found")):
                    log.error("server refused the report of %s %s: %s", job.jobtype, job.jid, exc)
                break
            except FaktoryError as exc:  # the connection broke: the server may or may not have the report
                resent = resent or getattr(exc, "request_sent", True)
                self._lost(exc)
        log_finish(job, time.monotonic() - started, error)
        if runtime.on_job_done is not None:
            runtime.on_job_done(job)

    def _may_report(self) -> bool:
        """Keep retrying a report until some seconds past the shutdown deadline."""
        deadline = self.runtime.lifecycle.deadline
        return deadline is None or time.monotonic() < deadline + self.runtime.report_grace


def _find_jid(payload: bytes) -> str | None:
    """The jid of a payload that failed to decode as a Job, if it is JSON with a string jid."""
    try:
        data = json.loads(payload.decode("utf-8", "replace"))
    except ValueError:
        return None
    jid = data.get("jid") if isinstance(data, dict) else None
    return jid if isinstance(jid, str) and jid else None
