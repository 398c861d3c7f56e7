"""The server's state and its rules: queues, sorted sets, reservations, workers and counters.

Pure logic, no I/O: time comes from an injected clock (Unix nanoseconds), so tests can warp it, and
connections are opaque objects that the server layer closes. It models the split the real server has
between Redis (queues, the four sorted sets, counters: wiped by FLUSH) and its own memory (known queue
names, the paused list, the reservation map, workers: kept by FLUSH), because clients can observe it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final

from .gojson import Failure, Job, go_quote
from .gotime import NS_PER_SEC, TimeParseError, format_ns, parse_rfc3339nano

log = logging.getLogger("faktoryd.embedded")

DEFAULT_RETRY: Final = 25
DEFAULT_RESERVE_FOR: Final = 1800
DEAD_TTL_NS: Final = 180 * 24 * 3600 * NS_PER_SEC
_VALID_QUEUE = re.compile(r"[a-zA-Z0-9._-]+")
QUEUE_NAME_ERROR: Final = "queue names must match \\A[a-zA-Z0-9._-]+\\z"

RUNNING, QUIET, TERMINATE = 0, 1, 2
STATE_NAMES: Final = {RUNNING: "running", QUIET: "quiet", TERMINATE: "terminate"}


class CommandError(Exception):
    """A failure the server reports as ``-ERR <text>``; the connection stays usable."""


def state_from_string(text: str) -> int:
    """Go's ``stateFromString``: anything but quiet/terminate means running."""
    return {"quiet": QUIET, "terminate": TERMINATE}.get(text, RUNNING)


# ---------------------------------------------------------------------------------------------- records


class SetEntry:
    """A member of a sorted set: the stored payload bytes plus the decoded job they encode."""

    __slots__ = ("alive", "data", "job", "score", "seq")

    def __init__(self, score: int, seq: int, job: Job, data: bytes) -> None:
        self.score = score
        self.seq = seq
        self.job = job
        self.data = data
        self.alive = True


class SortedSet:
    """A Redis sorted set of job payloads: ordered by score (ns), members unique by payload bytes.

    A heap with lazy deletion keeps ``pop_due`` cheap however large the set grows.
    """

    def __init__(self) -> None:
        self._members: dict[bytes, SetEntry] = {}
        self._heap: list[tuple[int, int, SetEntry]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._members)

    def add(self, score: int, job: Job, data: bytes) -> None:
        """ZADD: an identical payload already present only gets the new score."""
        old = self._members.get(data)
        if old is not None:
            old.alive = False
        entry = SetEntry(score, next(self._seq), job, data)
        self._members[data] = entry
        heapq.heappush(self._heap, (score, entry.seq, entry))
        if len(self._heap) > 2 * len(self._members) + 64:
            self._heap = [item for item in self._heap if item[2].alive]
            heapq.heapify(self._heap)

    def remove(self, entry: SetEntry) -> None:
        if self._members.get(entry.data) is entry:
            del self._members[entry.data]
            entry.alive = False

    def pop_due(self, now: int, limit: int | None = None) -> list[SetEntry]:
        """Remove and return the entries with score <= now, lowest score first."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now and (limit is None or len(due) < limit):
            entry = heapq.heappop(heap)[2]
            if entry.alive:
                self.remove(entry)
                due.append(entry)
        return due

    def entries(self) -> list[SetEntry]:
        """All entries in score order."""
        return sorted(self._members.values(), key=lambda e: (e.score, e.seq))

    def clear(self) -> None:
        for entry in self._members.values():
            entry.alive = False
        self._members.clear()
        self._heap.clear()


class Reservation:
    """A fetched job awaiting ACK or FAIL (``manager.Reservation``)."""

    __slots__ = ("expires_ns", "jid", "job", "reserved_ns", "seq", "wid")

    def __init__(self, seq: int, job: Job, wid: str, reserved_ns: int, expires_ns: int) -> None:
        self.seq = seq
        self.jid = job.jid
        self.job = job
        self.wid = wid
        self.reserved_ns = reserved_ns
        self.expires_ns = expires_ns


class Worker:
    """A worker process as the server knows it, keyed by wid, shared by all its connections."""

    __slots__ = (
        "beat_ns",
        "connections",
        "hostname",
        "labels",
        "pid",
        "rss_kb",
        "started_ns",
        "state",
        "version",
        "wid",
    )

    def __init__(self, wid: str, hello: dict[str, Any], now: int) -> None:
        self.wid = wid
        self.hostname: str = hello.get("hostname", "")
        self.pid: int = hello.get("pid", 0)
        self.labels: list[str] | None = hello.get("labels")
        self.rss_kb: int = hello.get("rss_kb", 0)
        self.version: int = hello.get("v", 0)
        self.started_ns = now
        self.beat_ns = now
        self.state = RUNNING
        self.connections: set[Hashable] = set()

    def signal(self, state: int) -> None:
        """Go's ``ClientData.Signal``: running -> quiet -> terminate, never backwards."""
        self.state = max(self.state, state)


class Waiter:
    """A connection blocked in FETCH (Redis BRPOP): the first push to one of its queues is its job."""

    __slots__ = ("active", "deliver", "queues", "wid")

    def __init__(self, queues: list[str], wid: str, deliver: Callable[[bytes], None]) -> None:
        self.queues = queues
        self.wid = wid
        self.deliver = deliver
        self.active = True


class TaskStats:
    """The deprecated per-task statistics INFO still reports."""

    __slots__ = ("cycles", "enqueued", "reaped", "wall_ns")

    def __init__(self) -> None:
        self.cycles = 0
        self.enqueued = 0
        self.reaped = 0
        self.wall_ns = 0


# ---------------------------------------------------------------------------------------------- the store


class Store:
    """Everything a Faktory server holds, and every state transition the protocol can cause."""

    def __init__(
        self,
        clock: Callable[[], int],
        *,
        retry_default_bug: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.now = clock
        self.rng = rng or random.Random()
        self.retry_default_bug = retry_default_bug
        self.retry_default = DEFAULT_RETRY
        # Redis side
        self.queues: dict[str, deque[tuple[Job, bytes]]] = {}
        self.scheduled = SortedSet()
        self.retries = SortedSet()
        self.dead = SortedSet()
        self.working: dict[int, Reservation] = {}
        self.processed = 0
        self.failures = 0
        # server memory
        self.paused: set[str] = set()
        self.reservations: dict[str, Reservation] = {}
        self.workers: dict[str, Worker] = {}
        self.waiters: dict[str, deque[Waiter]] = {}
        self.tasks = {name: TaskStats() for name in ("Busy", "Dead", "Retries", "Scheduled", "Workers")}
        self._seq = itertools.count()

    # ------------------------------------------------------------------ push and enqueue

    def push(self, job: Job) -> None:
        """``manager.Push`` after decoding: validate, default, then schedule or enqueue."""
        jid = job.jid
        if len(jid) < 8 and len(jid.encode("utf-8", "surrogatepass")) < 8:
            raise CommandError("jobs must have a reasonable jid parameter")
        if not job.jobtype:
            raise CommandError("jobs must have a jobtype parameter")
        if job.args is None:
            raise CommandError("jobs must have an args parameter")
        if job.reserve_for > 86400:
            raise CommandError("jobs cannot be reserved for more than one day")
        now = self.now()
        if not job.created_at:
            job.created_at = format_ns(now)
        if not job.queue:
            job.queue = "default"
        if job.at:
            try:
                at = parse_rfc3339nano(job.at)
            except TimeParseError as exc:
                raise CommandError(f"invalid timestamp for 'at': {go_quote(job.at)}: {exc}") from None
            if at > now:
                self.scheduled.add(at, job, job.encode())
                return
        try:
            self.enqueue(job)
        except CommandError as exc:
            raise CommandError(f"cannot get {go_quote(job.queue)} queue: {exc}") from None

    def _queue(self, name: str) -> deque[tuple[Job, bytes]]:
        """``store.GetQueue``: a known queue, or a new one if the name is valid."""
        queue = self.queues.get(name)
        if queue is None:
            if _VALID_QUEUE.fullmatch(name) is None:
                raise CommandError(QUEUE_NAME_ERROR)
            queue = self.queues[name] = deque()
        return queue

    def enqueue(self, job: Job) -> None:
        """Stamp ``enqueued_at``, store the job at the tail of its queue and hand it to a blocked FETCH."""
        queue = self._queue(job.queue)
        job.enqueued_at = format_ns(self.now())
        self._append(job.queue, queue, job, job.encode())

    def _append(self, name: str, queue: deque[tuple[Job, bytes]], job: Job, data: bytes) -> None:
        queue.append((job, data))
        waiters = self.waiters.get(name)
        while waiters and queue:
            waiter = waiters.popleft()
            if not waiter.active:
                continue
            self._forget_waiter(waiter)
            job, data = queue.popleft()
            self._reserve(job, waiter.wid)
            waiter.deliver(data)
        if waiters is not None and not waiters:
            self.waiters.pop(name, None)

    # ------------------------------------------------------------------ fetch

    def fetch(self, queues: Iterable[str], wid: str) -> bytes | None:
        """Pop from the first non-empty queue in the given order and reserve the job for ``wid``."""
        for name in queues:
            queue = self.queues.get(name)
            if queue:
                job, data = queue.popleft()
                self._reserve(job, wid)
                return data
        return None

    def _reserve(self, job: Job, wid: str) -> None:
        timeout = job.reserve_for or DEFAULT_RESERVE_FOR
        timeout = min(max(timeout, 60), 86400)
        now = self.now()
        res = Reservation(next(self._seq), job, wid, now, now + timeout * NS_PER_SEC)
        self.working[res.seq] = res
        self.reservations[res.jid] = res

    def wait(self, queues: list[str], wid: str, deliver: Callable[[bytes], None]) -> Waiter:
        """Block like BRPOP: ``deliver`` gets the first job pushed to any of ``queues``, already reserved.

        The waiter stays armed until ``cancel_wait`` (its timeout), even if its connection is gone: a job
        pushed meanwhile is reserved for a client that will never see it, as on the real server.
        """
        waiter = Waiter(queues, wid, deliver)
        for name in dict.fromkeys(queues):
            self.waiters.setdefault(name, deque()).append(waiter)
        return waiter

    def cancel_wait(self, waiter: Waiter) -> None:
        if waiter.active:
            self._forget_waiter(waiter)

    def _forget_waiter(self, waiter: Waiter) -> None:
        waiter.active = False
        for name in dict.fromkeys(waiter.queues):
            waiters = self.waiters.get(name)
            if waiters is None:
                continue
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                del self.waiters[name]

    # ------------------------------------------------------------------ ack and fail

    def ack(self, jid: str) -> None:
        """ACK: an unknown or expired jid is not an error (and is not counted)."""
        res = self.reservations.pop(jid, None)
        if res is None:
            log.debug("No such job to acknowledge %s", jid)
            return
        self.working.pop(res.seq, None)
        self.processed += 1

    def fail(self, jid: str, errtype: str, message: str, backtrace: list[str]) -> None:
        """FAIL with an already cleansed payload."""
        res = self.reservations.pop(jid, None)
        if res is None:
            raise CommandError(f"Job not found {jid}")
        if self.working.pop(res.seq, None) is None:
            return  # the working set was flushed under this reservation: nothing more happens
        self._failure(res.job, errtype, message, backtrace)

    def _failure(self, job: Job, errtype: str, message: str, backtrace: list[str] | None) -> None:
        """``processFailure``: count it, update ``failure``, then discard, retry later or kill."""
        self.failures += 1
        self.processed += 1
        failure = job.failure
        now = self.now()
        if failure is not None:
            failure.retry_count += 1
            if failure.remaining > 0:
                failure.remaining -= 1
            failure.message, failure.errtype, failure.backtrace = message, errtype, backtrace
        else:
            if job.retry is None:
                job.retry = self.retry_default
            failure = job.failure = Failure(
                remaining=job.retry, failed_at=format_ns(now), message=message, errtype=errtype, backtrace=backtrace
            )
        if not job.retry:
            return  # retry 0: gone, though counted as a failure
        if failure.retry_count < job.retry:
            count = failure.retry_count
            delay = count**4 + 15 + self.rng.randint(0, 29) * (count + 1)
            when = now + delay * NS_PER_SEC
            failure.next_at = format_ns(when)
            self.retries.add(when, job, job.encode())
        else:
            self.dead.add(now + DEAD_TTL_NS, job, job.encode())

    # ------------------------------------------------------------------ workers

    def attach(self, connection: Hashable, hello: dict[str, Any]) -> Worker:
        """HELLO with a wid: join the worker entry, creating it (running) if the wid is new."""
        wid = hello["wid"]
        worker = self.workers.get(wid)
        if worker is None:
            worker = self.workers[wid] = Worker(wid, hello, self.now())
        worker.connections.add(connection)
        return worker

    def detach(self, connection: Hashable, wid: str) -> None:
        """A worker connection closed: the entry goes away with its last connection."""
        worker = self.workers.get(wid)
        if worker is not None:
            worker.connections.discard(connection)
            if not worker.connections:
                del self.workers[wid]

    def beat(self, wid: str, current_state: str, rss_kb: int) -> Worker | None:
        """BEAT: refresh the worker and apply a reported state; None if the wid is not registered."""
        worker = self.workers.get(wid)
        if worker is None:
            return None
        worker.rss_kb = rss_kb
        worker.beat_ns = self.now()
        if current_state:
            worker.signal(state_from_string(current_state))
        return worker

    def signal(self, wid: str, state: int) -> None:
        """The web UI's POST /busy: signal one worker, or every worker for ``all``."""
        targets = self.workers.values() if wid == "all" else [w for w in [self.workers.get(wid)] if w]
        for worker in targets:
            worker.signal(state)

    # ------------------------------------------------------------------ background tasks

    def run_task(self, name: str, worker_ttl_ns: int = 60 * NS_PER_SEC) -> list[Hashable]:
        """Run one background task now; returns connections the server must close (Workers task)."""
        stats = self.tasks[name]
        started = time.perf_counter_ns()
        to_close: list[Hashable] = []
        if name == "Scheduled":
            stats.enqueued += self._enqueue_due(self.scheduled)
        elif name == "Retries":
            stats.enqueued += self._enqueue_due(self.retries)
        elif name == "Dead":
            stats.enqueued += len(self.dead.pop_due(self.now(), 100))
        elif name == "Busy":
            stats.reaped += self._reap_reservations()
        else:
            to_close = self._reap_workers(self.now() - worker_ttl_ns)
        stats.cycles += 1
        stats.wall_ns += time.perf_counter_ns() - started
        return to_close

    def _enqueue_due(self, source: SortedSet) -> int:
        moved = 0
        for entry in source.pop_due(self.now()):
            job = entry.job
            if job.failure is not None:
                job.failure.repair()
            try:
                self.enqueue(job)
            except CommandError as exc:
                log.error("cannot push job %s to %r queue: %s; the job is lost", job.jid, job.queue, exc)
                continue
            moved += 1
        return moved

    def _reap_reservations(self) -> int:
        now = self.now()
        due = sorted((r for r in self.working.values() if r.expires_ns <= now), key=lambda r: r.expires_ns)
        reaped = 0
        for res in due:
            del self.working[res.seq]
            current = self.reservations.pop(res.jid, None)
            if current is None:
                log.warning("reservation of %s expired but the job is not reserved any more", res.jid)
                continue
            self._failure(current.job, "ReservationExpired", "Faktory job reservation expired", None)
            reaped += 1
        return reaped

    def _reap_workers(self, cutoff: int) -> list[Hashable]:
        to_close: list[Hashable] = []
        for wid in [wid for wid, w in self.workers.items() if w.beat_ns < cutoff]:
            to_close.extend(self.workers.pop(wid).connections)
            self.tasks["Workers"].reaped += 1
        if to_close:
            log.warning("Reaped %d lingering connections of workers that stopped sending BEAT", len(to_close))
        return to_close

    # ------------------------------------------------------------------ FLUSH, QUEUE, MUTATE

    def flush(self) -> None:
        """FLUSHDB: everything in Redis goes; the server's memory (names, paused, reservations) stays."""
        for queue in self.queues.values():
            queue.clear()
        for sorted_set in (self.scheduled, self.retries, self.dead):
            sorted_set.clear()
        self.working.clear()
        self.processed = self.failures = 0

    def _names(self, names: list[str]) -> list[str]:
        return list(self.queues) if names[:1] == ["*"] else names

    def pause(self, names: list[str]) -> None:
        for name in self._names(names):
            if name in self.queues:
                self.paused.add(name)

    def resume(self, names: list[str]) -> None:
        for name in self._names(names):
            if name in self.queues:
                self.paused.discard(name)

    def remove(self, names: list[str]) -> None:
        for name in self._names(names):
            self.queues.pop(name, None)
            self.paused.discard(name)

    def latency(self, names: list[str]) -> dict[str, float]:
        """Seconds since the next job of each queue was enqueued; 0 for empty or unknown queues."""
        now = self.now()
        result: dict[str, float] = {}
        for name in names:
            queue = self.queues.get(name)
            seconds = 0.0
            if queue:
                try:
                    seconds = (now - parse_rfc3339nano(queue[0][0].enqueued_at)) / NS_PER_SEC
                except TimeParseError as exc:
                    raise CommandError(f"QUEUE: {exc}") from None
            result[name] = seconds
        return result

    def sorted_set(self, target: str) -> SortedSet | None:
        return {"retries": self.retries, "scheduled": self.scheduled, "dead": self.dead}.get(target)

    def mutate(self, cmd: str, target: str, flt: dict[str, Any] | None) -> None:
        """MUTATE: clear, kill, discard or requeue the entries of a set that match the filter."""
        if cmd not in ("clear", "kill", "discard", "requeue"):
            raise CommandError("unknown mutate operation")
        source = self.sorted_set(target)
        if source is None:
            raise CommandError("invalid target for mutation command")
        if cmd == "clear" or (cmd == "discard" and flt is None):
            source.clear()
            return
        matches = [e for e in source.entries() if _filter_match(e.data, flt)]
        for entry in matches:
            if cmd == "discard":
                source.remove(entry)
            elif cmd == "kill":
                source.remove(entry)
                self.dead.add(self.now() + DEAD_TTL_NS, entry.job, entry.data)
            else:
                self._requeue(source, entry)

    def _requeue(self, source: SortedSet, entry: SetEntry) -> None:
        """LPUSH the stored payload as it is (``enqueued_at`` kept), then remove it from the set."""
        job, data = entry.job, entry.data
        queue = self._queue(job.queue)
        if job.failure is not None and (not job.failure.message.isascii() or not job.failure.errtype.isascii()):
            job.failure.repair()  # FETCH re-encodes what it pops; keep queue bytes as it would send them
            data = job.encode()
        source.remove(entry)
        self._append(job.queue, queue, job, data)

    # ------------------------------------------------------------------ INFO

    def info(self) -> dict[str, Any]:
        """The ``faktory`` part of INFO, in the key order the real server emits."""
        queues = {name: len(self.queues[name]) for name in sorted(self.queues)}
        tasks: dict[str, Any] = {}
        for name in sorted(self.tasks):
            stats = self.tasks[name]
            if name in ("Busy", "Workers"):
                size = len(self.reservations) if name == "Busy" else len(self.workers)
                tasks[name] = {"reaped": stats.reaped, "size": size}
            else:
                size = len({"Dead": self.dead, "Retries": self.retries, "Scheduled": self.scheduled}[name])
                tasks[name] = {
                    "cycles": stats.cycles,
                    "enqueued": stats.enqueued,
                    "size": size,
                    "wall_time_sec": stats.wall_ns / NS_PER_SEC,
                }
        return {
            "queues": queues,
            "sets": {
                "dead": len(self.dead),
                "retries": len(self.retries),
                "scheduled": len(self.scheduled),
                "working": len(self.working),
            },
            "tasks": tasks,
            "total_failures": self.failures,
            "total_processed": self.processed,
            "total_enqueued": sum(queues.values()),
            "total_queues": len(queues),
        }


# ---------------------------------------------------------------------------------------------- MUTATE filters


def _filter_match(data: bytes, flt: dict[str, Any] | None) -> bool:
    """``matchForFilter``: jids win over everything; ``regexp`` is a Redis glob over the stored JSON."""
    if flt is None:
        return True
    jids = flt.get("jids") or []
    if jids:
        return any(data.find(b'"jid":' + go_quote(jid).encode("utf-8", "surrogateescape")) > 0 for jid in jids)
    pattern: str = flt.get("regexp", "")
    jobtype: str = flt.get("jobtype", "")
    if pattern:
        if not redis_glob(pattern).fullmatch(data):
            return False
        return not jobtype or data.find(b'"jobtype":' + go_quote(jobtype).encode("utf-8", "surrogateescape")) > 0
    if jobtype:
        return redis_glob(f'*"jobtype":{go_quote(jobtype)}*').fullmatch(data) is not None
    return True


def redis_glob(pattern: str) -> re.Pattern[bytes]:
    """Translate a Redis MATCH pattern (``stringmatchlen``: ``*``, ``?``, ``[...]``, ``\\``) to a regex."""
    src = pattern.encode("utf-8", "surrogateescape")
    out: list[bytes] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i : i + 1]
        if c == b"*":
            while i + 1 < n and src[i + 1 : i + 2] == b"*":
                i += 1
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"[":
            i, cls = _glob_class(src, i + 1)
            out.append(cls)
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(src[i : i + 1]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out), re.DOTALL)


def _glob_class(src: bytes, i: int) -> tuple[int, bytes]:
    """A ``[...]`` class starting after the bracket; returns the index of its last byte and the regex."""
    n = len(src)
    negate = src[i : i + 1] == b"^"
    if negate:
        i += 1
    items: list[bytes] = []
    while i < n:
        c = src[i : i + 1]
        if c == b"\\" and i + 1 < n:
            i += 1
            items.append(re.escape(src[i : i + 1]))
        elif c == b"]":
            break
        elif src[i + 1 : i + 2] == b"-" and i + 2 < n:
            low, high = sorted((src[i], src[i + 2]))
            items.append(re.escape(bytes([low])) + b"-" + re.escape(bytes([high])))
            i += 2
        else:
            items.append(re.escape(c))
        i += 1
    body = b"".join(items)
    if not body:
        return i, b"." if negate else b"(?!)"
    return i, b"[" + (b"^" if negate else b"") + body + b"]"
