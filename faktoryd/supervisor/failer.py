"""FAILs, sent by the supervisor, for jobs whose child process died while running them.

Without this, such a job stays reserved (Busy) until its reservation expires: 30 minutes by default. The
server keeps the reservation, so a FAIL from any connection releases it and Faktory retries the job now.
The supervisor's loop must stay responsive, so every attempt is short and failures are retried later.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from .. import protocol
from ..connection import Connection
from ..errors import FaktoryError, ServerError
from ..settings import Settings
from ..worker.backoff import Backoff

log = logging.getLogger("faktoryd.supervisor")


@dataclass(frozen=True)
class PendingFail:
    jid: str
    jobtype: str
    errtype: str
    message: str


class Failer:
    """Queues FAILs and delivers them over one producer connection, retrying with backoff when the server
    is away. A ``Job not found`` answer means the job was ACKed or FAILed after all: nothing to do."""

    def __init__(self, settings: Settings) -> None:
        self._pending: deque[PendingFail] = deque()
        self._conn: Connection | None = None
        self.use(settings)
        self._backoff = Backoff(initial=0.5, cap=10.0)
        self.retry_at = 0.0

    def use(self, settings: Settings) -> None:
        """Talk to the server these settings name (after a reload); pending FAILs are kept."""
        self.close()
        # Short timeouts: this runs inside the supervisor's loop, which must keep handling signals.
        self.settings = settings.with_options(connect_timeout=min(settings.connect_timeout, 2.0), read_timeout=3.0)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, item: PendingFail) -> None:
        self._pending.append(item)

    def flush(self, now: float) -> None:
        """Deliver what is pending; on a connection failure keep the rest for ``retry_at``."""
        if not self._pending or now < self.retry_at:
            return
        while self._pending:
            item = self._pending[0]
            try:
                if self._conn is None:
                    self._conn = Connection(self.settings).open()
                self._conn.request(protocol.fail(item.jid, item.errtype, item.message))
                log.warning(
                    "FAILed job %s (%s) as %s: %s",
                    item.jid,
                    item.jobtype,
                    item.errtype,
                    item.message,
                    extra={"jid": item.jid, "jobtype": item.jobtype, "errtype": item.errtype},
                )
            except ServerError as exc:
                log.info("job %s needs no FAIL: the server says %s", item.jid, exc)
            except FaktoryError as exc:
                if self._conn is not None:
                    self._conn.abort()
                    self._conn = None
                delay = self._backoff.next()
                self.retry_at = now + delay
                log.warning(
                    "cannot FAIL %d job(s) of a dead child yet (%s); retrying in %.1f s",
                    len(self._pending),
                    exc,
                    delay,
                )
                return
            self._pending.popleft()
            self._backoff.reset()

    def forget(self) -> None:
        """In a forked child: drop the inherited connection without END (it is the supervisor's)."""
        if self._conn is not None:
            self._conn.abort()
            self._conn = None
        self._pending.clear()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
