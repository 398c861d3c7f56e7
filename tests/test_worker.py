"""The Worker in this process against a server over real sockets: processing, failures, timeouts, quiet/terminate.

Every test passes against the embedded server and against a real one (FAKTORY_URL); tests that need the
embedded server's controls take the ``embedded`` fixture.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import Counter

import pytest
from helpers import wait_for
from worker_apps import handlers as apps
from worker_apps.support import (
    FETCH_BLOCK,
    beat_state,
    fast_server,
    queue_sizes,
    running,
    sets,
    settings_for,
    take_from_set,
)

import faktoryd
from faktoryd import Client, Connection, Job, Registry, ServerError, Worker, WorkerHalt
from faktoryd.worker import State
from faktoryd.worker.processor import Processor


@pytest.fixture
def srv():
    yield from fast_server()


@pytest.fixture
def client(srv):
    with Client(settings_for(srv)) as c:
        yield c


def make_worker(server, handlers, **options) -> Worker:
    options.setdefault("heartbeat_interval", 0.5)
    options.setdefault("shutdown_timeout", 5)
    return Worker(settings_for(server), handlers=handlers, **options)


def idle(client: Client) -> bool:
    return sets(client)["working"] == 0 and not any(queue_sizes(client).values())


# ---------------------------------------------------------------------------------------------- processing


@pytest.mark.parametrize("threads", [1, 4])
def test_thousand_jobs_across_three_queues_exactly_once(srv, client, threads):
    seen: list[str] = []
    registry = Registry()
    registry.register(lambda n: seen.append(faktoryd.current_job().jid), "Count")
    queues = ["critical", "default", "low"]
    jobs = [Job("Count", [n], queue=queues[n % 3]) for n in range(1000)]
    assert client.push_bulk(jobs) == {}
    worker = make_worker(srv, registry, queues=queues, threads=threads)
    with running(worker):
        wait_for(lambda: len(seen) >= 1000 and idle(client), timeout=60, what="1000 jobs processed")
    counts = Counter(seen)
    assert set(counts) == {job.jid for job in jobs}
    assert max(counts.values()) == 1
    stats = sets(client)
    assert stats["working"] == stats["retries"] == stats["dead"] == 0
    assert client.info()["faktory"]["total_processed"] == 1000


def test_strict_order_is_honoured(srv, client):
    order: list[str] = []
    registry = Registry()
    registry.register(lambda: order.append(faktoryd.current_job().queue), "Q")
    for queue in ("low", "default", "critical"):
        client.push_bulk(Job("Q", [], queue=queue) for _ in range(20))
    worker = make_worker(srv, registry, queues=["critical", "default", "low"])
    with running(worker):
        wait_for(lambda: len(order) == 60, timeout=30)
    assert order == ["critical"] * 20 + ["default"] * 20 + ["low"] * 20


@pytest.mark.parametrize("queues", [["a", "b"], {"a": 3, "b": 1}])
def test_random_and_weighted_orders_serve_every_queue(srv, client, queues):
    seen: list[str] = []
    registry = Registry()
    registry.register(lambda: seen.append(faktoryd.current_job().queue), "Q")
    for queue in ("a", "b"):
        client.push_bulk(Job("Q", [], queue=queue) for _ in range(30))
    order = "random" if isinstance(queues, list) else None
    worker = make_worker(srv, registry, queues=queues, queue_order=order)
    with running(worker):
        wait_for(lambda: len(seen) == 60, timeout=30)
    assert "b" in seen[:40]  # not strict: b is served before a is drained


def test_async_handlers_and_the_job_context(srv, client):
    seen: dict[str, object] = {}
    registry = Registry()

    @registry.job("Async")
    async def async_job(x):
        await asyncio.sleep(0.01)
        ctx = faktoryd.current_context()
        seen["async"] = (x, ctx.jid, ctx.jobtype, ctx.queue, ctx.custom, ctx.retry_count, ctx.remaining() > 0)
        seen["loop"] = asyncio.get_running_loop()

    @registry.job("Sync", timeout=30)
    def sync_job(*args):
        ctx = faktoryd.current_context()
        seen["sync"] = (ctx.wid, ctx.args, round(ctx.deadline - ctx.started))

    jid = client.perform("Async", 5, queue="ctx", custom={"trace": "t"})
    client.perform("Sync", 1, 2, queue="ctx")
    worker = make_worker(srv, registry, queues=["ctx"])
    with running(worker):
        wait_for(lambda: "sync" in seen and "async" in seen and idle(client))
    assert seen["async"] == (5, jid, "Async", "ctx", {"trace": "t"}, 0, True)
    assert seen["sync"] == (worker.wid, [1, 2], 30)


def test_catch_all_callable_receives_the_job(srv, client):
    got: list[Job] = []
    client.perform("Anything", 1, queue="all")
    client.perform("Else", "x", queue="all")
    with running(make_worker(srv, got.append, queues=["all"])):
        wait_for(lambda: len(got) == 2 and idle(client))
    assert [(job.jobtype, job.args) for job in got] == [("Anything", [1]), ("Else", ["x"])]


def test_middleware_and_hooks(srv, client):
    events: list[str] = []

    def timing(job, call_next):
        events.append(f"before {job.jobtype}")
        try:
            return call_next()
        except Exception as exc:
            events.append(f"error {type(exc).__name__}")
            raise
        finally:
            events.append(f"after {job.jobtype}")

    registry = Registry()
    registry.register(lambda: events.append("ran"), "Ok")
    registry.register(apps.boom, "Boom")
    client.perform("Ok", queue="mw")
    client.perform("Boom", "no", queue="mw")
    worker = make_worker(
        srv,
        registry,
        queues=["mw"],
        middleware=[timing],
        on_startup=[lambda w: events.append(f"startup {w.wid}")],
        on_quiet=[lambda w: events.append("quiet")],
        on_shutdown=[lambda w: events.append("shutdown")],
    )
    with running(worker):
        wait_for(lambda: idle(client) and "after Boom" in events)
        worker.quiet()
        wait_for(lambda: "quiet" in events)
    assert events == [
        f"startup {worker.wid}",
        "before Ok",
        "ran",
        "after Ok",
        "before Boom",
        "error ValueError",
        "after Boom",
        "quiet",
        "shutdown",
    ]


def test_job_observers_see_start_and_report(srv, client):
    started: list[str] = []
    done: list[str] = []
    registry = Registry()
    registry.register(apps.noop, "N")
    jids = [client.perform("N", queue="obs") for _ in range(5)]
    worker = make_worker(
        srv,
        registry,
        queues=["obs"],
        on_job_start=lambda j: started.append(j.jid),
        on_job_done=lambda j: done.append(j.jid),
    )
    with running(worker):
        wait_for(lambda: len(done) == 5)
    assert started == jids and done == jids


def test_one_log_line_per_job_start_and_finish(srv, client, caplog):
    registry = Registry()
    registry.register(apps.noop, "N")
    registry.register(apps.boom, "B")
    ok, bad = client.perform("N", queue="logs"), client.perform("B", "x", queue="logs")
    with caplog.at_level("INFO", logger="faktoryd.worker"), running(make_worker(srv, registry, queues=["logs"])):
        wait_for(lambda: sum(1 for r in caplog.records if r.getMessage().startswith(("done", "fail"))) == 2)
    lines = [(r.getMessage().split()[0], r.jid, r.jobtype) for r in caplog.records if hasattr(r, "jid")]
    assert lines == [("start", ok, "N"), ("done", ok, "N"), ("start", bad, "B"), ("fail", bad, "B")]
    finish = [r for r in caplog.records if hasattr(r, "duration")]
    assert len(finish) == 2 and all(r.duration >= 0 and " s" in r.getMessage() for r in finish)


# ---------------------------------------------------------------------------------------------- failures


class PaymentDeclined(Exception):
    pass


def test_raising_handler_leaves_the_job_in_retries(srv, client):
    registry = Registry()

    @registry.job("Charge")
    def charge(amount):
        raise PaymentDeclined(f"card declined for {amount}")

    jid = client.perform("Charge", 42, queue="pay", retry=5)
    with running(make_worker(srv, registry, queues=["pay"])):
        wait_for(lambda: sets(client)["retries"] == 1)
    failure = take_from_set(srv, client, "retries", jid, "pay")["failure"]
    assert failure["errtype"] == f"{__name__}.PaymentDeclined"
    assert failure["message"] == "card declined for 42"
    assert failure["retry_count"] == 0 and failure["remaining"] == 5
    backtrace = failure["backtrace"]
    assert 1 <= len(backtrace) <= 50
    assert "in charge" in backtrace[-1] and "raise PaymentDeclined" in backtrace[-1]
    assert not any("faktoryd/worker" in line for line in backtrace)


def test_unknown_jobtype_is_failed_and_the_worker_goes_on(srv, client):
    seen: list[int] = []
    registry = Registry()
    registry.register(seen.append, "Known")
    unknown = client.perform("Unknown", queue="uk", retry=3)
    client.perform("Known", 7, queue="uk")
    with running(make_worker(srv, registry, queues=["uk"])):
        wait_for(lambda: seen == [7] and idle(client) and sets(client)["retries"] == 1)
    failure = take_from_set(srv, client, "retries", unknown, "uk")["failure"]
    assert failure["errtype"] == "faktoryd.UnknownJobType"
    assert failure["message"] == "No handler registered for job type 'Unknown'"


def test_undecodable_payload_is_failed_not_fatal(srv, client):
    jid = client.perform("Whatever", queue="bad", retry=2)
    reserved = fetch_raw_reserved(srv, "bad")
    assert reserved == jid
    worker = make_worker(srv, Registry(), queues=["bad"])
    proc = Processor(worker._runtime, 0)
    proc.conn = Connection(settings_for(srv), wid=worker.wid).open()
    try:
        proc._process(b"this is not json")  # no jid: logged, nothing to FAIL
        proc._process(b'{"jid":"%s","jobtype":5,"args":[]}' % jid.encode())
    finally:
        proc.conn.close()
    failure = take_from_set(srv, client, "retries", jid, "bad")["failure"]
    assert failure["errtype"] == "faktoryd.InvalidJobPayload"
    assert "cannot decode job payload" in failure["message"]


def fetch_raw_reserved(server, queue: str) -> str:
    """FETCH a job (reserving it) without ACK; returns its jid."""
    import json

    from faktoryd import protocol

    with Connection(settings_for(server)) as conn:
        return json.loads(conn.request(protocol.fetch([queue])))["jid"]


@pytest.mark.parametrize("ack", [True, False])
def test_worker_halt_stops_the_worker(srv, client, ack):
    registry = Registry()

    @registry.job("Halt")
    def halt():
        raise WorkerHalt("enough", ack=ack)

    jid = client.perform("Halt", queue="halt")
    worker = make_worker(srv, registry, queues=["halt"])
    started = time.monotonic()
    worker.run()  # returns by itself
    assert time.monotonic() - started < 10
    assert worker.lifecycle.state is State.STOPPED and worker.stop_reason == "halt"
    stats = sets(client)
    assert stats["working"] == 0
    if ack:
        assert stats["retries"] == 0
    else:
        assert take_from_set(srv, client, "retries", jid, "halt")["failure"]["errtype"] == ("faktoryd.WorkerHalt")


# ---------------------------------------------------------------------------------------------- timeouts


@pytest.fixture
def spy_commands(monkeypatch):
    """Every command line sent by any Connection in this process."""
    sent: list[bytes] = []
    original = Connection.request

    def request(self, data):
        sent.append(data)
        return original(self, data)

    monkeypatch.setattr(Connection, "request", request)
    return sent


@pytest.mark.parametrize("kind", ["nap", "spin"])
def test_job_past_its_timeout_is_failed_and_never_acked(srv, client, spy_commands, kind):
    returned = threading.Event()
    registry = Registry()

    @registry.job("Long", timeout=0.5)
    def long_job(seconds):
        try:
            (apps.nap if kind == "nap" else apps.spin)(seconds)
        finally:
            returned.set()

    registry.register(apps.noop, "Next")
    jid = client.perform("Long", 2.0, queue="to")
    started = time.monotonic()
    with running(make_worker(srv, registry, queues=["to"])):
        wait_for(lambda: sets(client)["retries"] == 1, timeout=10)
        assert time.monotonic() - started < 2.0  # FAILed at the deadline, not when the handler returned
        next_jid = client.perform("Next", queue="to")
        wait_for(lambda: idle(client), timeout=10)  # a replacement processor takes the stuck one's place
        assert returned.wait(5)
        wait_for(lambda: any(next_jid.encode() in line for line in spy_commands if line.startswith(b"ACK")))
    assert not [line for line in spy_commands if line.startswith(b"ACK") and jid.encode() in line]
    assert len([line for line in spy_commands if line.startswith(b"FAIL") and jid.encode() in line]) == 1
    failure = take_from_set(srv, client, "retries", jid, "to")["failure"]
    assert failure["errtype"] == "faktoryd.JobTimeout"
    assert failure["message"] == "job exceeded its time limit of 0.5 s"
    assert any("long_job" in line for line in failure["backtrace"])


def test_per_job_timeout_overrides_the_handler(srv, client):
    registry = Registry()
    registry.register(apps.spin, "Spin", timeout=60)
    jid = registry.get("Spin").options(timeout=0.3, client=client, queue="pj").push(5)
    with running(make_worker(srv, registry, queues=["pj"])):
        wait_for(lambda: sets(client)["retries"] == 1, timeout=5)
    assert take_from_set(srv, client, "retries", jid, "pj")["failure"]["errtype"] == "faktoryd.JobTimeout"


# ---------------------------------------------------------------------------------------------- quiet / terminate


def test_server_side_quiet_stops_fetching_within_one_heartbeat(srv, client):
    seen: list[int] = []
    registry = Registry()
    registry.register(seen.append, "Q")
    worker = make_worker(srv, registry, queues=["quiet"], threads=2, heartbeat_interval=0.5)
    with running(worker):
        client.perform("Q", 1, queue="quiet")
        wait_for(lambda: seen == [1])
        beat_state(srv, worker.wid, "quiet")
        wait_for(lambda: worker.lifecycle.state is State.QUIET, timeout=0.5 + 1.0, what="quiet within a beat")
        # A FETCH already on the server when the quiet came returns within the server's block time and may
        # still bring a job; after that, none is sent.
        time.sleep(FETCH_BLOCK + 0.2)
        client.perform("Q", 2, queue="quiet")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert seen == [1] and queue_sizes(client).get("quiet") == 1
            time.sleep(0.05)
        assert worker.lifecycle.state is State.QUIET  # quiet is not an exit


def test_server_side_terminate_fails_running_jobs_within_shutdown_timeout(srv, client):
    registry = Registry()
    registry.register(apps.nap, "Nap")
    registry.register(apps.spin, "Spin")
    naps = client.perform("Nap", 30, queue="term")
    spins = client.perform("Spin", 30, queue="term")
    worker = make_worker(srv, registry, queues=["term"], threads=2, shutdown_timeout=1.0)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (worker.run(), done.set()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: sets(client)["working"] == 2)
        beat_state(srv, worker.wid, "terminate")
        started = time.monotonic()
        assert done.wait(0.5 + 1.0 + 2.0), "worker did not exit"
        assert time.monotonic() - started < 0.5 + 1.0 + 2.0
    finally:
        worker.stop(graceful=False)
        thread.join(10)
    assert worker.stop_reason == "terminate"
    assert sets(client)["working"] == 0
    for jid in (naps, spins):
        failure = take_from_set(srv, client, "retries", jid, "term")["failure"]
        assert failure["errtype"] == "Faktory::Shutdown"


def test_graceful_stop_lets_a_running_job_finish(srv, client, spy_commands):
    registry = Registry()
    registry.register(apps.spin, "Spin")
    jid = client.perform("Spin", 0.5, queue="grace")
    worker = make_worker(srv, registry, queues=["grace"], shutdown_timeout=5)
    with running(worker) as thread:
        wait_for(lambda: sets(client)["working"] == 1)
        worker.stop()
        thread.join(5)
        assert not thread.is_alive()
    assert sets(client) == {**sets(client), "working": 0, "retries": 0}
    assert [line for line in spy_commands if line.startswith(b"ACK") and jid.encode() in line]


def test_run_from_another_thread_and_stop_before_any_job(srv):
    worker = make_worker(srv, Registry(), queues=["none"])
    with running(worker):
        wait_for(lambda: all(p.conn is not None for p in worker.processors))
    assert worker.lifecycle.state is State.STOPPED and worker.stop_reason == "stop"
    with pytest.raises(RuntimeError, match="runs once"):
        worker.run()


# ---------------------------------------------------------------------------------------------- identity


def test_every_connection_says_hello_with_the_same_identity(embedded):
    ready: list[str] = []
    worker = Worker(
        settings_for(embedded),
        handlers=Registry(),
        threads=3,
        labels=["blue", "py"],
        heartbeat_interval=0.5,
        on_ready=lambda w: ready.append(w.wid),
    )
    with running(worker):
        info = wait_for(lambda: (w := embedded.workers().get(worker.wid)) and w["connections"] == 4 and w)
        assert ready == [worker.wid]
    assert info["state"] == "running" and info["labels"] == ["blue", "py"]
    assert info["pid"] == os.getpid() and info["hostname"] == socket.gethostname()
    wait_for(lambda: worker.wid not in embedded.workers(), timeout=2, what="every connection ENDed")


def test_heartbeat_reports_rss_and_state(embedded):
    worker = Worker(settings_for(embedded), handlers=Registry(), heartbeat_interval=0.3)
    with running(worker):
        wait_for(lambda: (embedded.workers().get(worker.wid) or {}).get("rss_kb", 0) > 1000)
        worker.quiet()
        wait_for(lambda: embedded.workers()[worker.wid]["state"] == "quiet", timeout=2)


@pytest.fixture
def fast_embedded(embedded):
    """An embedded server with short FETCH blocks (skipped, like ``embedded``, against a real server)."""
    yield from fast_server()


def test_reaped_worker_registers_again_and_goes_on(fast_embedded):
    embedded = fast_embedded
    seen: list[int] = []
    registry = Registry()
    registry.register(seen.append, "R")
    client = Client(settings_for(embedded))
    worker = Worker(settings_for(embedded), ["reap"], registry, threads=2, heartbeat_interval=1)
    with running(worker):
        wait_for(lambda: (embedded.workers().get(worker.wid) or {}).get("connections") == 3)
        embedded.advance(61)
        embedded.run_tasks()  # the heartbeat reaper drops the worker and closes its connections
        # processors notice at once (their FETCH fails), the heartbeat at its next beat
        wait_for(lambda: (embedded.workers().get(worker.wid) or {}).get("connections") == 3, timeout=5)
        # FETCHes of the reaped connections stay armed on the server until their block time runs out and would
        # strand a job pushed now (PROTOCOL.md 4.5): that is the server's doing, so push after it.
        time.sleep(FETCH_BLOCK + 0.1)
        client.perform("R", 1, queue="reap")
        wait_for(lambda: seen == [1])
    client.close()


def test_unknown_worker_reply_to_beat_means_hello_again(embedded, monkeypatch, caplog):
    worker = Worker(settings_for(embedded), handlers=Registry(), heartbeat_interval=0.2)
    with running(worker):
        wait_for(lambda: worker._heartbeat is not None and worker._heartbeat.conn is not None)
        first = worker._heartbeat.conn
        original = first.request

        def forgotten(data):
            if data.startswith(b"BEAT"):
                raise ServerError("ERR", f"unknown worker {worker.wid}")
            return original(data)

        monkeypatch.setattr(first, "request", forgotten)
        wait_for(lambda: worker._heartbeat.conn not in (None, first), timeout=5)
        beat = embedded.workers()[worker.wid]["last_heartbeat"]
        wait_for(lambda: embedded.workers()[worker.wid]["last_heartbeat"] > beat, timeout=5)
    assert "the server forgot this worker" in caplog.text
