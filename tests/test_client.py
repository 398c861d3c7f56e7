"""The producer Client and the Connection under it, over real sockets."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from rawclient import RawConnection

from faktoryd import AuthenticationError, Client, Connection, FaktoryConnectionError, Job, ServerError, Settings
from faktoryd import protocol as p
from faktoryd.connection import RequestError


def settings_for(server, **options) -> Settings:
    return Settings.from_url(server.url, **options)


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fetch_one(server, queue: str) -> dict | None:
    """FETCH over a raw worker connection, ACK it, and return the job."""
    import json

    with Connection(settings_for(server), wid=uuid.uuid4().hex[:12]) as conn:
        reply = conn.request(p.fetch([queue]))
        if reply is None:
            return None
        job = json.loads(reply)
        conn.request(p.ack(job["jid"]))
        return job


def test_push_and_fetch_round_trip(server) -> None:
    queue = unique()
    with Client(settings_for(server)) as client:
        jid = client.perform("SendEmail", 1, "two", {"three": 3}, queue=queue, custom={"trace": "abc"})
    job = fetch_one(server, queue)
    assert job is not None
    assert (job["jid"], job["jobtype"], job["args"], job["queue"], job["retry"]) == (
        jid,
        "SendEmail",
        [1, "two", {"three": 3}],
        queue,
        25,
    )
    assert job["custom"] == {"trace": "abc"}
    assert job["created_at"].endswith("Z") and job["enqueued_at"].endswith("Z")


def test_push_job_object_and_server_errors(server) -> None:
    with Client(settings_for(server)) as client:
        job = Job("X", [1], queue=unique())
        assert client.push(job) == job.jid
        # client-side validation: nothing reaches the server
        with pytest.raises(ValueError, match="reasonable jid"):
            client.push(Job("X", [], jid="short"))
        # a server-side rejection surfaces as ServerError with the server's text, and the pool stays usable
        with pytest.raises(ServerError, match="unknown command NOPE"):
            client._call(b"NOPE\r\n")
        assert "faktory" in client.info()


def test_scheduled_push_goes_to_the_scheduled_set(server) -> None:
    with Client(settings_for(server)) as client:
        client.perform("Later", queue=unique(), delay=timedelta(hours=1))
        client.perform("Later", queue=unique(), at=datetime.now(timezone.utc) + timedelta(hours=2))
        assert client.info()["faktory"]["sets"]["scheduled"] == 2


def test_push_bulk_reports_rejected_jobs(server) -> None:
    queue = unique()
    with Client(settings_for(server)) as client:
        jobs = [Job("Bulk", [i], queue=queue) for i in range(2500)]
        assert client.push_bulk(jobs) == {}
        assert client.info()["faktory"]["queues"][queue] == 2500
        # a job the client accepts but the server rejects (its own check order) is reported, others go in
        bad = Job("Bulk", [], queue=queue)
        with pytest.raises(ValueError):
            client.push_bulk([Job("Bulk", [1], queue=queue), Job("Bulk", [], jid="bad")])
        assert client.push_bulk([bad]) == {}


def test_info_flush_and_queue_commands(server) -> None:
    queue = unique()
    with Client(settings_for(server)) as client:
        client.perform("Q", queue=queue)
        info = client.info()
        assert info["faktory"]["queues"][queue] == 1
        assert set(info) == {"now", "server_utc_time", "faktory", "server"}
        client.pause(queue)
        with Connection(settings_for(server), wid=unique("w")) as conn:
            started = time.monotonic()
            assert conn.request(p.fetch([queue])) is None
            assert time.monotonic() - started > 1.0
        client.resume(queue)
        latency = client.latency(queue)
        assert set(latency) == {queue} and latency[queue] >= 0
        client.remove(queue)
        assert client.info()["faktory"]["queues"].get(queue, 0) == 0
        client.perform("Q", queue=queue)
        client.flush()
        assert client.info()["faktory"]["queues"].get(queue, 0) == 0
        with pytest.raises(ValueError, match="'\\*'"):
            client.latency("*")
        with pytest.raises(ValueError):
            client.pause()


def test_mutate_requeues_and_kills(server) -> None:
    queue = unique()
    with Client(settings_for(server)) as client:
        jid = client.perform("Failing", "x", queue=queue, retry=5)
        with Connection(settings_for(server), wid=unique("w")) as conn:
            conn.request(p.fetch([queue]))
            conn.request(p.fail(jid, "RuntimeError", "it broke", ["a.py:1"]))
        assert client.info()["faktory"]["sets"]["retries"] == 1
        client.mutate("requeue", "retries", jids=[jid])
        job = fetch_one(server, queue)
        assert job is not None and job["failure"]["errtype"] == "RuntimeError"
        client.perform("Later", queue=queue, delay=3600)
        client.perform("Later Two", queue=queue, delay=3600)
        client.mutate("kill", "scheduled", jobtype="Later Two")  # a space inside a value
        assert client.info()["faktory"]["sets"]["dead"] == 1
        client.mutate("discard", "scheduled", pattern="*Later*")
        assert client.info()["faktory"]["sets"]["scheduled"] == 0
        client.mutate("clear", "dead")
        assert client.info()["faktory"]["sets"]["dead"] == 0
        with pytest.raises(ValueError, match="unknown mutate command"):
            client.mutate("explode", "dead")
        with pytest.raises(ValueError, match="unknown mutate target"):
            client.mutate("clear", "working")


def test_namespace_prefixes_queues(server) -> None:
    ns = unique("ns") + "."
    with Client(settings_for(server, namespace=ns)) as client:
        client.perform("N", queue="mail")
        assert client.info()["faktory"]["queues"][ns + "mail"] == 1
        assert set(client.latency("mail")) == {"mail"}
        client.remove("mail")


def test_client_is_thread_safe(server) -> None:
    queue = unique()
    errors: list[BaseException] = []
    with Client(settings_for(server), pool_size=3) as client:

        def produce() -> None:
            try:
                for i in range(100):
                    client.perform("T", i, queue=queue)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=produce) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert client.info()["faktory"]["queues"][queue] == 800
        assert len(client._idle) <= 3


def test_wrong_or_missing_password(password_server, caplog) -> None:
    good = Settings.from_url(password_server.url)
    with Client(good) as client:
        assert client.info()["server"]["description"] == "Faktory"
    caplog.set_level(logging.DEBUG)
    wrong = good.with_options(password="not-the-password")
    with pytest.raises(AuthenticationError, match="refused the password") as info:
        Client(wrong).info()
    assert "not-the-password" not in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(AuthenticationError, match="requires a password and none is configured"):
        Client(good.with_options(password=None)).info()
    assert "s3cret" not in caplog.text and "not-the-password" not in caplog.text
    assert "s3cret" not in repr(Client(good)) and "s3cret" not in repr(Connection(good))


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FaktoryConnectionError, match=f"cannot connect to Faktory at tcp://127.0.0.1:{port}"):
        Client(Settings(host="127.0.0.1", port=port, connect_timeout=2)).info()


def test_repeatable_command_survives_a_dropped_connection(server) -> None:
    with Client(settings_for(server)) as client:
        client.info()
        (conn,) = client._idle
        conn._sock.shutdown(socket.SHUT_RDWR)  # the socket dies while pooled
        assert "faktory" in client.info()


def test_push_is_not_repeated_after_it_may_have_been_sent(server) -> None:
    """If the connection breaks after the PUSH line left, the client raises instead of pushing twice."""
    queue = unique()
    with Client(settings_for(server)) as client:
        client.info()
        (conn,) = client._idle
        real = conn._read

        def broken_read(*, handshake: bool, request_sent: bool = True):
            conn.abort()
            raise RequestError("lost connection (simulated after send)", request_sent=request_sent)

        conn._read = broken_read  # type: ignore[method-assign]
        with pytest.raises(RequestError, match="was not repeated"):
            client.perform("Once", queue=queue)
        conn._read = real  # type: ignore[method-assign]
        assert client.info()["faktory"]["queues"][queue] == 1


def test_stale_pooled_connection_is_replaced_before_push(embedded) -> None:
    """A connection the server closed while idle is detected before a PUSH is written on it."""
    queue = unique()
    with Client(settings_for(embedded)) as client:
        client.info()
        embedded.begin_outage()
        embedded.end_outage()
        jid = client.perform("AfterRestart", queue=queue)
        assert embedded.queue_sizes()[queue] == 1
        assert [job["jid"] for job in embedded.queue_jobs(queue)] == [jid]


def test_forked_child_does_not_reuse_parents_sockets(server) -> None:
    import os

    with Client(settings_for(server)) as client:
        client.info()
        parent_conn = client._idle[0]
        pid = os.fork()
        if pid == 0:  # child: must open its own connection and leave the parent's alone
            code = 0
            try:
                client.info()
                code = 0 if parent_conn not in client._idle else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert "faktory" in client.info()  # the parent's pooled connection still works


def test_connection_end_is_sent_on_close(server) -> None:
    conn = Connection(settings_for(server)).open()
    assert conn.is_open and "open" in repr(conn)
    conn.close()
    assert not conn.is_open
    conn.close()  # idempotent
    with pytest.raises(RequestError, match="closed"):
        conn.request(p.INFO)


def test_raw_client_sees_same_reply_as_connection(server) -> None:
    """The Connection returns exactly what a raw socket sees (bulk JSON bytes)."""
    with Connection(settings_for(server)) as conn:
        reply = conn.request(p.push({"jid": "a" * 24, "jobtype": "X", "args": [], "retry": 25}))
        assert reply == "OK"
    with RawConnection(server.host, server.port) as raw:
        raw.handshake()
        assert raw.request(b"PUSH {}") == b"-ERR jobs must have a reasonable jid parameter\r\n"
