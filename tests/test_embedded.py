"""The embedded server's own behaviour: controls, timers (via time warp), failure policy, worker registry,
stranded FETCHes, outages, robustness, limits, TLS, the CLI and throughput.

Byte-exact wire conformance lives in test_conformance.py; these tests use the Python-side controls, so
they always run against an EmbeddedServer they start themselves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from rawclient import RawConnection, ServerClosed, bulk_json, connect, dumps

from faktoryd.embedded import EmbeddedServer
from faktoryd.embedded.gojson import Decoder, decode_job
from faktoryd.embedded.gotime import NS_PER_SEC, parse_rfc3339nano
from faktoryd.embedded.store import Store

pytestmark = pytest.mark.embedded_only

OK = b"+OK\r\n"
NIL = b"$-1\r\n"
log = logging.getLogger(__name__)

MakeServer = Callable[..., EmbeddedServer]


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Start EmbeddedServers with test-friendly options; every one is stopped at teardown."""
    servers: list[EmbeddedServer] = []

    def make(**options: Any) -> EmbeddedServer:
        options.setdefault("fetch_timeout", 0.3)
        srv = EmbeddedServer(**options).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def srv(make_server: MakeServer) -> EmbeddedServer:
    return make_server()


@pytest.fixture
def dial(srv: EmbeddedServer) -> Iterator[Callable[..., RawConnection]]:
    """Open handshaken connections to ``srv``; all closed at teardown."""
    opened: list[RawConnection] = []

    def _dial(wid: str | None = None, server: EmbeddedServer | None = None) -> RawConnection:
        target = server or srv
        conn = connect(target.host, target.port, wid=wid)
        opened.append(conn)
        return conn

    yield _dial
    for conn in opened:
        conn.close()


def jid() -> str:
    return uuid.uuid4().hex[:24]


def push(conn: RawConnection, **job: Any) -> str:
    job.setdefault("jid", jid())
    job.setdefault("jobtype", "TestJob")
    job.setdefault("args", [])
    reply = conn.request("PUSH " + dumps(job))
    assert reply == OK, reply
    return job["jid"]


def fetch(conn: RawConnection, *queues: str) -> dict[str, Any] | None:
    reply = conn.request("FETCH " + " ".join(queues or ("default",)))
    return None if reply == NIL else bulk_json(reply)


def seconds(timestamp: str) -> float:
    return parse_rfc3339nano(timestamp) / NS_PER_SEC


def command_count(server: EmbeddedServer) -> int:
    return server.info()["server"]["command_count"]


# ---------------------------------------------------------------------------------------------- controls


def test_lifecycle_url_and_idempotent_stop() -> None:
    server = EmbeddedServer(password="p@ss word/")
    with pytest.raises(RuntimeError):
        server.queue_sizes()
    server.start()
    try:
        assert server.port > 0
        assert server.url == f"tcp://:p%40ss%20word%2F@127.0.0.1:{server.port}"
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert EmbeddedServer(port=server.port).url == f"tcp://127.0.0.1:{server.port}"


def test_controls_show_queues_jobs_workers_reservations_and_info(srv, dial) -> None:
    worker = dial(wid="w-controls")
    first = push(worker, queue="q1", args=[1, "two"])
    second = push(worker, queue="q1")
    push(worker, queue="q2")
    assert srv.queue_sizes() == {"q1": 2, "q2": 1}
    assert [j["jid"] for j in srv.queue_jobs("q1")] == [first, second]
    assert srv.queue_jobs("nope") == []

    job = fetch(worker, "q1")
    assert job is not None and job["jid"] == first
    [res] = srv.reservations()
    assert res["jid"] == first and res["wid"] == "w-controls" and res["job"]["args"] == [1, "two"]
    assert seconds(res["expires_at"]) - seconds(res["reserved_at"]) == pytest.approx(1800)

    workers = srv.workers()
    assert set(workers) == {"w-controls"}
    entry = workers["w-controls"]
    assert entry["state"] == "running" and entry["connections"] == 1
    assert entry["labels"] == ["python", "conformance"] and entry["hostname"] == "conformance-test"
    assert abs(entry["last_heartbeat"] - time.time()) < 60 and entry["started_at"] <= entry["last_heartbeat"]

    info = srv.info()
    assert info["faktory"]["queues"] == {"q1": 1, "q2": 1}
    assert info["faktory"]["sets"]["working"] == 1
    assert info["server"]["connections"] == srv.connection_count == 1

    srv.set_worker_state("all", "quiet")
    assert srv.workers()["w-controls"]["state"] == "quiet"
    assert worker.request(b'BEAT {"wid":"w-controls"}') == b'$17\r\n{"state":"quiet"}\r\n'
    with pytest.raises(ValueError):
        srv.set_worker_state("w-controls", "running")
    with pytest.raises(ValueError):
        srv.set_jobs("working")


def test_controls_work_from_many_threads(srv, dial) -> None:
    conn = dial()
    push(conn)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(50):
                assert srv.queue_sizes() == {"default": 1}
                srv.info()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors


# ---------------------------------------------------------------------------------------------- failures


def test_fail_records_failure_fields_and_retries_with_backoff(srv, dial) -> None:
    conn = dial()
    job_id = push(conn, retry=3, args=["x"])
    fetch(conn)
    before = time.time()
    long_message = "é" * 600  # 1200 bytes: cut at 1000 bytes
    payload = {"jid": job_id, "errtype": "  Boom  ", "message": long_message, "backtrace": [f"l{i}" for i in range(60)]}
    assert conn.request("FAIL " + dumps(payload)) == OK

    [retry] = srv.set_jobs("retries")
    failure = retry["failure"]
    assert failure["retry_count"] == 0 and failure["remaining"] == 3
    assert failure["errtype"] == "Boom" and failure["message"] == "é" * 500
    assert failure["backtrace"] == [f"l{i}" for i in range(50)]
    delay = seconds(failure["next_at"]) - seconds(failure["failed_at"])
    assert 15 <= delay <= 44
    assert seconds(failure["failed_at"]) >= before - 1
    assert srv.queue_sizes() == {"default": 0}

    # Not due yet: nothing moves. Then warp past next_at and run the scanners.
    srv.run_tasks()
    assert len(srv.set_jobs("retries")) == 1
    srv.advance(45)
    srv.run_tasks()
    assert srv.set_jobs("retries") == []
    [queued] = srv.queue_jobs("default")
    assert seconds(queued["enqueued_at"]) >= seconds(failure["next_at"])

    fetch(conn)
    before = time.time() + 45  # the server's clock runs 45 s ahead now
    assert conn.request(f'FAIL {{"jid":"{job_id}"}}') == OK
    [retry] = srv.set_jobs("retries")
    second = retry["failure"]
    assert second["retry_count"] == 1 and second["remaining"] == 2
    assert second["failed_at"] == failure["failed_at"]
    assert second["errtype"] == "unknown" and second["message"] == "unknown" and "backtrace" not in second
    assert 16 <= seconds(second["next_at"]) - before <= 74 + 5

    stats = srv.info()["faktory"]
    assert stats["total_failures"] == 2 and stats["total_processed"] == 2
    assert stats["tasks"]["Retries"]["enqueued"] == 1 and stats["tasks"]["Retries"]["cycles"] == 2


def test_backoff_formula_over_many_counts() -> None:
    now = [1_700_000_000 * NS_PER_SEC]
    store = Store(lambda: now[0], rng=random.Random(7))
    decoder = Decoder()
    job, problem, _ = decode_job(decoder, dumps({"jid": "a" * 12, "jobtype": "T", "args": [], "retry": 30}))
    assert problem is None
    store.push(job)
    for count in range(12):
        assert store.fetch(["default"], "w") is not None
        store.fail(job.jid, "E", "m", [])
        [entry] = store.retries.entries()
        delay = (entry.score - now[0]) // NS_PER_SEC
        assert count**4 + 15 <= delay <= count**4 + 15 + 29 * (count + 1)
        assert entry.job.failure is not None and entry.job.failure.retry_count == count
        now[0] = entry.score
        store.run_task("Retries")


def test_retry_zero_discards_and_negative_goes_to_dead(srv, dial) -> None:
    conn = dial()
    gone = push(conn, retry=0)
    fetch(conn)
    assert conn.request(f'FAIL {{"jid":"{gone}","message":"x"}}') == OK
    morgue = push(conn, retry=-1)
    fetch(conn)
    assert conn.request(f'FAIL {{"jid":"{morgue}","message":"x"}}') == OK

    assert srv.set_jobs("retries") == []
    [dead] = srv.set_jobs("dead")
    assert dead["jid"] == morgue
    assert dead["failure"]["retry_count"] == 0 and dead["failure"]["remaining"] == -1
    assert srv.info()["faktory"]["total_failures"] == 2

    # Dead jobs expire after 180 days.
    srv.advance(179 * 86400)
    srv.run_tasks()
    assert len(srv.set_jobs("dead")) == 1
    srv.advance(2 * 86400)
    srv.run_tasks()
    assert srv.set_jobs("dead") == []
    assert srv.info()["faktory"]["tasks"]["Dead"]["enqueued"] == 1


def test_exhausted_retries_go_to_dead(srv, dial) -> None:
    conn = dial()
    job_id = push(conn, retry=1)
    for _ in range(2):
        srv.advance(100)
        srv.run_tasks()
        assert fetch(conn) is not None
        assert conn.request(f'FAIL {{"jid":"{job_id}"}}') == OK
    [dead] = srv.set_jobs("dead")
    assert dead["failure"]["retry_count"] == 1 and dead["failure"]["remaining"] == 0
    assert srv.set_jobs("retries") == []


def test_reservation_expiry_is_a_failure(srv, dial) -> None:
    conn = dial()  # a producer: a worker connection would be reaped for not beating during the warp
    job_id = push(conn, reserve_for=10)  # clamped to 60 s at fetch
    fetch(conn)
    [res] = srv.reservations()
    assert seconds(res["expires_at"]) - seconds(res["reserved_at"]) == pytest.approx(60)

    srv.advance(59)
    srv.run_tasks()
    assert len(srv.reservations()) == 1
    srv.advance(2)
    srv.run_tasks()
    assert srv.reservations() == []
    [retry] = srv.set_jobs("retries")
    assert retry["jid"] == job_id
    assert retry["failure"]["errtype"] == "ReservationExpired"
    assert retry["failure"]["message"] == "Faktory job reservation expired"
    assert "backtrace" not in retry["failure"]
    info = srv.info()["faktory"]
    assert info["tasks"]["Busy"] == {"reaped": 1, "size": 0}
    assert info["total_failures"] == 1

    assert conn.request(f'ACK {{"jid":"{job_id}"}}') == OK  # late ACK: a no-op
    assert conn.request(f'FAIL {{"jid":"{job_id}"}}') == f"-ERR Job not found {job_id}\r\n".encode()


def test_reservation_clamps(srv, dial) -> None:
    conn = dial()
    for reserve_for in (0, 59, 600, 86400):
        push(conn, reserve_for=reserve_for)
        fetch(conn)
    spans = sorted(round(seconds(r["expires_at"]) - seconds(r["reserved_at"])) for r in srv.reservations())
    assert spans == [60, 600, 1800, 86400]


# ---------------------------------------------------------------------------------------------- scheduling


def test_scheduled_job_moves_to_its_queue_when_due(srv, dial) -> None:
    conn = dial()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30))
    job_id = push(conn, queue="later", at=at)
    [scheduled] = srv.set_jobs("scheduled")
    assert scheduled["jid"] == job_id and scheduled["at"] == at and "enqueued_at" not in scheduled
    assert srv.queue_sizes() == {}

    srv.run_tasks()
    assert len(srv.set_jobs("scheduled")) == 1
    srv.advance(31)
    srv.run_tasks()
    assert srv.set_jobs("scheduled") == []
    [queued] = srv.queue_jobs("later")
    assert queued["at"] == at and "enqueued_at" in queued
    assert srv.info()["faktory"]["tasks"]["Scheduled"]["enqueued"] == 1


def test_scanners_run_on_their_own_timers(make_server, dial) -> None:
    server = make_server(scheduled_interval=0.05, retries_interval=0.05)
    conn = dial(server=server)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    push(conn, at=at)
    server.advance(3601)
    wait_for(lambda: server.queue_sizes().get("default") == 1, timeout=5, what="scheduler tick")


def test_scheduled_job_with_bad_queue_is_lost_by_the_scheduler(srv, dial, caplog) -> None:
    conn = dial()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30))
    push(conn, queue="bad queue!", at=at)  # not validated until it is due
    srv.advance(31)
    with caplog.at_level(logging.ERROR, logger="faktoryd.embedded"):
        srv.run_tasks()
    assert srv.set_jobs("scheduled") == [] and srv.queue_sizes() == {}
    assert "is lost" in caplog.text


# ---------------------------------------------------------------------------------------------- workers


def test_worker_reaping_closes_its_connections(make_server) -> None:
    server = make_server(worker_ttl=60)
    with (
        connect(server.host, server.port, wid="w-silent") as a,
        connect(server.host, server.port, wid="w-silent") as b,
        connect(server.host, server.port, wid="w-alive") as alive,
    ):
        server.advance(40)
        assert alive.request(b'BEAT {"wid":"w-alive"}') == OK
        server.advance(25)
        server.run_tasks()
        assert a.closed(timeout=2) and b.closed(timeout=2)
        assert a.pending == b"" and b.pending == b""  # closed without a message
        assert set(server.workers()) == {"w-alive"}
        assert alive.request("INFO").startswith(b"$")
        assert server.info()["faktory"]["tasks"]["Workers"] == {"reaped": 1, "size": 1}


def test_worker_entry_deleted_when_last_connection_closes(srv, dial) -> None:
    first = dial(wid="w-two")
    second = dial(wid="w-two")
    producer = dial()
    assert srv.workers()["w-two"]["connections"] == 2
    srv.set_worker_state("w-two", "quiet")

    first.send(b"END\r\n")
    assert first.closed(timeout=2)
    wait_for(lambda: srv.workers()["w-two"]["connections"] == 1, timeout=5)
    assert producer.request(b'BEAT {"wid":"w-two"}') == b'$17\r\n{"state":"quiet"}\r\n'

    second.close()
    wait_for(lambda: "w-two" not in srv.workers(), timeout=5, what="worker entry removal")
    assert producer.request(b'BEAT {"wid":"w-two"}') == b"-ERR unknown worker w-two\r\n"

    # A new HELLO starts afresh: running, the quiet state is forgotten.
    dial(wid="w-two")
    assert srv.workers()["w-two"]["state"] == "running"


def test_quiet_and_terminated_workers_get_no_jobs(srv, dial) -> None:
    worker = dial(wid="w-quiet")
    push(worker)
    srv.set_worker_state("w-quiet", "quiet")
    started = time.monotonic()
    assert worker.request("FETCH default") == NIL
    assert time.monotonic() - started >= 0.25  # the block time, though a job is waiting
    assert srv.queue_sizes() == {"default": 1}

    # Forward-only: a worker cannot report itself running again.
    assert worker.request(b'BEAT {"wid":"w-quiet","current_state":"running"}') == b'$17\r\n{"state":"quiet"}\r\n'
    srv.set_worker_state("w-quiet", "terminate")
    assert worker.request(b'BEAT {"wid":"w-quiet","rss_kb":5}') == b'$21\r\n{"state":"terminate"}\r\n'
    assert srv.workers()["w-quiet"]["rss_kb"] == 5
    assert worker.request("FETCH default") == NIL

    # Producers and other workers still get the job.
    assert fetch(dial()) is not None


# ---------------------------------------------------------------------------------------------- FETCH


def test_blocked_fetch_is_woken_by_a_push(make_server, dial) -> None:
    server = make_server(fetch_timeout=5.0)
    worker = dial(wid="w-wait", server=server)
    producer = dial(server=server)
    base = command_count(server)
    worker.send(b"FETCH a b\r\n")
    wait_for(lambda: command_count(server) == base + 1, timeout=5, what="FETCH dispatched")
    started = time.monotonic()
    job_id = push(producer, queue="b")
    reply = worker.read_reply(timeout=5)
    assert bulk_json(reply)["jid"] == job_id
    assert time.monotonic() - started < 2


def test_abandoned_fetch_strands_the_next_job(make_server, dial) -> None:
    server = make_server(fetch_timeout=0.5)
    producer = dial(server=server)
    worker = connect(server.host, server.port, wid="w-gone")
    base = command_count(server)
    worker.send(b"FETCH default\r\n")
    wait_for(lambda: command_count(server) == base + 1, timeout=5, what="FETCH dispatched")
    worker.close()  # the FETCH is still blocked on the server

    job_id = push(producer)
    [res] = server.reservations()
    assert res["jid"] == job_id and res["wid"] == "w-gone"
    assert server.queue_sizes() == {"default": 0}
    assert fetch(producer) is None  # nobody else can have it

    # The dead connection goes away once its FETCH has returned; the job stays reserved until expiry.
    wait_for(lambda: server.connection_count == 1, timeout=5, what="abandoned connection cleanup")
    assert "w-gone" not in server.workers()
    assert [r["jid"] for r in server.reservations()] == [job_id]
    server.advance(1801)
    server.run_tasks()
    [retry] = server.set_jobs("retries")
    assert retry["jid"] == job_id and retry["failure"]["errtype"] == "ReservationExpired"


def test_fetch_skips_paused_queues_and_waits_when_all_are_paused(srv, dial) -> None:
    conn = dial()
    paused_job = push(conn, queue="p")
    other = push(conn, queue="o")
    assert conn.request("QUEUE PAUSE p") == OK
    assert fetch(conn, "p", "o")["jid"] == other
    started = time.monotonic()
    assert fetch(conn, "p") is None
    assert time.monotonic() - started >= 0.25
    assert conn.request("QUEUE RESUME *") == OK
    assert fetch(conn, "p")["jid"] == paused_job


def test_flush_keeps_what_the_real_server_keeps_in_memory(srv, dial) -> None:
    conn = dial(wid="w-flush")
    acked = push(conn, queue="keep")
    failed = push(conn, queue="keep")
    push(conn, queue="paused")
    assert conn.request("QUEUE PAUSE paused") == OK
    fetch(conn, "keep")
    fetch(conn, "keep")
    assert conn.request("FLUSH") == OK

    info = srv.info()["faktory"]
    assert info["queues"] == {"keep": 0, "paused": 0} and info["sets"]["working"] == 0
    assert info["tasks"]["Busy"]["size"] == 2  # the reservation map survives
    assert set(srv.workers()) == {"w-flush"}
    assert conn.request(f'ACK {{"jid":"{acked}"}}') == OK
    assert conn.request(f'FAIL {{"jid":"{failed}"}}') == OK
    info = srv.info()["faktory"]
    assert info["total_processed"] == 1 and info["total_failures"] == 0 and info["sets"]["retries"] == 0
    push(conn, queue="paused")
    assert fetch(conn, "paused") is None  # still paused


# ---------------------------------------------------------------------------------------------- decoding


def test_job_json_goes_through_go_decode_and_encode(srv, dial) -> None:
    conn = dial()
    job_id = jid()
    line = (
        f'PUSH {{"JID":"{job_id}","JobType":"T","args":[1.0,1e20,12345678901234567890,0.5,"<a&b>",{{"b":1,"a":2}}],'
        '"custom":{},"priority":5,"bid":"x","queue":"q"}'
    )
    assert conn.request(line) == OK
    reply = conn.request("FETCH q")
    payload = reply.split(b"\r\n")[1]
    expected_args = b'"args":[1,100000000000000000000,12345678901234567000,0.5,"\\u003ca\\u0026b\\u003e",{"a":2,"b":1}]'
    assert expected_args in payload
    job = json.loads(payload)
    assert job["jid"] == job_id and job["jobtype"] == "T" and job["retry"] == 25
    assert "custom" not in job and "priority" not in job and "bid" not in job

    assert conn.request('PUSH {"jid":"abcdefghij","jobtype":"T","args":[],"retry":"3"}') == (
        b"-ERR invalid JSON: json: cannot unmarshal string into Go struct field Job.retry of type int\r\n"
    )
    assert conn.request('PUSH {"jid":"abcdefghij","jobtype":"T","args":[],"custom":[]}') == (
        b"-ERR invalid JSON: json: cannot unmarshal array into Go struct field Job.custom of type "
        b"map[string]interface {}\r\n"
    )
    assert conn.request('PUSH {"jid":"abcdefghij","jobtype":"T","args":[],"failure":{"retry_count":1.5}}') == (
        b"-ERR invalid JSON: json: cannot unmarshal number 1.5 into Go struct field Failure.failure.retry_count "
        b"of type int\r\n"
    )


def test_retry_default_bug_is_opt_in(make_server) -> None:
    for bug, expected in ((False, 25), (True, 7)):
        server = make_server(retry_default_bug=bug)
        with connect(server.host, server.port) as conn:
            push(conn, retry=7, queue="r")
            push(conn, queue="r")
            assert [j["retry"] for j in server.queue_jobs("r")] == [7, expected]


def test_invalid_utf8_and_surrogates_become_replacement_characters(srv, dial) -> None:
    conn = dial()
    job_id = jid()
    assert conn.request(b'PUSH {"jid":"%s","jobtype":"T\xff","args":["\\ud800x"]}' % job_id.encode()) == OK
    [job] = srv.queue_jobs("default")
    assert job["jobtype"] == "T\ufffd" and job["args"] == ["\ufffdx"]
    fetch(conn)
    # A message cut inside a multi-byte character keeps the broken bytes as \ufffd escapes.
    assert conn.request(b'FAIL {"jid":"%s","message":"%s"}' % (job_id.encode(), ("a" + "é" * 600).encode())) == OK
    [retry] = srv.set_jobs("retries")
    assert retry["failure"]["message"] == "a" + "é" * 499 + "\ufffd"


# ---------------------------------------------------------------------------------------------- robustness


def test_ten_megabyte_push_round_trips(srv, dial) -> None:
    conn = dial()
    big = "x" * (10 * 1024 * 1024)
    job_id = push(conn, args=[big, "<end>"])
    reply = conn.request("FETCH default", timeout=30)
    job = bulk_json(reply)
    assert job["jid"] == job_id and job["args"] == [big, "<end>"]
    assert conn.request(f'ACK {{"jid":"{job_id}"}}') == OK


def test_garbage_half_lines_and_disconnects_do_not_hurt_others(srv, dial) -> None:
    healthy = dial()
    rng = random.Random(1234)

    # Garbage instead of HELLO: silently closed.
    with RawConnection(srv.host, srv.port) as junk:
        junk.read_greeting()
        junk.send(bytes(rng.randrange(256) for _ in range(2000)) + b"\n")
        assert junk.closed(timeout=2)

    # Garbage after the handshake: every line is an unknown command (or an error), the connection survives.
    noisy = dial()
    for _ in range(50):
        line = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"")
        reply = noisy.request(line + b"\r\n")
        assert reply.startswith((b"-ERR", b"+OK", b"$")), reply
    for bad in (b"PUSH {\xff\xfe", b"ACK \x00\x01", b"FAIL [", b'BEAT {"wid":', b"MUTATE {", b"PUSHB [1,"):
        assert noisy.request(bad + b"\r\n").startswith(b"-ERR"), bad
    assert noisy.request("INFO").startswith(b"$")

    # Half lines and disconnects in the middle of a command.
    for partial in (b'PUSH {"jid":"abcdefghijk","jobtype":"T","args":[', b"FETCH def", b"HEL"):
        with contextlib.closing(socket.create_connection((srv.host, srv.port), timeout=5)) as sock:
            sock.recv(100)
            if partial != b"HEL":
                sock.sendall(b'HELLO {"v":2}\r\n')
                sock.recv(100)
            sock.sendall(partial)
    with contextlib.closing(socket.create_connection((srv.host, srv.port), timeout=5)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.recv(100)
        sock.sendall(b'HELLO {"v":2}\r\nPUSH {"jid":"abcdefghijkl","jobtype":"T","args":[1,2,3')

    job_id = push(healthy)
    assert fetch(healthy)["jid"] == job_id
    wait_for(lambda: srv.connection_count == 2, timeout=5, what="dead connections cleaned up")
    assert srv.queue_sizes() == {"default": 0}


def test_handshake_deadline_and_bad_hello(make_server) -> None:
    server = make_server(handshake_timeout=0.3)
    with RawConnection(server.host, server.port) as silent:
        assert silent.read_greeting() == b'+HI {"v":2}\r\n'
        started = time.monotonic()
        assert silent.closed(timeout=3)
        assert 0.2 <= time.monotonic() - started < 2.5 and silent.pending == b""
    with RawConnection(server.host, server.port) as wrong:
        wrong.read_greeting()
        wrong.send(b'HELLO {"pid":"1"}\r\n')
        assert wrong.closed(timeout=2) and wrong.pending == b""
    with RawConnection(server.host, server.port) as slow:
        slow.read_greeting()
        slow.send(b'HELLO {"v":2')  # incomplete line: the deadline still applies
        assert slow.closed(timeout=3) and slow.pending == b""
    assert server.connection_count == 0


def test_password_handshake(make_server) -> None:
    server = make_server(password="s3cret")
    with RawConnection(server.host, server.port) as conn:
        hi = conn.greeting_json()
        assert list(hi) == ["v", "i", "s"] and 4000 <= hi["i"] <= 8095
        assert 1 <= len(hi["s"]) <= 16 and hi["s"] == hi["s"].lower() and int(hi["s"], 16) >= 0
        conn.handshake(password="s3cret")
    with RawConnection(server.host, server.port) as conn:
        assert conn.request(conn.hello_line(password="wrong")) == b"-ERR Invalid password\r\n"
        assert conn.closed(timeout=2)
    with RawConnection(server.host, server.port) as conn:
        conn.handshake(password="s3cret", version=1)  # v < 2: a single SHA-256


def test_connection_cap(make_server) -> None:
    server = make_server(max_connections=2)
    with connect(server.host, server.port) as a, connect(server.host, server.port):
        with RawConnection(server.host, server.port) as third:
            third.read_greeting()
            third.send(third.hello_line())
            assert third.read_reply() == OK
            assert third.read_reply() == b"-ERR too many connections: 3\r\n"
            assert third.closed(timeout=2)
        a.close()
        wait_for(lambda: server.connection_count == 1, timeout=5)
        with connect(server.host, server.port) as again:
            assert again.request("INFO").startswith(b"$")


def test_shutdown_in_progress_reply(make_server) -> None:
    server = make_server()
    conn = connect(server.host, server.port)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 10.0})
    try:
        stopper.start()

        def refused() -> bool:
            try:
                socket.create_connection((server.host, server.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refused, timeout=5, what="listener closed")
        assert conn.request("INFO") == b"-ERR shutdown in progress\r\n"
        assert conn.closed(timeout=2)
        stopper.join(5)
        assert not stopper.is_alive()  # stop() returned as soon as its last connection closed
    finally:
        conn.close()
        stopper.join(15)


def test_outage_drops_connections_refuses_new_ones_and_keeps_state(srv, dial) -> None:
    worker = dial(wid="w-outage")
    job_id = push(worker, queue="kept")
    reserved = push(worker, queue="kept")
    assert fetch(worker, "kept")["jid"] == job_id
    port = srv.port

    srv.begin_outage()
    with pytest.raises((ServerClosed, ConnectionError)):
        worker.request("INFO")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((srv.host, port), timeout=2).close()
    wait_for(lambda: srv.connection_count == 0, timeout=5)
    assert srv.queue_sizes() == {"kept": 1}
    assert [r["jid"] for r in srv.reservations()] == [job_id]

    srv.end_outage()
    assert srv.port == port
    again = dial()
    assert fetch(again, "kept")["jid"] == reserved
    assert again.request(f'ACK {{"jid":"{job_id}"}}') == OK
    assert srv.info()["faktory"]["total_processed"] == 1


def test_tls(make_server, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.load_cert_chain(cert, key)
    server = make_server(ssl_context=server_ctx)
    assert server.url == f"tcp+tls://127.0.0.1:{server.port}"

    client_ctx = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection((server.host, server.port), timeout=5) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        reader = tls.makefile("rb")
        assert reader.readline() == b'+HI {"v":2}\r\n'
        tls.sendall(b'HELLO {"v":2}\r\nPUSH {"jid":"abcdefghijkl","jobtype":"T","args":[]}\r\nFETCH default\r\n')
        assert reader.readline() == OK and reader.readline() == OK
        assert reader.readline().startswith(b"$") and b'"jid":"abcdefghijkl"' in reader.readline()
    # A plain-TCP client on the TLS port gets nothing usable and is closed.
    with socket.create_connection((server.host, server.port), timeout=5) as plain:
        plain.sendall(b'HELLO {"v":2}\r\n')
        try:
            answer = plain.recv(100)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"+")


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("  cli-secret\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "faktoryd.embedded", "--port", "0", "--password-file", str(password_file),
         "--fetch-timeout", "0.5"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 20
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "the server exited before listening"
        url = line.split("listening on ", 1)[1].strip()
        assert url.startswith("tcp://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        with connect("127.0.0.1", port, password="cli-secret") as conn:
            started = time.monotonic()
            assert conn.request("FETCH default") == NIL
            assert 0.4 <= time.monotonic() - started < 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


# ---------------------------------------------------------------------------------------------- speed


def test_throughput_is_logged(srv, dial) -> None:
    conn = dial(wid="w-bench")
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    count = 2000
    jids = [f"bench{i:019d}" for i in range(count)]
    started = time.perf_counter()
    for job_id in jids:
        assert conn.request(b'PUSH {"jid":"%s","jobtype":"Bench","args":[1,"x"]}' % job_id.encode()) == OK
    pushed = time.perf_counter()
    for job_id in jids:
        assert conn.request(b"FETCH default")[:2] == b"$1"  # a job of 1xx bytes
        assert conn.request(b'ACK {"jid":"%s"}' % job_id.encode()) == OK
    done = time.perf_counter()
    push_rate, cycle_rate = count / (pushed - started), count / (done - pushed)
    log.warning("embedded server: %.0f PUSH/s, %.0f FETCH+ACK cycles/s (one client)", push_rate, cycle_rate)
    print(f"\nembedded server: {push_rate:.0f} PUSH/s, {cycle_rate:.0f} FETCH+ACK cycles/s (one client)")
    assert srv.info()["faktory"]["total_processed"] == count
