"""The ledger test: N jobs through the real ``faktoryd`` daemon while the test breaks everything it can.

Jobs are pushed in waves to an embedded server (short intervals); the daemon (several processes x threads)
reaches the server through a :class:`~faultproxy.FaultProxy`. Every execution writes ``S``/``E`` lines to a
ledger (``tests/ledger_apps/ledger_jobs.py``). Between waves the test injects one fault at a time and logs it
with timestamps and the affected pids: SIGKILL of a busy child, SIGKILL of an idle child (blocked in FETCH)
followed by a push, a cut of every connection, a delayed path, a network partition (refuse + cut), a server
outage that keeps its state, a HUP (rolling reload), and finally a TERM of the supervisor and a fresh start.

Then it checks the promise, in two steps:

1. *At rest*, before anything is retried: every job ran at least once (or its FAIL says it was killed before
   its handler began), and is ACKed or in the retries/dead set with a failure that names its cause, consistent
   with the ledger and the fault log; nothing is in the working set except jobs stranded by a FETCH that a
   SIGKILLed child left blocked on the server (PROTOCOL.md 4.5), each identified by its reservation's wid and
   reserved after that child's death.
2. *Recovery*: the server's clock is moved past the reservations and the retry delays; the stranded jobs
   expire, everything due is retried, and at the end every job ran, the working set and retries are empty,
   and only the doomed jobs are dead.

Duplicates (a job run again after a run that did not fail by itself) are counted, and each is mapped to the
one injected fault that explains it (the run's process was killed or stopped, or its ACK fell in an outage).

Short form in the suite (N=2,000); longer with ``FAKTORYD_LEDGER_N=20000``. ``FAKTORYD_LEDGER_SEED`` replays a
run's random choices (the seed is printed).
"""

from __future__ import annotations

import calendar
import contextlib
import itertools
import os
import random
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, write_config
from faultproxy import FaultProxy
from helpers import wait_for

from faktoryd import Client, Job, Settings
from faktoryd.embedded import EmbeddedServer

N = int(os.environ.get("FAKTORYD_LEDGER_N", "2000"))
SEED = int(os.environ.get("FAKTORYD_LEDGER_SEED") or random.randrange(2**32))
LEDGER_APPS = Path(__file__).parent / "ledger_apps"
QUEUE = "ledger"
PROCESSES = 3
THREADS = 4
FETCH_TIMEOUT = 0.5
"""The embedded server's FETCH block: short, so stopping children (which let a FETCH return) is quick."""
SHUTDOWN_TIMEOUT = 2.0
"""Shorter than the longest jobs (3 s): a TERM or HUP interrupts some of them (FAILed as Faktory::Shutdown)."""
CLOCK_SLACK = 0.05
"""Seconds of tolerance between the test's clock readings and the server's timestamps (same machine)."""
STRAND_WINDOW = FETCH_TIMEOUT + 1.0
"""A FETCH abandoned by a killed child can take a job until its block ends: at most this long after the kill."""
IN_FLIGHT = 0.5
ACK_IN_FLIGHT = 1.0
"""A handler that returned at most this long before a cut or an outage may have had its ACK in flight."""
"""A FETCH reply sent at most this long before a kill or a cut may never have reached the worker."""
PRE_RUN_FAILURES = ("ReservationExpired", "faktoryd.ChildKilled(SIGKILL)", "Faktory::Shutdown")
"""Failures that can end a job's attempt before its handler starts (stranded; killed or stopped right after
the fetch)."""
WARP = 1801.0
"""Past the default reservation (1800 s): stranded jobs expire."""

pytestmark = [
    pytest.mark.embedded_only,
    pytest.mark.slow,
    pytest.mark.timeout(170 + N // 20),
    pytest.mark.skipif(bool(os.environ.get("FAKTORY_URL")), reason="needs the embedded server's controls"),
]


# ---------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Planned:
    jid: str
    kind: str  # fast, long, flaky (fails on its first run), doomed (always fails; retry=-1: straight to dead)
    seconds: float = 0.0

    def job(self) -> Job:
        return Job(
            "ledger", [self.kind, self.seconds], jid=self.jid, queue=QUEUE, retry=-1 if self.kind == "doomed" else 25
        )


def plan_jobs(rng: random.Random, count: int) -> list[Planned]:
    jobs = []
    for n in range(count):
        roll = rng.random()
        jid = f"{n:06d}{rng.getrandbits(64):016x}"
        if roll < 0.02:
            jobs.append(Planned(jid, "long", round(rng.uniform(1.0, 3.0), 2)))
        elif roll < 0.07:
            jobs.append(Planned(jid, "flaky"))
        elif roll < 0.08:
            jobs.append(Planned(jid, "doomed"))
        else:
            jobs.append(Planned(jid, "fast"))
    return jobs


# ---------------------------------------------------------------------------------------------- the ledger


@dataclass
class Run:
    """One execution of a job, from the ledger."""

    jid: str
    pid: int
    attempt: int
    start: float
    kind: str
    end: float | None = None
    outcome: str | None = None  # None: the process died before the handler returned

    def __str__(self) -> str:
        ended = f"{self.outcome} at {self.end:.3f}" if self.end is not None else "no end (process died)"
        return f"attempt {self.attempt} in pid {self.pid} from {self.start:.3f}: {ended}"


class Ledger:
    """Reads the per-process ledger files incrementally."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.runs: dict[str, list[Run]] = {}
        self.started = 0
        self._offsets: dict[Path, int] = {}
        self._open: dict[tuple[str, int, int], Run] = {}

    def refresh(self) -> Ledger:
        for path in sorted(self.directory.glob("*.ledger")):
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] = offset + len(complete)
            for line in complete.decode().splitlines():
                self._line(line)
        return self

    def _line(self, line: str) -> None:
        kind, jid, pid, attempt, moment, what = line.split(" ")
        key = (jid, int(pid), int(attempt))
        if kind == "S":
            run = Run(jid, int(pid), int(attempt), float(moment), what)
            self.runs.setdefault(jid, []).append(run)
            self._open[key] = run
            self.started += 1
        else:
            run = self._open.pop(key)
            run.end, run.outcome = float(moment), what

    def running(self, kind: str | None = None) -> list[Run]:
        return [run for run in self._open.values() if kind is None or run.kind == kind]


# ---------------------------------------------------------------------------------------------- the fault log


@dataclass
class Fault:
    number: int
    kind: str
    start: float
    end: float
    pids: tuple[int, ...] = ()
    wids: tuple[str, ...] = ()
    note: str = ""

    def __str__(self) -> str:
        pids = f" pids={','.join(map(str, self.pids))}" if self.pids else ""
        wids = f" wids={','.join(self.wids)}" if self.wids else ""
        return f"#{self.number} {self.kind} {self.start:.3f}..{self.end:.3f}{pids}{wids} {self.note}".rstrip()


class FaultLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.faults: list[Fault] = []

    def add(self, kind: str, start: float, end: float | None = None, **details: Any) -> Fault:
        fault = Fault(len(self.faults) + 1, kind, start, time.time() if end is None else end, **details)
        self.faults.append(fault)
        with open(self.path, "a") as handle:
            handle.write(f"{fault}\n")
        return fault

    def of_kind(self, *kinds: str) -> list[Fault]:
        return [f for f in self.faults if f.kind in kinds]

    def __str__(self) -> str:
        return "\n".join(map(str, self.faults))


# ---------------------------------------------------------------------------------------------- helpers


def rfc3339(text: str) -> float:
    """Unix time of the server's RFC3339Nano UTC timestamps (any number of fraction digits)."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", text)
    assert match, text
    whole = calendar.timegm((*(int(part) for part in match.groups()[:6]), 0, 0, 0))
    return whole + float(f"0.{match[7] or 0}")


READY = re.compile(r"worker \d+ \(pid (\d+)\) is ready \(wid (\w+)\)")
KILLED_PID = re.compile(r"worker process (\d+) ")


@dataclass
class Scenario:
    """Everything one ledger run holds: server, proxy, daemons, the plan, the ledger and the fault log."""

    tmp: Path
    server: EmbeddedServer
    proxy: FaultProxy
    client: Client
    rng: random.Random
    plan: list[Planned]
    ledger: Ledger
    faults: FaultLog
    daemons: list[Daemon] = field(default_factory=list)
    pushed: int = 0
    killed: dict[int, Fault] = field(default_factory=dict)  # pid -> its SIGKILL
    wids: dict[str, int] = field(default_factory=dict)  # wid -> pid

    # ------------------------------------------------------------------------------------ daemon

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    def start_daemon(self) -> Daemon:
        config = write_config(
            self.tmp / f"faktory-{len(self.daemons) + 1}.toml",
            self.proxy.url_for(self.server.url),
            modules=("ledger_jobs",),
            app_path=LEDGER_APPS,
            processes=PROCESSES,
            threads=THREADS,
            queues=[QUEUE],
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            restart_backoff_max=1,
            heartbeat_interval=5,
        )
        daemon = Daemon(config, env={"FAKTORYD_LEDGER_DIR": str(self.ledger.directory)})
        self.daemons.append(daemon)
        daemon.wait_workers(PROCESSES, timeout=30)
        daemon.wait_log(f"all {PROCESSES} worker process(es) are ready", timeout=30)
        return daemon

    def learn_wids(self) -> None:
        for daemon in self.daemons:
            for pid, wid in READY.findall(daemon.log):
                self.wids[wid] = int(pid)
        for wid, worker in self.server.workers().items():
            self.wids.setdefault(wid, worker["pid"])

    def pid_of(self, wid: str) -> int | None:
        if wid not in self.wids:
            self.learn_wids()
        return self.wids.get(wid)

    def wid_of(self, pid: int) -> str:
        self.learn_wids()
        return next((wid for wid, owner in self.wids.items() if owner == pid), "?")

    def children(self, state: str = "") -> dict[int, str]:
        return {pid: title for pid, title in self.daemon.workers().items() if f": {state}" in title}

    def wait_pool(self, gone: set[int] | None = None) -> None:
        def full() -> bool:
            workers = self.daemon.workers()
            ready = "starting" not in "".join(workers.values())
            return len(workers) == PROCESSES and not (gone or set()) & set(workers) and ready

        wait_for(full, timeout=30, what=f"{PROCESSES} ready worker processes")

    # ------------------------------------------------------------------------------------ jobs

    def push(self, count: int) -> list[Planned]:
        wave = self.plan[self.pushed : self.pushed + count]
        self.pushed += len(wave)
        if wave:
            assert self.client.push_bulk(job.job() for job in wave) == {}
        return wave

    def backlog(self) -> int:
        return self.server.queue_sizes().get(QUEUE, 0)

    def wait_started(self, count: int, timeout: float = 30.0) -> None:
        target = self.ledger.refresh().started + count
        wait_for(lambda: self.ledger.refresh().started >= target, timeout=timeout, what=f"{count} more job starts")

    # ------------------------------------------------------------------------------------ faults

    def sigkill(self, pid: int, kind: str, title: str, note: str = "") -> Fault:
        start = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wid = self.wid_of(pid)
        fault = self.faults.add(kind, start, start, pids=(pid,), wids=(wid,), note=f"{title!r} {note}".strip())
        self.killed[pid] = fault
        return fault

    def kill_busy(self) -> None:
        """SIGKILL a child that is running jobs (pushing a few more jobs while none is busy)."""
        deadline = time.monotonic() + 30
        while not (busy := self.children("busy")):
            assert time.monotonic() < deadline, "no child became busy"
            if self.backlog() == 0 and self.pushed < len(self.plan):
                self.push(10)
            time.sleep(0.005)
        victim = self.rng.choice(sorted(busy))
        self.sigkill(victim, "sigkill-busy", busy[victim])
        self.wait_pool(gone={victim})

    def kill_idle_then_push(self, wave: int) -> None:
        """SIGKILL a child whose threads all wait in FETCH, then push: a FETCH it left blocked on the server
        may take a job for a dead connection (PROTOCOL.md 4.5)."""

        def idle() -> dict[int, str]:
            return self.children("idle") if self.backlog() == 0 else {}

        idle_children = wait_for(idle, timeout=60, what="an idle child and an empty queue")
        victim = self.rng.choice(sorted(idle_children))
        self.sigkill(victim, "sigkill-idle", idle_children[victim], note="then push")
        self.push(wave)
        self.wait_pool(gone={victim})

    def cut(self) -> None:
        """Cut every connection while the queue has a backlog: no FETCH is blocked on the server then."""
        before = self.backlog()
        start = time.time()
        count = self.proxy.cut_all()
        after = self.backlog()
        self.faults.add("cut", start, note=f"{count} connections, backlog {before} -> {after}")

    def delay(self, seconds: float = 0.15, duration: float = 1.5) -> None:
        start = time.time()
        self.proxy.delay(seconds)
        time.sleep(duration)  # the fault window itself
        self.proxy.delay(0)
        self.faults.add("delay", start, note=f"{seconds} s per chunk for {duration} s")

    def partition(self, duration: float = 2.0) -> None:
        before = self.backlog()
        start = time.time()
        self.proxy.refuse(duration)
        count = self.proxy.cut_all()
        wait_for(lambda: not self.proxy.refusing, timeout=duration + 5, what="the proxy to accept again")
        self.faults.add("partition", start, note=f"refused {duration} s, cut {count}, backlog {before}")
        self.wait_reconnected()

    def outage(self, duration: float = 3.0) -> None:
        start = time.time()
        self.server.begin_outage()
        time.sleep(duration)  # the fault window itself
        self.server.end_outage()
        self.faults.add("outage", start, note=f"{duration} s, state kept")
        self.wait_reconnected()

    def wait_reconnected(self) -> None:
        """Every processor of every worker is connected again (reconnect backoff: well under 30 s)."""

        def connected() -> bool:
            return sum(w["connections"] for w in self.server.workers().values()) >= PROCESSES * (THREADS + 1)

        wait_for(connected, timeout=30, interval=0.1, what="the workers reconnected")

    def hup(self) -> None:
        old = set(self.daemon.workers())
        start = time.time()
        self.daemon.signal(signal.SIGHUP)
        self.wait_pool(gone=old)
        self.faults.add("hup", start, pids=tuple(sorted(old)), wids=tuple(self.wid_of(p) for p in sorted(old)))

    # ------------------------------------------------------------------------------------ steps: a wave, a fault

    def step_kill_busy(self, wave: int) -> None:
        self.wait_started(len(self.push(wave)) // 4)
        self.kill_busy()

    def step_kill_two(self, wave: int) -> None:
        self.wait_started(len(self.push(wave)) // 4)
        self.kill_busy()
        self.kill_busy()

    def step_cut(self, wave: int) -> None:
        self.push(wave)
        self.cut()

    def step_delay(self, wave: int) -> None:
        self.push(wave)
        self.delay()

    def step_outage(self, wave: int) -> None:
        self.wait_started(len(self.push(wave)) // 4)
        self.outage()

    def step_hup(self, wave: int) -> None:
        self.wait_started(len(self.push(wave)) // 4)
        self.hup()

    def step_partition(self, wave: int) -> None:
        self.push(wave)
        self.partition()

    def term_and_restart(self, wave: int) -> None:
        """TERM while long jobs run (some outlive the shutdown timeout), wait for the exit, start again."""
        self.push(wave)
        extra = [Planned(f"term{n:02d}{self.rng.getrandbits(64):016x}", "long", 3.0) for n in range(PROCESSES)]
        self.plan.extend(extra)
        assert self.client.push_bulk(job.job() for job in extra) == {}
        self.pushed += len(extra)
        wait_for(lambda: len(self.ledger.refresh().running("long")) >= 2, timeout=30, what="long jobs running")
        old = set(self.daemon.workers())
        wids = tuple(self.wid_of(pid) for pid in sorted(old))
        start = time.time()
        self.daemon.signal(signal.SIGTERM)
        code = self.daemon.wait(SHUTDOWN_TIMEOUT + 15)
        self.faults.add("term", start, pids=tuple(sorted(old)), wids=wids, note=f"exit {code}")
        assert code == 0, self.daemon.log[-3000:]
        self.start_daemon()


# ---------------------------------------------------------------------------------------------- the checks


@dataclass
class Verdict:
    """What the checks found: problems fail the test; the rest is the report."""

    problems: list[str] = field(default_factory=list)
    stranded: dict[str, str] = field(default_factory=dict)  # jid -> explanation
    duplicates: dict[str, str] = field(default_factory=dict)  # jid -> explanation
    retried: Counter[str] = field(default_factory=Counter)  # why jobs ran again after a FAIL of their own
    causes: Counter[str] = field(default_factory=Counter)  # errtypes at rest
    dead_unrun: dict[str, str] = field(default_factory=dict)  # retry=-1 jobs that failed before they ran

    def problem(self, text: str) -> None:
        self.problems.append(text)


def classify_stranded(s: Scenario, reservation: dict[str, Any], *, final: bool = False) -> str | None:
    """Why a reservation is still in the working set at rest, or None if nothing explains it.

    A job is stranded when the server reserved it for a connection that never got it: a FETCH left blocked by a
    process that died or a path that was cut (PROTOCOL.md 4.5), or a FETCH reply still in flight at that moment.
    Such a job never started in that process (``final`` also checks the daemons' logs for its start).
    """
    jid, wid = reservation["jid"], reservation["wid"]
    reserved = rfc3339(reservation["reserved_at"])
    pid = s.pid_of(wid)
    if any(run.pid == pid for run in s.ledger.runs.get(jid, ())):
        return None
    if final and any(f"start ledger {jid}" in daemon.log for daemon in s.daemons):
        return None
    kill = s.killed.get(pid) if pid is not None else None
    if kill is not None and kill.start - IN_FLIGHT <= reserved <= kill.start + STRAND_WINDOW:
        how = "its FETCH reply was in flight" if reserved < kill.start else "it left a FETCH blocked on the server"
        return f"{kill.kind} #{kill.number} of pid {pid} (wid {wid}): {how}, reserved {reserved - kill.start:+.3f} s"
    for fault in s.faults.of_kind("cut", "partition", "outage"):
        after = 0.0 if fault.kind == "outage" else STRAND_WINDOW  # an outage also ends blocked FETCHes
        if fault.start - IN_FLIGHT <= reserved <= fault.start + after:
            how = "a FETCH reply in flight" if reserved < fault.start else "a FETCH in flight or blocked"
            return f"{fault.kind} #{fault.number} (wid {wid}): {how}, reserved {reserved - fault.start:+.3f} s"
    return None


def check_at_rest(s: Scenario, verdict: Verdict) -> None:
    """Before any retry runs: where every job is, and why."""
    s.learn_wids()
    ledger = s.ledger.refresh()
    queues = {name: size for name, size in s.server.queue_sizes().items() if size}
    if queues:
        verdict.problem(f"jobs left in queues at rest: {queues}")
    working = {r["jid"]: r for r in s.server.reservations()}
    retries = {j["jid"]: j for j in s.server.set_jobs("retries")}
    dead = {j["jid"]: j for j in s.server.set_jobs("dead")}
    if s.server.set_jobs("scheduled"):
        verdict.problem("jobs in the scheduled set")
    known = {job.jid for job in s.plan}
    for jid in (set(working) | set(retries) | set(dead)) - known:
        verdict.problem(f"unknown job {jid} on the server")
    for job in s.plan:
        runs = ledger.runs.get(job.jid, [])
        last = max(runs, key=lambda r: (r.attempt, r.start)) if runs else None
        history = "; ".join(map(str, runs)) or "never ran"
        if job.jid in working:
            reason = classify_stranded(s, working[job.jid], final=True)
            if reason is None:
                verdict.problem(
                    f"{job.jid} ({job.kind}) left in the working set unexplained: {working[job.jid]} ({history})"
                )
            else:
                verdict.stranded[job.jid] = reason
            continue
        stored = retries.get(job.jid) or dead.get(job.jid)
        if stored is None:  # gone: ACKed
            if last is None:
                verdict.problem(f"{job.jid} ({job.kind}) LOST: never ran and is nowhere on the server")
            elif last.outcome != "ok":
                verdict.problem(
                    f"{job.jid} ({job.kind}) gone from the server but its last run did not succeed: {history}"
                )
            continue
        failure = stored.get("failure") or {}
        errtype, message = failure.get("errtype", ""), failure.get("message", "")
        verdict.causes[errtype] += 1
        where = "dead" if job.jid in dead else "retries"
        if where == "dead" and job.kind != "doomed":
            verdict.problem(f"{job.jid} ({job.kind}, retry 25) in the dead set: {failure}")
        cause = explain_failure(s, failure, runs)
        if cause is None:
            verdict.problem(
                f"{job.jid} ({job.kind}) in {where} with an unexplained failure {errtype}: {message!r} ({history})"
            )


def explain_failure(s: Scenario, failure: dict[str, Any], runs: list[Run]) -> str | None:
    """Whether a stored failure names a cause the ledger and the fault log agree with."""
    errtype, message = failure.get("errtype", ""), failure.get("message", "")
    this = [run for run in runs if run.attempt == failure.get("retry_count", 0)]  # the run(s) this failure ended
    if errtype in ("ledger_jobs.Flaky", "ledger_jobs.Doomed"):
        expected = "flaky" if errtype.endswith("Flaky") else "doomed"
        return "its own failure" if any(run.outcome == expected for run in this) else None
    if errtype == "faktoryd.ChildKilled(SIGKILL)":
        match = KILLED_PID.search(message)
        pid = int(match[1]) if match else -1
        if pid not in s.killed and not any(pid in f.pids for f in s.faults.of_kind("term", "hup")):
            return None
        if this and not any(run.pid == pid for run in this):
            return None
        return f"SIGKILL of pid {pid}"
    if errtype == "Faktory::Shutdown":
        stops = s.faults.of_kind("term", "hup")
        if this:
            for run in this:
                for stop in stops:
                    if run.pid in stop.pids and run.outcome in (None, "interrupted:Shutdown"):
                        return f"{stop.kind} #{stop.number}"
            return None
        return "fetched after the shutdown deadline" if stops else None
    return None


def explain_duplicates(s: Scenario, verdict: Verdict) -> None:
    """Every run after the first must follow a run that failed: by itself (retry) or by a fault (duplicate)."""
    for jid, runs in s.ledger.refresh().runs.items():
        ordered = sorted(runs, key=lambda r: (r.attempt, r.start))
        for prev, nxt in itertools.pairwise(ordered):
            if nxt.attempt <= prev.attempt:
                verdict.problem(f"{jid} ran twice as attempt {prev.attempt} without a failure between: {prev}; {nxt}")
                continue
            if prev.outcome in ("flaky", "doomed"):
                verdict.retried[f"handler failure ({prev.outcome})"] += 1
                continue
            reason = explain_cut_short(s, prev)
            if reason is None:
                verdict.problem(f"{jid} ran again after {prev}: no fault explains it; next {nxt}")
            else:
                verdict.duplicates[jid] = reason


def explain_cut_short(s: Scenario, run: Run) -> str | None:
    kill = s.killed.get(run.pid)
    if kill is not None and kill.start >= run.start - CLOCK_SLACK:
        when = "before its handler returned" if run.end is None else "after its handler returned, before the ACK"
        return f"{kill.kind} #{kill.number} of pid {run.pid} {when}"
    for stop in s.faults.of_kind("term", "hup"):
        if run.pid in stop.pids and run.outcome in (None, "interrupted:Shutdown"):
            return f"{stop.kind} #{stop.number}: interrupted at the shutdown deadline"
    if run.end is not None and run.outcome == "ok":
        for fault in s.faults.of_kind("outage", "cut", "partition"):
            if fault.start - ACK_IN_FLIGHT <= run.end <= fault.end:
                return f"{fault.kind} #{fault.number}: its ACK was lost"
    return None


def settle(s: Scenario, timeout: float = 60.0, stable: float = 1.0) -> None:
    """Wait until the queue is empty and no reservation is live (every job ran or is parked), and that has held
    for ``stable`` seconds with the same stranded jobs: a job just fetched has not written its ledger line yet,
    but it will within ``stable``, while a stranded one stays."""
    live: list[dict[str, Any]] = []
    since: dict[frozenset[str], float] = {}

    def at_rest() -> bool:
        s.ledger.refresh()
        reservations = s.server.reservations()
        live[:] = [r for r in reservations if classify_stranded(s, r) is None]
        if live or s.backlog():
            since.clear()
            return False
        parked = frozenset(r["jid"] for r in reservations)
        first = since.setdefault(parked, time.monotonic())
        if len(since) > 1:
            since.clear()
            since[parked] = first = time.monotonic()
        return time.monotonic() - first >= stable

    try:
        wait_for(at_rest, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"not at rest after {timeout} s: backlog {s.backlog()}, reservations neither finished nor stranded "
            f"by a killed child: {live[:5]}\nfaults:\n{s.faults}"
        ) from None


def recover(s: Scenario) -> None:
    """Expire the stranded reservations and run every retry now (the server's clock moves; no worker is
    busy, so no live reservation is touched)."""
    s.server.advance(WARP)
    for _ in range(6):
        s.server.run_tasks()
        settle(s)
        if not s.server.set_jobs("retries") and not s.server.reservations():
            return
        s.server.advance(200)


# ---------------------------------------------------------------------------------------------- the test


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    rng = random.Random(SEED)
    server = EmbeddedServer(
        fetch_timeout=FETCH_TIMEOUT,
        retries_interval=10**6,  # retries run only when the test says so (recover): no warp hits a live job
        scheduled_interval=1.0,
        worker_ttl=10**7,  # the clock warp must not reap live workers
    )
    with server, FaultProxy(server.host, server.port) as proxy, Client(Settings.from_url(server.url)) as client:
        s = Scenario(
            tmp_path,
            server,
            proxy,
            client,
            rng,
            plan_jobs(rng, N),
            Ledger(ledger_dir),
            FaultLog(tmp_path / "faults.log"),
        )
        try:
            yield s
        finally:
            for daemon in s.daemons:
                daemon.stop()


def test_ledger_no_job_lost_duplicates_explained(scenario: Scenario) -> None:
    s = scenario
    print(f"ledger: N={N} seed={SEED} (replay with FAKTORYD_LEDGER_SEED={SEED})")
    started = time.monotonic()
    steps = [
        s.step_kill_busy,
        s.step_cut,
        s.step_delay,
        s.step_outage,
        s.step_hup,
        s.step_partition,
        s.kill_idle_then_push,
        s.step_kill_two,
    ]
    cycles = max(1, N // 2000)
    order = [step for _ in range(cycles) for step in s.rng.sample(steps, len(steps))]
    wave = max(1, N // (len(order) + 1))
    s.start_daemon()
    try:
        for step in order:
            step(wave)
        s.term_and_restart(N - s.pushed)
        settle(s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nfaults so far:\n{s.faults}") from None
    duration = time.monotonic() - started

    verdict = Verdict()
    check_at_rest(s, verdict)
    at_rest = {
        "retries": len(s.server.set_jobs("retries")),
        "dead": len(s.server.set_jobs("dead")),
        "stranded": len(verdict.stranded),
    }
    recover(s)
    ledger = s.ledger.refresh()
    dead_jobs = {job["jid"]: job for job in s.server.set_jobs("dead")}
    for job in s.plan:
        if job.jid in ledger.runs:
            continue
        errtype = (dead_jobs.get(job.jid, {}).get("failure") or {}).get("errtype")
        if job.kind == "doomed" and errtype in PRE_RUN_FAILURES:
            verdict.dead_unrun[job.jid] = errtype  # retry=-1: the first failure, whatever it is, is final
        else:
            verdict.problem(f"{job.jid} ({job.kind}) never ran, even after recovery")
    if s.server.reservations():
        verdict.problem(f"still in the working set after recovery: {s.server.reservations()}")
    if s.server.set_jobs("retries"):
        verdict.problem(f"still in retries after recovery: {[j['jid'] for j in s.server.set_jobs('retries')]}")
    dead = {job["jid"] for job in s.server.set_jobs("dead")}
    doomed = {job.jid for job in s.plan if job.kind == "doomed"}
    if dead != doomed:
        verdict.problem(f"dead set is not exactly the doomed jobs: extra {dead - doomed}, missing {doomed - dead}")
    explain_duplicates(s, verdict)

    runs = sum(len(r) for r in ledger.runs.values())
    report = [
        f"ledger: N={len(s.plan)} seed={SEED} runs={runs} in {duration:.1f} s (+ recovery)",
        f"at rest: {at_rest}, failure causes {dict(verdict.causes)}",
        f"stranded ({len(verdict.stranded)}): " + "; ".join(f"{j}: {r}" for j, r in verdict.stranded.items()),
        f"duplicates ({len(verdict.duplicates)}): " + "; ".join(f"{j}: {r}" for j, r in verdict.duplicates.items()),
        f"retries after a handler failure: {dict(verdict.retried)}",
        f"dead before they ran (retry=-1): {verdict.dead_unrun}",
        "faults:",
        str(s.faults),
    ]
    print("\n".join(report))
    (s.tmp / "report.txt").write_text("\n".join(report + verdict.problems) + "\n")
    if os.environ.get("FAKTORYD_LEDGER_REPORT"):
        shutil.copy(s.tmp / "report.txt", os.environ["FAKTORYD_LEDGER_REPORT"])
    assert not verdict.problems, "\n".join([*verdict.problems[:40], "", *report])
    for daemon in s.daemons[:-1]:
        assert "Traceback" not in daemon.log, daemon.log[-5000:]
    s.daemon.signal(signal.SIGTERM)
    assert s.daemon.wait(SHUTDOWN_TIMEOUT + 10) == 0
    assert "Traceback" not in s.daemon.log, s.daemon.log[-5000:]


# ---------------------------------------------------------------------------------------------- the checks, checked


class StubServer:
    """What the checks read from the server, as plain data."""

    def __init__(self, working: list[dict[str, Any]], retries: list[dict[str, Any]]) -> None:
        self.working, self.retries = working, retries

    def queue_sizes(self) -> dict[str, int]:
        return {QUEUE: 0}

    def reservations(self) -> list[dict[str, Any]]:
        return self.working

    def set_jobs(self, name: str) -> list[dict[str, Any]]:
        return self.retries if name == "retries" else []

    def workers(self) -> dict[str, dict[str, Any]]:
        return {"live-wid": {"pid": 200}}


def at(moment: float) -> str:
    whole = int(moment)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{round((moment - whole) * 1e6):06d}Z"


def test_the_checks_flag_lost_jobs_unexplained_duplicates_and_strays(tmp_path: Path) -> None:
    """The verdict logic on made-up evidence: what must pass passes, and each kind of failure is caught."""
    t = 1_800_000_000.0
    jobs = {name: Planned(f"{name:>8}".replace(" ", "0"), "fast") for name in "ABCDEFGH"}
    (tmp_path / "ledger").mkdir()
    lines = {
        100: [f"S {jobs['A'].jid} 100 0 {t} fast", f"E {jobs['A'].jid} 100 0 {t + 0.1} ok"],
        111: [f"S {jobs['D'].jid} 111 0 {t} fast"],  # killed before its handler returned
        200: [
            f"S {jobs['C'].jid} 200 0 {t} fast",
            f"E {jobs['C'].jid} 200 0 {t + 0.1} ok",
            f"S {jobs['C'].jid} 200 0 {t + 1} fast",  # the same attempt again: never legitimate
            f"E {jobs['C'].jid} 200 0 {t + 1.1} ok",
            f"S {jobs['D'].jid} 200 1 {t + 5} fast",
            f"E {jobs['D'].jid} 200 1 {t + 5.1} ok",
            f"S {jobs['E'].jid} 200 0 {t} fast",
            f"E {jobs['E'].jid} 200 0 {t + 0.1} ok",
            f"S {jobs['E'].jid} 200 1 {t + 3} fast",  # ran again after a success, no fault explains it
            f"E {jobs['E'].jid} 200 1 {t + 3.1} ok",
            f"S {jobs['H'].jid} 200 0 {t} fast",
        ],
    }
    for pid, content in lines.items():
        (tmp_path / "ledger" / f"{pid}.ledger").write_text("\n".join(content) + "\n")
    working = [
        {"jid": jobs["F"].jid, "wid": "dead-wid", "reserved_at": at(t + 0.2)},  # stranded by the kill
        {"jid": jobs["G"].jid, "wid": "live-wid", "reserved_at": at(t + 2)},  # nothing explains it
    ]

    def killed(pid: int) -> dict[str, Any]:
        message = f"worker process {pid} was killed by SIGKILL while running this job"
        return {"errtype": "faktoryd.ChildKilled(SIGKILL)", "retry_count": 0, "message": message}

    retries = [{"jid": jobs["D"].jid, "failure": killed(111)}, {"jid": jobs["H"].jid, "failure": killed(200)}]
    s = Scenario(
        tmp_path, StubServer(working, retries), None, None, random.Random(0), list(jobs.values()),  # type: ignore[arg-type]
        Ledger(tmp_path / "ledger"), FaultLog(tmp_path / "faults.log"),
    )  # fmt: skip
    s.wids = {"dead-wid": 111, "live-wid": 200}
    s.killed[111] = s.faults.add("sigkill-busy", t + 0.15, t + 0.15, pids=(111,), wids=("dead-wid",))
    verdict = Verdict()
    check_at_rest(s, verdict)
    explain_duplicates(s, verdict)
    problems = "\n".join(verdict.problems)
    for name in "BCEGH":
        assert jobs[name].jid in problems, f"job {name} should be flagged:\n{problems}"
    for name in "ADF":
        assert jobs[name].jid not in problems, f"job {name} should pass:\n{problems}"
    assert "LOST" in problems and "ran twice as attempt 0" in problems and "no fault explains it" in problems
    assert set(verdict.stranded) == {jobs["F"].jid} and set(verdict.duplicates) == {jobs["D"].jid}
