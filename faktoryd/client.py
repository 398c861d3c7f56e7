"""The producer API: push jobs and manage the server, over a small thread-safe pool of connections."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from . import protocol
from .connection import Connection, RequestError
from .errors import ProtocolError, ServerError
from .jobs import Job
from .protocol import Reply
from .settings import Settings, env_settings

log = logging.getLogger("faktoryd.client")

PUSHB_CHUNK = 1000
MUTATE_COMMANDS = ("clear", "kill", "discard", "requeue")
MUTATE_TARGETS = ("retries", "scheduled", "dead")


class Client:
    """Pushes jobs and talks to the server. Safe to share between threads; cheap to keep for the process.

    Settings default to the environment (:func:`faktoryd.env_settings`). A broken connection is replaced
    once, transparently, for commands that are safe to repeat; a PUSH is repeated only when it certainly
    never left this process, so it is never enqueued twice by the client.
    """

    def __init__(self, settings: Settings | None = None, *, pool_size: int = 4) -> None:
        self.settings = settings if settings is not None else env_settings()
        self.pool_size = pool_size
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<Client {self.settings.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """END and close every pooled connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------------------------------ jobs

    def push(self, job: Job) -> str:
        """Enqueue one job (or schedule it, when ``job.at`` is in the future). Returns its jid."""
        payload = job.to_dict()
        payload["queue"] = self.settings.queue_name(job.queue)
        self._call(protocol.push(payload), repeatable=False)
        return job.jid

    def push_bulk(self, jobs: Iterable[Job]) -> dict[str, str]:
        """Enqueue many jobs with PUSHB, 1000 per command. Returns ``{jid: error}`` for the rejected ones.

        Every job is validated before the first command is sent, so a bad job raises and nothing is pushed.
        """
        payloads = []
        for job in jobs:
            payload = job.to_dict()
            payload["queue"] = self.settings.queue_name(job.queue)
            payloads.append(payload)
        errors: dict[str, str] = {}
        for start in range(0, len(payloads), PUSHB_CHUNK):
            reply = self._call(protocol.push_bulk(payloads[start : start + PUSHB_CHUNK]), repeatable=False)
            errors.update(_json(reply))
        return errors

    def perform(
        self,
        jobtype: str,
        *args: Any,
        queue: str | None = None,
        at: datetime | None = None,
        delay: float | timedelta | None = None,
        retry: int = 25,
        reserve_for: int | None = None,
        custom: dict[str, Any] | None = None,
        backtrace: int | None = None,
        jid: str | None = None,
    ) -> str:
        """Build and push a job in one call: ``client.perform("SendEmail", user_id, queue="mail")``."""
        job = make_job(
            jobtype,
            args,
            queue=queue or self.settings.default_queue,
            at=at,
            delay=delay,
            retry=retry,
            reserve_for=reserve_for,
            custom=custom,
            backtrace=backtrace,
            jid=jid,
        )
        return self.push(job)

    # ------------------------------------------------------------------------------------------ server

    def info(self) -> dict[str, Any]:
        """The server's INFO document (queues, sets, counters, server stats)."""
        return _json(self._call(protocol.INFO))

    def flush(self) -> None:
        """Delete every job and counter on the server. Irreversible: for tests and development."""
        self._call(protocol.FLUSH)

    def pause(self, *queues: str) -> None:
        """Stop FETCH from serving these queues (``"*"``: all). Pushes still enqueue into them."""
        self._call(protocol.queue("PAUSE", self._queue_names(queues)))

    def resume(self, *queues: str) -> None:
        self._call(protocol.queue("RESUME", self._queue_names(queues)))

    def remove(self, *queues: str) -> None:
        """Delete these queues and every job in them."""
        self._call(protocol.queue("REMOVE", self._queue_names(queues)))

    def latency(self, *queues: str) -> dict[str, float]:
        """Seconds the oldest job of each queue has waited (0 for an empty queue)."""
        if "*" in queues:
            raise ValueError("latency() needs queue names; the server does not accept '*' here")
        names = self._queue_names(queues)
        reply = _json(self._call(protocol.queue("LATENCY", names)))
        prefix = len(self.settings.namespace)
        return {name[prefix:]: float(value) for name, value in reply.items()}

    def mutate(
        self,
        cmd: str,
        target: str,
        *,
        jobtype: str | None = None,
        jids: Sequence[str] | None = None,
        pattern: str | None = None,
    ) -> None:
        """Act on the retries, scheduled or dead set: ``clear``, ``kill`` (move to dead), ``discard``,
        ``requeue``. Filters: ``jids``, ``jobtype``, and ``pattern`` (a Redis glob over the job's JSON,
        e.g. ``*"queue":"mail"*``). No filter means every job of the set."""
        if cmd not in MUTATE_COMMANDS:
            raise ValueError(f"unknown mutate command {cmd!r}: expected one of {', '.join(MUTATE_COMMANDS)}")
        if target not in MUTATE_TARGETS:
            raise ValueError(f"unknown mutate target {target!r}: expected one of {', '.join(MUTATE_TARGETS)}")
        operation: dict[str, Any] = {"cmd": cmd, "target": target}
        filt: dict[str, Any] = {}
        if jids:
            filt["jids"] = list(jids)
        if jobtype:
            filt["jobtype"] = jobtype
        if pattern:
            filt["regexp"] = pattern
        if filt:
            operation["filter"] = filt
        self._call(protocol.mutate(operation))

    # ------------------------------------------------------------------------------------------ pool

    def _queue_names(self, queues: Sequence[str]) -> list[str]:
        if not queues:
            raise ValueError("name at least one queue (or '*' for all)")
        return [q if q == "*" else self.settings.queue_name(q) for q in queues]

    def _call(self, data: bytes, *, repeatable: bool = True) -> Reply:
        """Run one command on a pooled connection, replacing a broken connection once when that is safe."""
        conn = self._acquire()
        try:
            reply = conn.request(data)
        except RequestError as exc:
            if exc.request_sent and not repeatable:
                raise RequestError(
                    f"{exc} (the command may or may not have reached the server; it was not repeated)",
                    request_sent=True,
                ) from None
            log.info("reconnecting to %s after: %s", self.settings.url, exc)
            conn = Connection(self.settings).open()
            try:
                reply = conn.request(data)
            except BaseException:
                conn.abort()
                raise
        except ServerError:
            self._release(conn)
            raise
        except BaseException:
            conn.abort()  # interrupted mid-command: the stream is out of step
            raise
        self._release(conn)
        return reply

    def _acquire(self) -> Connection:
        if os.getpid() != self._pid:
            # Forked: the pooled sockets belong to the parent. Forget them without END or close
            # (closing our copy of the descriptor would not disturb the parent, but END would).
            self._idle, self._pid = [], os.getpid()
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return Connection(self.settings).open()
            if not conn.is_stale():
                return conn
            conn.abort()

    def _release(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()


def make_job(
    jobtype: str,
    args: Sequence[Any],
    *,
    queue: str = "default",
    at: datetime | None = None,
    delay: float | timedelta | None = None,
    retry: int = 25,
    reserve_for: int | None = None,
    custom: dict[str, Any] | None = None,
    backtrace: int | None = None,
    jid: str | None = None,
) -> Job:
    """A Job from keyword options; ``delay`` (seconds or timedelta) is an alternative to ``at``."""
    if at is not None and delay is not None:
        raise ValueError("give either at= or delay=, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    job = Job(
        jobtype=jobtype,
        args=list(args),
        queue=queue,
        retry=retry,
        reserve_for=reserve_for,
        at=at,
        backtrace=backtrace,
        custom=custom,
    )
    if jid is not None:
        job.jid = jid
    return job


def _json(reply: Reply) -> Any:
    if not isinstance(reply, bytes | str):
        raise ProtocolError(f"expected a JSON reply, got {reply!r:.80}")
    try:
        return json.loads(reply)
    except ValueError as exc:
        raise ProtocolError(f"reply is not JSON: {reply!r:.80}") from exc
