"""Worker processes and real signals: TERM/INT, a second TERM, TSTP, TTIN, and the server's terminate.

Each test runs tests/worker_apps/run.py in a subprocess (killed in any case on exit) and reads the server's
state over the protocol, so the tests also pass against a real server.
"""

from __future__ import annotations

import signal
import time

import pytest
from helpers import wait_for
from worker_apps.support import FETCH_BLOCK, WorkerProcess, beat_state, fast_server, queue_sizes, sets, settings_for

from faktoryd import Client

HANDLERS = ["worker_apps.handlers:noop", "worker_apps.handlers:nap", "worker_apps.handlers:spin"]


@pytest.fixture
def srv():
    yield from fast_server()


@pytest.fixture
def client(srv):
    with Client(settings_for(srv)) as c:
        yield c


def connections(client: Client) -> int:
    return client.info()["server"]["connections"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_idle_worker_exits_fast_without_stranding_jobs_pushed_during_shutdown(server, signum):
    """Against the server's real 2 s FETCH block: the blocked FETCHes are let return, never abandoned."""
    client = Client(settings_for(server))
    before = connections(client)
    with WorkerProcess(server, queues=["idle"], threads=2, handlers=HANDLERS) as worker:
        wait_for(lambda: connections(client) >= before + 3, timeout=15, what="worker connected")
        time.sleep(0.2)  # let both processors block in FETCH on the server
        worker.signal(signum)
        signalled = time.monotonic()
        pushed = 0
        while worker.proc.poll() is None and time.monotonic() - signalled < 5:
            client.perform("noop", queue="idle")
            pushed += 1
            time.sleep(0.05)
        assert worker.wait(5) == 0
        assert time.monotonic() - signalled < 2.5
    assert pushed > 0
    wait_for(lambda: connections(client) == before, what="every worker connection closed")
    info = client.info()["faktory"]
    assert info["sets"]["working"] == 0, "a FETCH was abandoned and its job stranded"
    assert info["total_processed"] + info["queues"].get("idle", 0) == pushed
    assert info["total_failures"] == 0
    client.close()


def test_job_ignoring_sigterm_is_failed_as_shutdown_at_the_deadline(srv, client):
    jid = client.perform("nap", 60, queue="stuck")
    with WorkerProcess(srv, queues=["stuck"], handlers=HANDLERS, shutdown_timeout=1.5) as worker:
        wait_for(lambda: sets(client)["working"] == 1, timeout=15)
        worker.wait_log("start nap")
        worker.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert worker.wait(10) == 0
        elapsed = time.monotonic() - signalled
    assert 1.4 < elapsed < 1.5 + 1.5
    assert sets(client)["working"] == 0
    assert sets(client)["retries"] == 1
    retried = client_fetch_failure(srv, client, jid, "stuck")
    assert retried["errtype"] == "Faktory::Shutdown"
    assert any("nap" in line for line in retried["backtrace"])


def client_fetch_failure(server, client, jid, queue):
    from worker_apps.support import take_from_set

    return take_from_set(server, client, "retries", jid, queue)["failure"]


def test_second_sigterm_skips_the_wait(srv, client):
    jid = client.perform("spin", 60, queue="twice")
    with WorkerProcess(srv, queues=["twice"], handlers=HANDLERS, shutdown_timeout=30) as worker:
        worker.wait_log("start spin")
        worker.signal(signal.SIGTERM)
        worker.wait_log("terminating")
        worker.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert worker.wait(10) == 0
        assert time.monotonic() - signalled < 2.0
        assert "not waiting for running jobs" in worker.log()
    assert client_fetch_failure(srv, client, jid, "twice")["errtype"] == "Faktory::Shutdown"


@pytest.mark.parametrize(
    ("signals", "waits"),
    [((signal.SIGUSR2, signal.SIGUSR2), True), ((signal.SIGQUIT,), False)],
    ids=["usr2-twice-still-waits", "quit-does-not-wait"],
)
def test_supervisor_signals(srv, client, signals, waits):
    """USR2 is a graceful stop however often it comes; QUIT stops at once. Both FAIL the job as a shutdown."""
    jid = client.perform("spin", 60, queue="sup")
    with WorkerProcess(srv, queues=["sup"], handlers=HANDLERS, shutdown_timeout=1.5) as worker:
        worker.wait_log("start spin")
        for signum in signals:
            worker.signal(signum)
            worker.wait_log("terminating")
        signalled = time.monotonic()
        assert worker.wait(10) == 0
        elapsed = time.monotonic() - signalled
    assert (1.2 < elapsed < 3.0) if waits else elapsed < 1.0
    assert client_fetch_failure(srv, client, jid, "sup")["errtype"] == "Faktory::Shutdown"


def test_sigtstp_quiets_and_sigttin_dumps_threads(srv, client):
    with WorkerProcess(srv, queues=["tstp"], handlers=HANDLERS, threads=2) as worker:
        worker.wait_log("starting")
        worker.signal(signal.SIGTSTP)
        worker.wait_log("is quiet")
        worker.signal(signal.SIGTTIN)
        worker.wait_log("thread dump")
        assert "faktoryd-heartbeat" in worker.log() and "faktoryd-processor-1" in worker.log()
        time.sleep(FETCH_BLOCK + 0.2)  # a FETCH in flight when the quiet came may still return a job
        client.perform("noop", queue="tstp")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert queue_sizes(client).get("tstp") == 1, "a quiet worker fetched"
            assert worker.proc.poll() is None, "quiet is not an exit"
            time.sleep(0.05)
        worker.signal(signal.SIGTERM)
        assert worker.wait(5) == 0
    assert queue_sizes(client).get("tstp") == 1


def test_server_side_terminate_fails_running_job_and_exits_zero(srv, client):
    jid = client.perform("nap", 60, queue="srvterm")
    with WorkerProcess(
        srv, queues=["srvterm"], handlers=HANDLERS, shutdown_timeout=1.0, heartbeat_interval=0.5
    ) as worker:
        worker.wait_log("start nap")
        beat_state(srv, worker.wid, "terminate")
        told = time.monotonic()
        assert worker.wait(10) == 0
        assert time.monotonic() - told < 0.5 + 1.0 + 1.5
        assert "asked this worker to terminate" in worker.log()
    assert sets(client)["working"] == 0
    assert client_fetch_failure(srv, client, jid, "srvterm")["errtype"] == "Faktory::Shutdown"
