"""Resource hygiene: nothing grows with use.

- A worker process running 10,000 jobs (ACKed, FAILed, async, large return values) keeps the same descriptors
  and threads, and its memory stays within a tolerance (measured from /proc after a warm-up and at the end).
- Workers started and stopped in one process leave no thread and no descriptor behind.
- The supervisor, after 100 child restarts of every kind (rolling reloads, crashes, resizes), has no zombie
  child, the same descriptors (one pipe per live child plus its self-pipe), and a fresh child inherits no more
  descriptors than the first one did.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, write_config, zombies_of
from helpers import wait_for
from worker_apps.support import WorkerProcess, fast_server, running, settings_for

from faktoryd import Client, Job, Worker

HANDLERS = [
    "ledger_apps.hygiene_jobs:noop",
    "ledger_apps.hygiene_jobs:fail",
    "ledger_apps.hygiene_jobs:async_noop",
    "ledger_apps.hygiene_jobs:chunky",
]
JOBS = 10_000
WARM_UP = 1_000
RSS_TOLERANCE_KB = 4 * 1024
"""Growth of resident memory allowed over 10,000 jobs after the warm-up (allocator slack, not a leak: a leak
of even one 64 KiB value per job would be 600 MiB)."""


@pytest.fixture
def srv() -> Iterator[Any]:
    yield from fast_server()


def descriptors(pid: int | str = "self") -> Counter[str]:
    """Open descriptors of a process by kind: pipe, socket, anon_inode, or the path of a file."""
    kinds: Counter[str] = Counter()
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        try:
            target = os.readlink(f"{folder}/{fd}")
        except OSError:  # closed meanwhile (the listing itself, in this process)
            continue
        kinds[target.split(":", 1)[0] if target.startswith(("pipe:", "socket:", "anon_inode:")) else target] += 1
    return kinds


def status(pid: int) -> dict[str, int]:
    """Threads and resident memory (kB) from /proc/PID/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                fields[key] = int(value.split()[0])
    return fields


def snapshot(pid: int) -> dict[str, Any]:
    info = status(pid)
    return {"fds": descriptors(pid), "threads": info["Threads"], "rss_kb": info["VmRSS"]}


# ---------------------------------------------------------------------------------------------- a worker


@pytest.mark.timeout(180)
def test_worker_running_ten_thousand_jobs_leaks_nothing(srv) -> None:
    queue = "hygiene"
    plan = ["noop"] * 7 + ["fail", "async_noop", "chunky"]  # one job in ten FAILs (retry=1: retried once)

    def jobs(first: int, count: int) -> list[Job]:
        return [Job(plan[n % len(plan)], [n], queue=queue, retry=1) for n in range(first, first + count)]

    with (
        Client(settings_for(srv)) as client,
        WorkerProcess(srv, queues=[queue], threads=4, handlers=HANDLERS, heartbeat_interval=5) as worker,
    ):

        def processed() -> int:
            return client.info()["faktory"]["total_processed"]

        def drained(target: int) -> bool:
            info = client.info()["faktory"]
            return info["total_processed"] >= target and not info["queues"].get(queue) and not info["sets"]["working"]

        assert client.push_bulk(jobs(0, WARM_UP)) == {}
        wait_for(lambda: drained(WARM_UP), timeout=60, interval=0.1, what="the warm-up jobs")
        time.sleep(0.5)  # let the processors settle into their next FETCH (a stable point to measure)
        before = snapshot(worker.proc.pid)
        started = time.monotonic()
        samples = [before]
        for first in range(WARM_UP, WARM_UP + JOBS, 1000):
            assert client.push_bulk(jobs(first, 1000)) == {}
            wait_for(lambda first=first: drained(first + 1000), timeout=60, interval=0.05, what="a batch of jobs")
            if (first - WARM_UP) % 3000 == 0:
                samples.append(snapshot(worker.proc.pid))
        took = time.monotonic() - started
        time.sleep(0.5)
        after = snapshot(worker.proc.pid)
        total = processed()
        info = client.info()["faktory"]
        assert worker.proc.poll() is None, worker.log()[-3000:]
    assert total >= WARM_UP + JOBS
    assert info["total_failures"] >= (WARM_UP + JOBS) // 10  # the FAIL path was exercised
    assert after["fds"] == before["fds"], f"descriptors changed: before {before['fds']}, after {after['fds']}"
    assert after["threads"] == before["threads"], f"threads: {before['threads']} -> {after['threads']}"
    growth = after["rss_kb"] - before["rss_kb"]
    rss = [s["rss_kb"] for s in [*samples, after]]
    print(f"worker after {JOBS} jobs in {took:.1f} s: fds {dict(after['fds'])}, threads {after['threads']}, rss {rss}")
    assert growth <= RSS_TOLERANCE_KB, f"resident memory grew {growth} kB over {JOBS} jobs ({took:.1f} s): {rss}"


def test_workers_started_and_stopped_in_a_process_leave_nothing_behind(srv) -> None:
    def ours() -> list[str]:
        return sorted(
            t.name for t in threading.enumerate() if t.name.startswith("faktoryd-") or t.name == "test-worker"
        )

    with Client(settings_for(srv)) as client:
        client.info()
        gc.collect()
        fds_before, threads_before = descriptors(), ours()
        for n in range(8):
            seen: list[int] = []
            worker = Worker(settings_for(srv), ["cycle"], {"Seen": seen.append}, threads=3, heartbeat_interval=5)
            client.perform("Seen", n, queue="cycle")
            with running(worker):
                wait_for(lambda seen=seen: seen, timeout=10, what="the job run")
        gc.collect()
        wait_for(lambda: ours() == threads_before, timeout=5, what="the worker threads gone")
        wait_for(lambda: descriptors() == fds_before, timeout=5, what=f"descriptors back to {fds_before}")


# ---------------------------------------------------------------------------------------------- the supervisor

def connected_descriptors(pid: int) -> Counter[str]:
    """A worker's descriptors once both its connections (heartbeat, one processor) are up: an inherited
    socket would show as a third."""
    return wait_for(lambda: (fds := descriptors(pid))["socket"] >= 2 and fds, what=f"worker {pid} connected")


PROCESSES = 4
RESTARTS = 100
SURGE = 10
"""Extra children started at once (TTIN) and retired at once (TTOU) in each resize round."""


@pytest.mark.timeout(150)
def test_supervisor_after_a_hundred_child_restarts_has_no_zombies_and_no_leaked_pipes(tmp_path: Path, srv) -> None:
    config = write_config(
        tmp_path / "faktory.toml", srv.url, processes=PROCESSES, threads=1, restart_backoff_max=1, shutdown_timeout=2
    )
    config.write_text(config.read_text().replace('level = "DEBUG"', 'level = "INFO"'))
    with Daemon(config) as daemon:
        supervisor = daemon.pid

        def ready_pool(size: int = PROCESSES, gone: frozenset[int] = frozenset()) -> dict[int, str]:
            workers = daemon.workers()
            complete = len(workers) == size and not gone & set(workers)
            return workers if complete and "starting" not in "".join(workers.values()) else {}

        def settled() -> bool:
            """The pool is complete and nothing else lives: no retiring child, no reload check, no zombie."""
            return bool(ready_pool()) and len(daemon.children()) == PROCESSES and not zombies_of(supervisor)

        def started() -> int:
            return daemon.log.count("started worker")

        first_child = min(wait_for(ready_pool, timeout=30, what="the first workers"))
        first_child_fds = connected_descriptors(first_child)
        wait_for(settled, timeout=20, what="the pool settled")
        baseline = snapshot(supervisor)
        kinds = Counter[str]()

        def reload() -> None:
            old = frozenset(daemon.workers())
            daemon.signal(signal.SIGHUP)
            wait_for(lambda: ready_pool(gone=old), timeout=30, what="a rolling reload")
            kinds["reload"] += len(old)

        def crash() -> None:
            victim = min(daemon.workers())
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: ready_pool(gone=frozenset({victim})), timeout=30, what="a crashed child replaced")
            kinds["crash"] += 1

        def signal_and_wait(signum: int, line: str) -> None:
            """Send a signal once the previous one was handled: a signal sent while the same is pending merges."""
            seen = daemon.log.count(line)
            daemon.signal(signum)
            wait_for(lambda: daemon.log.count(line) > seen, timeout=10, what=line)

        def surge() -> None:
            """TTIN a few times (children start in parallel), then TTOU as often (they are retired at once)."""
            for size in range(PROCESSES + 1, PROCESSES + SURGE + 1):
                signal_and_wait(signal.SIGTTIN, f"growing the pool to {size} process(es)")
            extra = frozenset(wait_for(lambda: ready_pool(PROCESSES + SURGE), timeout=30, what="the surge")) - before
            for size in range(PROCESSES + SURGE - 1, PROCESSES - 1, -1):
                signal_and_wait(signal.SIGTTOU, f"shrinking the pool to {size} process(es)")
            wait_for(lambda: ready_pool(gone=extra), timeout=30, what="the surge retired")
            kinds["resize"] += len(extra)

        initial = started()
        crashes = 4  # last: after a crash the supervisor paces every spawn for a while (a crash streak)
        plan = [reload] * 3 + [surge] * 20
        for action in plan:
            before = frozenset(daemon.workers())
            action()
            if started() - initial >= RESTARTS - crashes:
                break
        for _ in range(crashes):
            crash()
        restarts = started() - initial
        wait_for(settled, timeout=30, what="every retired child reaped")
        zombies = zombies_of(supervisor)
        after = snapshot(supervisor)
        newest = max(daemon.workers())
        newest_fds = connected_descriptors(newest)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    print(f"supervisor after {restarts} restarts {dict(kinds)}: {dict(after['fds'])}, rss {after['rss_kb']} kB")
    assert restarts >= RESTARTS, kinds
    assert zombies == [], f"unreaped children of the supervisor: {zombies}"
    assert after["fds"] == baseline["fds"], f"supervisor descriptors: {baseline['fds']} -> {after['fds']}"
    assert after["fds"]["pipe"] == 2 + PROCESSES, "its self-pipe plus one pipe per live child"
    assert after["threads"] == 1, "the supervisor never runs threads"
    assert after["rss_kb"] - baseline["rss_kb"] <= 4 * 1024, (baseline["rss_kb"], after["rss_kb"])
    assert newest != first_child
    assert newest_fds == first_child_fds, f"a child's descriptors: first {first_child_fds}, newest {newest_fds}"
