"""The workloads: push, process, latency, memory, lifecycle, the embedded server's own speed, and profiles.

Each run uses a queue name of its own, so a FETCH that a killed contender left armed on the server (PROTOCOL.md
4.5) can never take a job of a later run, and the server is FLUSHed after it. Runs of different contenders
are interleaved (A B C A B C) so that drift on a noisy machine hits all of them alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    RawConn,
    Series,
    Server,
    cpu_seconds,
    descendants,
    kill_group,
    memory_kb,
    noop_jobs,
    percentile,
    processes,
    queue_state,
    tree_cpu_seconds,
)
from bench.lineup import WORK_DIR, Contender, daemon_config, environment

POLL = 0.1  # seconds between INFO polls while a run is in its steady state
EARLY = 2.0  # seconds after which a run that cannot drain within twice its cap is stopped
FINE_POLL = 0.005  # ... near its start and its end, to time them closely


@dataclass
class Context:
    server: Server
    quick: bool
    contenders: list[Contender]
    log: Callable[[str], None]
    repeats: int | None = None
    runs: int = 0

    def reps(self, quick: int, full: int) -> int:
        return self.repeats or (quick if self.quick else full)

    def queue(self, prefix: str) -> str:
        self.runs += 1
        return f"{prefix}{self.runs}-{os.urandom(3).hex()}"

    def by_name(self, name: str) -> Contender:
        return next(c for c in self.contenders if c.name == name)


def start(
    command: list[str], name: str, probe_port: int = 0, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    WORK_DIR.mkdir(exist_ok=True)
    log = open(WORK_DIR / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it; closed with the harness
    environ = environment(probe_port)
    environ.update(env or {})
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True, cwd=str(WORK_DIR)
    )


def tree(proc: subprocess.Popen[bytes]) -> list[int]:
    return [proc.pid, *descendants(proc.pid)]


# ---------------------------------------------------------------------------------------------- push


def push_workload(ctx: Context) -> dict[str, Any]:
    """20,000 tiny jobs (5,000 in quick mode) from one connection, per method, interleaved."""
    count = 5000 if ctx.quick else 20000
    repeats = ctx.reps(1, 3)
    methods = [(c, label, make) for c in ctx.contenders for label, make in c.pushes.items()]
    results: dict[tuple[str, str], Series] = {(c.name, label): Series() for c, label, _ in methods}
    for rep in range(repeats):
        for contender, label, make in methods:
            queue = ctx.queue("push")
            series = results[(contender.name, label)]
            try:
                out = subprocess.run(
                    make(ctx.server.url, queue, count),
                    capture_output=True,
                    env=environment(),
                    timeout=120,
                    check=True,
                    cwd=str(WORK_DIR),
                )
                seconds = float(out.stdout.decode().strip().splitlines()[-1])
                waiting, _, _ = queue_state(ctx.server.info(), queue)
                if waiting != count:
                    series.notes.append(f"queue held {waiting} of {count} jobs")
                series.add(count / seconds)
            except (subprocess.SubprocessError, ValueError, IndexError) as exc:
                series.notes.append(f"failed: {str(exc)[:120]}")
            ctx.server.flush()
            ctx.log(f"push {rep + 1}/{repeats} {contender.name} {label}: {series.values[-1:] or 'failed'}")
    return {"count": count, "repeats": repeats, "results": results}


# ---------------------------------------------------------------------------------------------- process


@dataclass
class Drain:
    rate: float = float("nan")
    drained: bool = False
    server_share: float = float("nan")
    cpu_per_job_us: float = float("nan")
    error: str = ""


def drain_run(  # noqa: PLR0917 - one run's parameters
    ctx: Context, contender: Contender, procs: int, threads: int, count: int, cap: float
) -> Drain:
    """Preload ``count`` no-op jobs with PUSHB, start the contender, time it from its first job until the
    queue and the working set are empty (or ``cap`` seconds), then SIGKILL it."""
    assert contender.work is not None
    server, result = ctx.server, Drain()
    queue = ctx.queue("proc")
    server.admin.push_bulk(noop_jobs(count, queue))
    proc = start(
        contender.work(server.url, queue, procs, threads), f"process-{contender.name.split(',')[0]}", env=contender.env
    )
    try:
        deadline = time.monotonic() + 30.0
        while True:  # startup: wait for the first job to go
            waiting, working, _ = queue_state(server.info(), queue)
            now = time.monotonic()
            if waiting < count:
                break
            if proc.poll() is not None or now > deadline:
                result.error = "never took a job" if proc.poll() is None else f"exited with {proc.returncode}"
                return result
            time.sleep(FINE_POLL * 2)
        first_t, first_done = now, count - waiting - working
        first_cpu = tree_cpu_seconds(tree(proc))
        server_cpu = server.cpu_seconds()
        stop_at = first_t + cap
        last_t, last_done, rate_guess = first_t, first_done, 0.0
        while True:
            waiting, working, _ = queue_state(server.info(), queue)
            now = time.monotonic()
            done = count - waiting - working
            if done > first_done and now > first_t:
                rate_guess = (done - first_done) / (now - first_t)
            last_t, last_done = now, done
            if waiting == 0 and working == 0:
                result.drained = True
                break
            if now >= stop_at:
                break
            left = (waiting + working) / rate_guess if rate_guess else 1.0
            if now - first_t >= min(EARLY, cap / 2) and now + left > first_t + 2 * cap:
                break  # far too slow to drain within the cap: its rate is known well enough by now
            time.sleep(FINE_POLL if left < 2 * POLL else POLL)
        elapsed = last_t - first_t
        cpu = tree_cpu_seconds(tree(proc)) - first_cpu
        if elapsed > 0 and last_done > first_done:
            result.rate = (last_done - first_done) / elapsed
            if last_done - first_done >= 200:  # CPU time has a 10 ms granularity
                result.cpu_per_job_us = cpu / (last_done - first_done) * 1e6
        if server_cpu is not None and elapsed > 0:
            result.server_share = ((server.cpu_seconds() or 0.0) - server_cpu) / elapsed
        return result
    finally:
        kill_group(proc)
        server.flush()


CONFIGS = [(1, 1), (2, 1), (4, 1), (1, 4), (2, 4)]


MAIN = ("raw", "raw-pipelined", "faktoryd", "faktoryd-lib")
"""Contenders whose ratios are the targets: more runs. The peers are 3x to 300x slower; fewer runs suffice."""


def process_workload(ctx: Context) -> dict[str, Any]:
    count = 1500 if ctx.quick else 4000
    cap = 2.0 if ctx.quick else 5.0
    repeats = ctx.reps(1, 4)
    peer_repeats = ctx.reps(1, 2)
    players = [c for c in ctx.contenders if c.work is not None]
    results: dict[tuple[str, int, int], list[Drain]] = {}
    for procs, threads in CONFIGS:
        for rep in range(repeats):
            order = [c for c in players if c.name in MAIN or rep < peer_repeats]
            for contender in order if rep % 2 == 0 else order[::-1]:
                run = drain_run(ctx, contender, procs, threads, count, cap)
                results.setdefault((contender.name, procs, threads), []).append(run)
                ctx.log(
                    f"process {procs}x{threads} {rep + 1}/{repeats} {contender.name}: {run.rate:.0f} jobs/s"
                    f"{'' if run.drained else ' (not drained)'} server {run.server_share:.0%} {run.error}"
                )
    return {"count": count, "cap": cap, "repeats": repeats, "peer_repeats": peer_repeats, "results": results}


# ---------------------------------------------------------------------------------------------- latency


@contextlib.contextmanager
def probe_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def _await_probe(sock: socket.socket, kind: bytes, timeout: float, seen: dict[bytes, float]) -> bool:
    """Collect datagrams until one of ``kind`` arrived (or ``timeout``); ``seen`` keeps the latest of each."""
    deadline = time.monotonic() + timeout
    while kind not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(256)
        except TimeoutError:
            return False
        what, _, value = data.partition(b" ")
        seen[what] = int(value) / 1e6  # ms
    return True


def latency_workload(ctx: Context) -> dict[str, Any]:
    """One job at a time to an idle 1x1 worker: push (with its monotonic time as argument), wait for its ACK,
    pause 2-10 ms, again. Push-to-start is measured in the handler, push-to-ACK once the ACK was answered."""
    samples = 100 if ctx.quick else 400
    budget = 3.0 if ctx.quick else 6.0
    results: dict[str, dict[str, Any]] = {}
    players = [c for c in ctx.contenders if c.work is not None and (not c.extra or c.name == "faktoryd-lib")]
    for contender in players:
        queue = ctx.queue("lat")
        starts: list[float] = []
        acks: list[float] = []
        note = ""
        with probe_socket() as sock:
            port = sock.getsockname()[1]
            assert contender.work is not None
            proc = start(contender.work(ctx.server.url, queue, 1, 1), f"latency-{contender.name}", probe_port=port)
            pusher = RawConn(ctx.server.url)
            try:
                warm = False
                deadline = time.monotonic() + 30
                while not warm and time.monotonic() < deadline and proc.poll() is None:
                    _push_probe(pusher, queue)
                    warm = _await_probe(sock, b"A", 2.0, {})
                if not warm:
                    note = "never acknowledged a job"
                time.sleep(0.3)
                _drain_datagrams(sock)
                stop_at = time.monotonic() + budget
                while warm and len(acks) < samples and time.monotonic() < stop_at:
                    seen: dict[bytes, float] = {}
                    _push_probe(pusher, queue)
                    if not _await_probe(sock, b"A", 3.0, seen):
                        note = "a job was not acknowledged within 3 s"
                        break
                    if b"S" in seen:
                        starts.append(seen[b"S"])
                    acks.append(seen[b"A"])
                    time.sleep(random.uniform(0.002, 0.010))
                if warm and len(acks) < samples and not note:
                    note = f"{len(acks)} samples in the {budget:g} s budget"
            finally:
                pusher.close()
                kill_group(proc)
                ctx.server.flush()
        results[contender.name] = {
            "start_p50": percentile(starts, 50),
            "start_p99": percentile(starts, 99),
            "ack_p50": percentile(acks, 50),
            "ack_p99": percentile(acks, 99),
            "samples": len(acks),
            "note": note,
        }
        ctx.log(f"latency {contender.name}: {results[contender.name]}")
    return {"samples": samples, "results": results}


def _push_probe(conn: RawConn, queue: str) -> None:
    jid = os.urandom(12).hex()
    line = b'PUSH {"jid":"%s","jobtype":"noop","args":[%d],"queue":"%s","retry":0}' % (
        jid.encode(),
        time.monotonic_ns(),
        queue.encode(),
    )
    conn.request(line)


def _drain_datagrams(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(256)
    sock.setblocking(True)


# ---------------------------------------------------------------------------------------------- memory


def _titles() -> dict[int, tuple[int, str]]:
    return {pid: (ppid, cmd) for pid, (ppid, state, cmd) in processes().items() if state != "Z"}


def wait_daemon_ready(proc: subprocess.Popen[bytes], workers: int, timeout: float = 30.0) -> dict[int, str]:
    """Wait until the daemon has ``workers`` children whose title says they are ready; pid -> title."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = {
            pid: cmd
            for pid, (ppid, cmd) in _titles().items()
            if ppid == proc.pid and cmd.startswith("faktoryd worker") and "starting" not in cmd
        }
        if len(kids) >= workers:
            return kids
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError(f"the daemon did not get {workers} ready workers (see {WORK_DIR})")


def memory_workload(ctx: Context) -> dict[str, Any]:
    """RSS and PSS (smaps_rollup) of the daemon's supervisor and each child, idle and after 10,000 jobs;
    and of each contender's whole process tree at the same concurrency, for comparison."""
    procs, threads = 2, 4
    jobs = 2000 if ctx.quick else 10000
    out: dict[str, Any] = {"procs": procs, "threads": threads, "jobs": jobs, "faktoryd": {}, "trees": {}}
    players = [c for c in ctx.contenders if c.work is not None and c.name != "raw-pipelined"]
    if ctx.quick:
        players = [c for c in players if c.name in ("raw", "faktoryd")]
    for contender in players:
        queue = ctx.queue("mem")
        assert contender.work is not None
        proc = start(contender.work(ctx.server.url, queue, procs, threads), f"memory-{contender.name}")
        try:
            if contender.name == "faktoryd":
                wait_daemon_ready(proc, procs)
            time.sleep(1.0 if ctx.quick else 2.0)
            idle = _tree_memory(proc)
            ctx.server.admin.push_bulk(noop_jobs(jobs, queue))
            deadline = time.monotonic() + (10 if ctx.quick else 20)
            drained = False
            while time.monotonic() < deadline:
                waiting, working, _ = queue_state(ctx.server.info(), queue)
                if waiting == 0 and working == 0:
                    drained = True
                    break
                time.sleep(POLL)
            time.sleep(0.5)
            busy = _tree_memory(proc)
            out["trees"][contender.name] = {
                "idle": _sum(idle),
                "after": _sum(busy),
                "processes": len(busy),
                "drained": drained,
            }
            if contender.name == "faktoryd":
                out["faktoryd"] = {"idle": idle, "after": busy, "root": proc.pid}
            ctx.log(f"memory {contender.name}: {out['trees'][contender.name]}")
        finally:
            kill_group(proc)
            ctx.server.flush()
    return out


def _tree_memory(proc: subprocess.Popen[bytes]) -> dict[int, tuple[str, int, int]]:
    """pid -> (title, RSS KiB, PSS KiB) for the contender's processes (the `sh` of node excluded)."""
    table = _titles()
    out: dict[int, tuple[str, int, int]] = {}
    for pid in tree(proc):
        title = table.get(pid, (0, "?"))[1]
        if title.startswith("sh -c"):
            continue
        with contextlib.suppress(OSError):
            rss, pss = memory_kb(pid)
            out[pid] = (title.split(" [")[0], rss, pss)
    return out


def _sum(memory: dict[int, tuple[str, int, int]]) -> tuple[int, int]:
    return sum(v[1] for v in memory.values()), sum(v[2] for v in memory.values())


# ---------------------------------------------------------------------------------------------- lifecycle


@dataclass
class Lifecycle:
    ready: Series = field(default_factory=Series)
    term_idle: Series = field(default_factory=Series)
    term_idle_outcome: list[str] = field(default_factory=list)
    term_arriving: Series = field(default_factory=Series)
    term_arriving_outcome: list[str] = field(default_factory=list)
    term_busy: Series = field(default_factory=Series)
    term_busy_outcome: list[str] = field(default_factory=list)
    term_over: Series = field(default_factory=Series)
    term_over_outcome: list[str] = field(default_factory=list)
    replace: Series = field(default_factory=Series)
    peers_idle: dict[str, Series] = field(default_factory=dict)
    peers_outcome: dict[str, list[str]] = field(default_factory=dict)


def _notify_socket() -> tuple[socket.socket, str]:
    path = str(WORK_DIR / f"notify-{os.getpid()}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


def _start_daemon(
    ctx: Context, queue: str, procs: int, threads: int, shutdown_timeout: float = 5
) -> tuple[subprocess.Popen[bytes], float, float]:
    """Start the daemon with NOTIFY_SOCKET; returns (process, start time, seconds to READY=1)."""
    sock, path = _notify_socket()
    try:
        config = daemon_config(ctx.server.url, queue, procs, threads, shutdown_timeout=shutdown_timeout)
        started = time.monotonic()
        proc = start(
            [str(Path(PYTHON).with_name("faktoryd")), "--config", str(config)],
            "lifecycle-faktoryd",
            env={"NOTIFY_SOCKET": path},
        )
        sock.settimeout(30)
        while True:
            data = sock.recv(4096)
            if b"READY=1" in data.split(b"\n"):
                return proc, started, time.monotonic() - started
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _exit_time(proc: subprocess.Popen[bytes], sent: float, timeout: float = 40) -> float:
    proc.wait(timeout)
    return time.monotonic() - sent


def _outcome(ctx: Context, queue: str, pushed: int) -> str:
    info = ctx.server.info()["faktory"]
    waiting = info["queues"].get(queue, 0)
    return (
        f"{pushed} pushed: {info['total_processed'] - info['total_failures']} run, {info['total_failures']} failed, "
        f"{waiting} left in the queue, **{info['sets']['working']} stranded** in the working set"
    )


def _watch_exit(
    ctx: Context, proc: subprocess.Popen[bytes], queue: str, *, push_before: bool, limit: float, after: float = 2.5
) -> tuple[int, float | None]:
    """Wait for ``proc`` to exit (polling every 5 ms, up to ``limit`` s), then push a job every 50 ms for
    ``after`` s: a FETCH the shutdown abandoned stays armed 2 s on the server and would strand one of them.
    With ``push_before`` jobs are pushed every 50 ms during the shutdown too. Returns (jobs pushed, exit time)."""
    pushed = 0
    exited: float | None = None
    deadline = time.monotonic() + limit
    next_push = time.monotonic() if push_before else float("inf")
    while time.monotonic() < deadline:
        now = time.monotonic()
        if exited is None and proc.poll() is not None:
            exited = now
            next_push = min(next_push, now)
        if exited is not None and now > exited + after:
            break
        if now >= next_push:
            ctx.server.admin.push_bulk(noop_jobs(1, queue))
            pushed += 1
            next_push = now + 0.05
        time.sleep(0.005)
    return pushed, exited


def lifecycle_workload(ctx: Context) -> dict[str, Any]:
    procs, threads = 2, 4
    result = Lifecycle()
    _ready_and_idle_stop(ctx, result, procs, threads, ctx.reps(2, 4))
    _busy_stops(ctx, result, procs, threads, over=not ctx.quick)
    _child_replacement(ctx, result, procs, threads, ctx.reps(1, 3))
    if not ctx.quick:
        _peer_stops(ctx, result, ctx.repeats or 1)
    return {"procs": procs, "threads": threads, "result": result}


def _ready_and_idle_stop(ctx: Context, result: Lifecycle, procs: int, threads: int, repeats: int) -> None:
    """Start to READY=1, then SIGTERM while idle at a random moment of the 2 s FETCH: with no job arriving,
    then (every other run) with jobs arriving during the shutdown."""
    for rep in range(repeats):
        arriving = rep % 2 == 1
        queue = ctx.queue("life")
        proc, _, ready = _start_daemon(ctx, queue, procs, threads)
        result.ready.add(ready)
        time.sleep(0.5 + random.uniform(0, 2))
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        pushed, exited = _watch_exit(ctx, proc, queue, push_before=arriving, limit=40)
        took = (exited if exited is not None else float("inf")) - sent
        (result.term_arriving if arriving else result.term_idle).add(took)
        (result.term_arriving_outcome if arriving else result.term_idle_outcome).append(_outcome(ctx, queue, pushed))
        kill_group(proc)
        ctx.server.flush()
        ctx.log(f"lifecycle: ready {ready:.3f} s, SIGTERM ({'jobs arriving' if arriving else 'idle'}) {took:.3f} s")


def _busy_stops(ctx: Context, result: Lifecycle, procs: int, threads: int, *, over: bool) -> None:
    """SIGTERM with a job running on every thread: 1 s jobs (they finish), 30 s jobs (past shutdown_timeout)."""
    cases = [(1.0, 5.0, result.term_busy, result.term_busy_outcome)]
    if over:
        cases.append((30.0, 2.0, result.term_over, result.term_over_outcome))
    for nap, shutdown, series, outcome in cases:
        queue = ctx.queue("life")
        proc, _, _ = _start_daemon(ctx, queue, procs, threads, shutdown_timeout=shutdown)
        jobs = [dict(job, jobtype="nap", args=[nap], retry=1) for job in noop_jobs(procs * threads, queue)]
        ctx.server.admin.push_bulk(jobs)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if queue_state(ctx.server.info(), queue)[1] == procs * threads:
                break
            time.sleep(0.01)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        series.add(_exit_time(proc, sent))
        info = ctx.server.info()["faktory"]
        outcome.append(
            f"{procs * threads} jobs of {nap:g} s, shutdown_timeout {shutdown:g} s: "
            f"{info['total_processed'] - info['total_failures']} ACKed, {info['total_failures']} FAILed "
            f"({info['sets']['retries']} in retries), {info['sets']['working']} stranded"
        )
        kill_group(proc)
        ctx.server.flush()
        ctx.log(f"lifecycle: busy SIGTERM {series.values[-1]:.3f} s: {outcome[-1]}")


def _child_replacement(ctx: Context, result: Lifecycle, procs: int, threads: int, repeats: int) -> None:
    """SIGKILL one child of a fresh daemon (a first crash: no backoff) until its replacement is ready."""
    for _ in range(repeats):
        queue = ctx.queue("life")
        proc, _, _ = _start_daemon(ctx, queue, procs, threads)
        try:
            kids = wait_daemon_ready(proc, procs)
            time.sleep(0.3)
            victim = sorted(kids)[0]
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            deadline = killed + 20
            while time.monotonic() < deadline:
                now_kids = {
                    pid
                    for pid, (ppid, cmd) in _titles().items()
                    if ppid == proc.pid and cmd.startswith("faktoryd worker") and "starting" not in cmd
                }
                if len(now_kids - {victim}) >= procs and victim not in now_kids:
                    result.replace.add(time.monotonic() - killed)
                    break
                time.sleep(0.002)
            ctx.log(f"lifecycle: child replaced in {result.replace.values[-1:]}")
        finally:
            kill_group(proc)
            ctx.server.flush()


def _peer_stops(ctx: Context, result: Lifecycle, repeats: int) -> None:
    """The other contenders at 1x1: SIGTERM while idle, and whether that strands a job."""
    for contender in [c for c in ctx.contenders if c.work is not None and c.name != "faktoryd" and not c.extra]:
        series = result.peers_idle.setdefault(contender.name, Series())
        outcomes = result.peers_outcome.setdefault(contender.name, [])
        for _ in range(repeats):
            queue = ctx.queue("life")
            assert contender.work is not None
            proc = start(contender.work(ctx.server.url, queue, 1, 1), f"lifecycle-{contender.name}")
            ctx.server.admin.push_bulk(noop_jobs(1, queue))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and queue_state(ctx.server.info(), queue)[2] < 1:
                time.sleep(0.02)
            ctx.server.flush()
            time.sleep(0.5 + random.uniform(0, 2))
            target = proc.pid if contender.name != "node" else (descendants(proc.pid) or [proc.pid])[0]
            sent = time.monotonic()
            os.kill(target, signal.SIGTERM)
            pushed, exited = _watch_exit(ctx, proc, queue, push_before=False, limit=15)
            if exited is None:
                series.notes.append("still running 15 s after SIGTERM (then killed)")
                series.add(float("inf"))
            else:
                series.add(exited - sent)
            outcomes.append(_outcome(ctx, queue, pushed))
            kill_group(proc)
            ctx.server.flush()
            ctx.log(f"lifecycle: {contender.name} idle SIGTERM {series.values[-1]:.3f} s: {outcomes[-1]}")


# ---------------------------------------------------------------------------------------------- server


def server_workload(ctx: Context) -> dict[str, Any]:
    """FETCH+ACK cycles per second of the server with 1 and 4 raw clients (one process each), and its CPU."""
    count = 3000 if ctx.quick else 8000
    out: dict[str, Any] = {}
    repeats = ctx.reps(1, 3)
    for name in ("raw", "raw-pipelined"):
        raw = ctx.by_name(name)
        for clients in (1, 4):
            series = Series()
            shares = Series()
            for _ in range(repeats):
                run = drain_run(ctx, raw, clients, 1, count, 10.0)
                series.add(run.rate)
                shares.add(run.server_share)
            out[(name, clients)] = (series, shares)
            ctx.log(f"server: {name} {clients} client(s) {series.median:.0f} cycles/s, CPU {shares.median:.0%}")
    # PUSH per second from one connection (the raw loop)
    pushes = Series()
    for _ in range(repeats):
        queue = ctx.queue("srvpush")
        seconds = float(
            subprocess.run(
                [PYTHON, "-m", "bench.contenders.raw", "push", ctx.server.url, queue, str(count)],
                capture_output=True,
                env=environment(),
                check=True,
            ).stdout
        )
        pushes.add(count / seconds)
        ctx.server.flush()
    out["push"] = pushes
    return out


# ---------------------------------------------------------------------------------------------- decomposition


def overhead_workload(ctx: Context) -> dict[str, Any]:
    """Where the daemon's time goes: the same drain with the children's per-job messages to the supervisor
    switched off (an experiment, never a configuration), next to the Worker used as a library (no supervisor at
    all) and the raw bound."""
    from bench.lineup import muted_daemon  # noqa: PLC0415

    count = 2000 if ctx.quick else 5000
    repeats = ctx.reps(1, 3)
    rows = [ctx.by_name("raw"), ctx.by_name("faktoryd"), muted_daemon("channel")]
    rows += [c for c in ctx.contenders if c.name == "faktoryd-lib"]
    results: dict[tuple[str, int, int], list[Drain]] = {}
    for procs, threads in ((1, 1), (2, 4)):
        for rep in range(repeats):
            for contender in rows if rep % 2 == 0 else rows[::-1]:
                run = drain_run(ctx, contender, procs, threads, count, 6.0)
                results.setdefault((contender.name, procs, threads), []).append(run)
                ctx.log(
                    f"overhead {procs}x{threads} {contender.name}: {run.rate:.0f} jobs/s, {run.cpu_per_job_us:.0f} us"
                )
    return {"count": count, "repeats": repeats, "results": results, "names": [c.name for c in rows]}


# ---------------------------------------------------------------------------------------------- profiles


def profile_workload(ctx: Context) -> dict[str, Any]:
    """py-spy samples of the daemon's child (1x1 and 1x4) and of the server while draining no-op jobs."""
    out: dict[str, Any] = {}
    queue = ctx.queue("profpush")
    with contextlib.suppress(subprocess.SubprocessError, ValueError):
        done = subprocess.run(
            [PYTHON, "-m", "bench.contenders.profile_push", ctx.server.url, queue, "20000"],
            capture_output=True,
            env=environment(),
            timeout=120,
            check=True,
        )
        out["push_bulk"] = json.loads(done.stdout)
    ctx.server.flush()
    spy = Path(PYTHON).with_name("py-spy")
    if not spy.exists():
        out["skipped"] = "py-spy is not installed (pip install py-spy)"
        return out
    if ctx.quick:
        out["skipped"] = "py-spy profiles are taken in the full run only"
        return out
    duration = 2 if ctx.quick else 4
    faktoryd = ctx.by_name("faktoryd")
    assert faktoryd.work is not None
    for procs, threads in ((1, 1), (1, 4)):
        queue = ctx.queue("prof")
        ctx.server.admin.push_bulk(noop_jobs(60000, queue))
        proc = start(faktoryd.work(ctx.server.url, queue, procs, threads), "profile-faktoryd")
        try:
            kids = wait_daemon_ready(proc, procs)
            child = sorted(kids)[0]
            files = {part: WORK_DIR / f"spy-{part}-{threads}.txt" for part in ("child", "supervisor", "server")}
            targets = {"child": child, "supervisor": proc.pid, "server": ctx.server.pid}
            spies = []
            for key, pid in targets.items():
                if pid is None:
                    continue
                spies.append(
                    subprocess.Popen(
                        [
                            str(spy),
                            "record",
                            "-p",
                            str(pid),
                            "-d",
                            str(duration),
                            "-r",
                            "250",
                            "-f",
                            "raw",
                            "-o",
                            str(files[key]),
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            t0, c0, s0 = time.monotonic(), cpu_seconds(child), cpu_seconds(proc.pid)
            _, _, done0 = queue_state(ctx.server.info(), queue)
            for s in spies:
                s.wait(60)
            t1, c1, s1 = time.monotonic(), cpu_seconds(child), cpu_seconds(proc.pid)
            _, _, done1 = queue_state(ctx.server.info(), queue)
            out["spy", procs, threads] = {
                **{part: summarize_profile(path) for part, path in files.items() if path.exists()},
                "jobs_per_s": (done1 - done0) / (t1 - t0),
                "child_cpu_us": (c1 - c0) / max(done1 - done0, 1) * 1e6,
                "supervisor_cpu_us": (s1 - s0) / max(done1 - done0, 1) * 1e6,
            }
        finally:
            kill_group(proc)
            ctx.server.flush()
        ctx.log(f"profile {procs}x{threads} done")
    return out


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares of the busiest functions in a py-spy ``raw`` (collapsed stacks) file."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[_short(frames[-1])] = own.get(_short(frames[-1]), 0) + n
        for name in {_short(f) for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + n

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]] if total else []

    return {"samples": total, "self": ranked(own), "inclusive": ranked(inclusive)}


def _short(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``func (file.py)``: lines vary, functions are what matter."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({file.rsplit('/', 1)[-1]})" if file else name


def python_version() -> str:
    return sys.version.split()[0]
