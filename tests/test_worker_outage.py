"""A worker across a server outage: reconnects by itself, reports jobs finished meanwhile, stays idle on CPU."""

from __future__ import annotations

import os
import re

import pytest
from helpers import wait_for
from worker_apps.support import WorkerProcess, fast_server, sets, settings_for

from faktoryd import Client, Job


@pytest.fixture
def srv(embedded):
    yield from fast_server()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_outage_of_five_seconds(srv):
    client = Client(settings_for(srv))
    jobs = [Job("nap", [0.3], queue="outage") for _ in range(30)]
    client.push_bulk(jobs)
    with WorkerProcess(srv, queues=["outage"], threads=2, handlers=["worker_apps.handlers:nap"]) as worker:
        wait_for(lambda: srv.info()["faktory"]["total_processed"] >= 4, timeout=20)
        # Cut while both processors are inside a handler (not in FETCH), so their ACKs come due mid-outage.
        wait_for(lambda: len(srv.reservations()) == 2 and worker.log().count("start nap") >= 6, timeout=10)
        srv.begin_outage()
        cpu_before = cpu_seconds(worker.proc.pid)
        wait_for(lambda: "lost the Faktory server" in worker.log(), timeout=5)
        # the outage lasts 5 s; the worker must stay up and idle meanwhile
        try:
            wait_for(lambda: worker.proc.poll() is not None, timeout=5, interval=0.25)
            raise AssertionError(f"worker exited during the outage:\n{worker.log()}")
        except AssertionError as exc:
            if "timed out" not in str(exc):
                raise
        cpu_used = cpu_seconds(worker.proc.pid) - cpu_before
        srv.end_outage()
        wait_for(lambda: sets(client)["working"] == 0 and srv.info()["faktory"]["total_processed"] == 30, timeout=30)
        log = worker.log()
        assert worker.proc.poll() is None
    assert cpu_used < 0.5, f"{cpu_used:.2f} s of CPU during a 5 s outage"
    assert len(re.findall("lost the Faktory server", log)) == 1
    assert len(re.findall("reconnected to the Faktory server", log)) == 1
    stats = srv.info()["faktory"]
    assert stats["total_failures"] == 0 and stats["sets"]["retries"] == 0
    assert not any(stats["queues"].values())
    client.close()
