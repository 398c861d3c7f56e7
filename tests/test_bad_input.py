"""Bad input, one test per row: what a worker and the daemon do with servers, payloads and files that are wrong.

| input                                           | expected                                               |
|-------------------------------------------------|--------------------------------------------------------|
| garbage and half lines from the server          | the worker drops that connection, reconnects, recovers |
| a server that never answers                     | connect/read timeouts fire; the worker goes on, stops  |
| a wrong password                                | one clear error, no retry storm (worker and daemon)    |
| TLS to a plain port, plain to a TLS port        | the daemon says which scheme to use, retries paced     |
| args that do not fit the handler's signature    | FAILed with TypeError naming the handler               |
| a handler returning a non-serializable value    | ACKed, the value ignored                               |
| a 10 MB job                                     | run and ACKed by a worker                              |
| non-UTF-8 bytes in a job                        | run with U+FFFD (what Faktory stores), never a crash   |
| a config file: not TOML, a directory, unreadable| ``faktoryd`` exits 2 with one line on stderr           |

Client-level garbage, silence and TLS mismatches are in test_client_faults.py; these are the worker's and the
daemon's side of the same faults. Every wait has a deadline; servers, proxies, workers and daemons are closed
by context managers.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import EXECUTABLE, Daemon, write_config
from fakeserver import CLOSE, GREETING, FakeServer, Pause, Reply, bulk
from faultproxy import FaultProxy
from helpers import wait_for
from worker_apps.support import fast_server, running, settings_for, take_from_set

from faktoryd import AuthenticationError, Client, Job, Registry, Settings, Worker
from faktoryd.embedded import EmbeddedServer
from faktoryd.worker.backoff import Backoff
from faktoryd.worker.watchdog import Watchdog

pytestmark = pytest.mark.timeout(60)

READ_TIMEOUT = 3.0
CONNECT_TIMEOUT = 1.0
SLACK = 1.5
"""Seconds a timeout may overrun on a loaded machine before the test calls it a hang."""


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fast(url: str, **options: Any) -> Settings:
    return Settings.from_url(url, read_timeout=READ_TIMEOUT, connect_timeout=CONNECT_TIMEOUT, **options)


@pytest.fixture
def srv() -> Iterator[Any]:
    yield from fast_server()


@pytest.fixture
def client(srv) -> Iterator[Client]:
    with Client(settings_for(srv, read_timeout=30)) as c:
        yield c


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.started


# ---------------------------------------------------------------------------------------------- a fake server


class JobScript:
    """A FakeServer script that plays a Faktory server for one worker, misbehaving on demand.

    ``fetch`` / ``beat``: the reply to every FETCH / BEAT while set (None: behave). A behaving FETCH hands out
    the queued payloads one by one, then ``$-1`` after a short pause (as the real server blocks). ACK and FAIL
    lines are recorded.
    """

    def __init__(self, *, fetch: Reply = None, beat: Reply = None) -> None:
        self.fetch = fetch
        self.beat = beat
        self.payloads: deque[bytes] = deque()
        self.acks: list[str] = []
        self.fails: list[dict[str, Any]] = []
        self.verbs: list[bytes] = []
        self._lock = threading.Lock()

    def offer(self, payload: bytes) -> None:
        with self._lock:
            self.payloads.append(payload)

    def __call__(self, line: bytes) -> Reply:
        verb = line.split(b" ", 1)[0]
        with self._lock:
            self.verbs.append(verb)
        if verb == b"FETCH":
            if self.fetch is not None:
                return self.fetch
            with self._lock:
                if self.payloads:
                    return bulk(self.payloads.popleft())
            return (Pause(0.2), b"$-1\r\n")
        if verb == b"BEAT":
            return self.beat if self.beat is not None else b"+OK\r\n"
        if verb == b"ACK":
            with self._lock:
                self.acks.append(json.loads(line[4:])["jid"])
        elif verb == b"FAIL":
            with self._lock:
                self.fails.append(json.loads(line[5:]))
        elif verb == b"END":
            return CLOSE
        return b"+OK\r\n"


def job_payload(jobtype: str = "Ok", args: list[Any] | None = None, jid: str | None = None) -> bytes:
    return json.dumps(
        {"jid": jid or uuid.uuid4().hex, "jobtype": jobtype, "args": args or [], "queue": "default", "retry": 25}
    ).encode()


def fake_worker(fake: FakeServer, handlers: dict[str, Callable[..., Any]] | None = None, **options: Any) -> Worker:
    options.setdefault("threads", 1)
    options.setdefault("heartbeat_interval", 0.5)
    options.setdefault("shutdown_timeout", 1)
    return Worker(fast(fake.url), handlers=handlers or {"Ok": lambda *args: None}, **options)


def worker_hellos(fake: FakeServer) -> int:
    return sum(1 for line in fake.hellos if b'"wid"' in line)


# ---------------------------------------------------------------------------------------------- garbage and half lines

GARBAGE = {
    "garbage line": b"garbage\r\n",
    "binary": b"\x00\x01\x02\xff",
    "bare LF": b"+OK\n",
    "bad bulk length": b"$abc\r\n",
    "invalid UTF-8 line": b"+\xff\xfe\r\n",
    "half line then close": (b"+O", CLOSE),
    "half bulk then close": (b'$40\r\n{"jid":', CLOSE),
    "simple string for FETCH": b"+OK\r\n",
    "error for FETCH": b"-ERR internal error\r\n",
}


@pytest.mark.parametrize("reply", GARBAGE.values(), ids=GARBAGE.keys())
def test_worker_survives_fetch_garbage_and_recovers(reply: Reply) -> None:
    """Garbage where a FETCH reply belongs: the worker drops that connection, reconnects, keeps running, and
    processes jobs as soon as the server behaves."""
    script = JobScript(fetch=reply)
    with FakeServer(script) as fake:
        with running(fake_worker(fake)) as thread:
            wait_for(lambda: worker_hellos(fake) >= 3, timeout=10, what="the worker reconnecting after garbage")
            assert thread.is_alive()
            script.fetch = None
            payload = job_payload()
            script.offer(payload)
            jid = json.loads(payload)["jid"]
            wait_for(lambda: jid in script.acks, timeout=10, what="the job ACKed once the server behaves")
        assert script.fails == []


def test_worker_facing_garbage_reconnects_at_a_bounded_rate() -> None:
    script = JobScript(fetch=b"garbage\r\n")
    with FakeServer(script) as fake, running(fake_worker(fake, threads=2)):
        wait_for(lambda: worker_hellos(fake) >= 4, timeout=10, what="the worker reconnecting after garbage")
        with Stopwatch() as window:
            before = fake.accepted
            time.sleep(2.0)  # the observation window: how often it reconnects meanwhile
        rate = (fake.accepted - before) / window.elapsed
    # each garbled FETCH costs a reconnect after >= 0.25 s: at most 4/s per processor, 8/s for two
    assert rate <= 10, f"{rate:.1f} connections/s by 2 processors to a server that answers garbage"


@pytest.mark.parametrize("reply", [b"garbage\r\n", (b"$5\r\n{", CLOSE), bulk(b"{not json"), b"$-1\r\n"])
def test_worker_survives_beat_garbage(reply: Reply) -> None:
    """Garbage (or a well-framed nonsense) on the heartbeat connection: the heartbeat reconnects or logs it;
    the processors go on working."""
    script = JobScript(beat=reply)
    with FakeServer(script) as fake:
        worker = fake_worker(fake, threads=2)
        with running(worker) as thread:
            wait_for(lambda: script.verbs.count(b"BEAT") >= 2, timeout=10, what="BEATs answered with garbage")
            payload = job_payload()
            script.offer(payload)
            wait_for(lambda: json.loads(payload)["jid"] in script.acks, timeout=10, what="a job ACKed meanwhile")
            assert thread.is_alive()
            assert worker.lifecycle.state.value == "running"


def test_worker_survives_a_garbage_greeting_and_recovers() -> None:
    with FakeServer(JobScript(), greeting=b"SSH-2.0-OpenSSH_9.6\r\n") as fake:
        script = fake.script
        assert isinstance(script, JobScript)
        worker = fake_worker(fake, threads=2)
        with running(worker) as thread:
            wait_for(lambda: fake.accepted >= 4, timeout=10, what="connection attempts")
            assert fake.lines == [], "nothing is sent to a peer that did not greet like Faktory"
            assert thread.is_alive()
            fake.greeting = GREETING
            payload = job_payload()
            script.offer(payload)
            wait_for(lambda: json.loads(payload)["jid"] in script.acks, timeout=15, what="recovery")


# ---------------------------------------------------------------------------------------------- silence


def test_worker_fetch_never_answered_fires_the_read_timeout_and_stops_in_time() -> None:
    script = JobScript(fetch=None)
    script.fetch = Pause(3600)  # read, never answered (cut short when the fake server closes)
    with FakeServer(script) as fake:
        worker = fake_worker(fake)
        with running(worker):
            wait_for(lambda: worker_hellos(fake) >= 2, timeout=5, what="the first FETCH connection")
            first = time.monotonic()
            count = worker_hellos(fake)
            wait_for(lambda: worker_hellos(fake) > count, timeout=READ_TIMEOUT + SLACK + 1, what="a reconnect")
            waited = time.monotonic() - first
            assert READ_TIMEOUT * 0.8 <= waited <= READ_TIMEOUT + SLACK + 1
            with Stopwatch() as stopping:
                worker.stop()
                wait_for(lambda: worker.lifecycle.state.value == "stopped", timeout=READ_TIMEOUT + 2 * SLACK + 1)
            # the FETCH in flight is never abandoned: it gets its read timeout, then one backoff pause (<= 0.5 s)
            assert stopping.elapsed <= READ_TIMEOUT + 0.5 + 2 * SLACK


def test_worker_against_a_silent_server_times_out_and_keeps_trying() -> None:
    with FakeServer(JobScript(), greeting=None) as fake:
        worker = fake_worker(fake, threads=2)
        with running(worker) as thread:
            wait_for(lambda: fake.accepted >= 6, timeout=10, what="repeated connection attempts")
            assert fake.lines == []
            assert thread.is_alive()
            with Stopwatch() as stopping:
                worker.stop()
                wait_for(lambda: worker.lifecycle.state.value == "stopped", timeout=CONNECT_TIMEOUT + 4 + SLACK)
            # bounded; prompt (no backoff pause after the attempt in progress) is the next test
            assert stopping.elapsed <= CONNECT_TIMEOUT + 4 + SLACK


def test_worker_stops_after_the_connection_attempt_in_progress(monkeypatch) -> None:
    """Stopped while every connection attempt hangs on a silent server: run() returns once the attempt in
    progress times out, without a backoff pause after it. (The processors' backoff starts at 4 s here, so a
    pause cannot go unnoticed.)"""
    monkeypatch.setattr("faktoryd.worker.processor.Backoff", lambda: Backoff(initial=4.0))
    with FakeServer(JobScript(), greeting=None) as fake:
        worker = fake_worker(fake, threads=1)
        with running(worker):
            wait_for(lambda: fake.accepted >= 2, timeout=5, what="the heartbeat and the processor connecting")
            with Stopwatch() as stopping:
                worker.stop()
                wait_for(lambda: worker.lifecycle.state.value == "stopped", timeout=CONNECT_TIMEOUT + 6)
    assert stopping.elapsed < CONNECT_TIMEOUT + 0.8


def test_worker_stops_promptly_while_the_server_is_unreachable(monkeypatch) -> None:
    """Nothing runs and nothing can be reported: stop() must not wait for a reconnect backoff to expire.

    The watchdog's stop is slowed down a little, so that the heartbeat thread always wins its race with the
    stopping thread (it otherwise does most of the time, depending on thread scheduling)."""
    original = Watchdog.stop

    def slow_stop(self: Watchdog) -> None:
        time.sleep(0.3)
        original(self)

    monkeypatch.setattr(Watchdog, "stop", slow_stop)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed: every connect is refused
    worker = Worker(fast(f"tcp://127.0.0.1:{port}"), handlers={"Ok": print}, threads=2, shutdown_timeout=1)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (worker.run(), done.set()), name="unreachable-worker", daemon=True)
    thread.start()
    try:
        time.sleep(2.5)  # let the reconnect backoff grow to seconds, as in any outage
        with Stopwatch() as stopping:
            worker.stop()
            done.wait(1.5)
        assert done.is_set(), "run() still running 1.5 s after stop() with nothing to finish"
    finally:
        worker.stop(graceful=False)
        thread.join(35)
    assert stopping.elapsed < 1.5


def test_worker_beat_never_answered_does_not_stop_the_processors() -> None:
    script = JobScript(beat=Pause(3600))
    with FakeServer(script) as fake:
        worker = fake_worker(fake, threads=2)
        with running(worker):
            wait_for(lambda: script.verbs.count(b"BEAT") >= 1, timeout=5, what="a BEAT")
            payload = job_payload()
            script.offer(payload)
            wait_for(lambda: json.loads(payload)["jid"] in script.acks, timeout=5, what="the job ACKed")
            wait_for(lambda: script.verbs.count(b"BEAT") >= 2, timeout=READ_TIMEOUT + SLACK + 2, what="a BEAT again")


# ---------------------------------------------------------------------------------------------- wrong password


def wrong_password_run(server: Any, threads: int) -> tuple[list[BaseException], float, FaultProxy]:
    with FaultProxy(server.host, server.port) as proxy:
        worker = Worker(fast(proxy.url, password="not-it"), handlers={"Ok": print}, threads=threads)
        errors: list[BaseException] = []
        with Stopwatch() as took:
            try:
                worker.run()
            except AuthenticationError as exc:
                errors.append(exc)
    return errors, took.elapsed, proxy


def test_worker_wrong_password_is_one_clear_error_without_retry_storm(password_server, caplog) -> None:
    threads = 3
    errors, elapsed, proxy = wrong_password_run(password_server, threads)
    assert len(errors) == 1, "run() raises the AuthenticationError"
    message = str(errors[0])
    assert "refused the password" in message and "not-it" not in message and "s3cret" not in message
    assert elapsed < CONNECT_TIMEOUT + SLACK, "it stops at once: waiting will not fix a password"
    assert proxy.accepted <= 2 * (threads + 1), f"{proxy.accepted} connections for {threads + 1} connection roles"
    assert set(proxy.requests) == {b"HELLO"}
    assert "not-it" not in caplog.text


def test_worker_wrong_password_is_not_taken_for_an_outage(password_server, caplog) -> None:
    threads = 1
    errors, _, proxy = wrong_password_run(password_server, threads)
    assert len(errors) == 1
    assert "reconnecting" not in caplog.text and "lost the Faktory server" not in caplog.text
    assert proxy.accepted <= threads + 1, f"{proxy.accepted} connections: one per connection role at most"


def test_daemon_wrong_password_is_clear_and_paced(tmp_path: Path, password_server) -> None:
    """Each worker process stops at the refused password and the supervisor replaces it with crash backoff:
    the server sees few connections, and the log says what is wrong without the password."""
    with FaultProxy(password_server.host, password_server.port) as proxy:
        url = f"tcp://:wrong-pw@127.0.0.1:{proxy.port}"
        config = write_config(tmp_path / "faktory.toml", url, processes=2, threads=2, restart_backoff_max=4)
        with Daemon(config) as daemon:
            daemon.wait_log("refused the password", timeout=20)
            time.sleep(5.0)  # the observation window: how hard does it knock?
            attempts = proxy.accepted
            log = daemon.log
            daemon.signal(15)
            assert daemon.wait(10) == 0
    spawns = log.count("started worker")
    # at most one attempt per connection role of each process (2 processors, the heartbeat): a refused password
    # stops the process instead of being retried like an outage
    assert attempts <= spawns * 3, f"{attempts} connections for {spawns} worker processes"
    assert spawns <= 2 + 6, f"{spawns} worker processes started in ~5 s: the crash backoff does not pace them"
    assert "wrong-pw" not in log
    assert f"tcp://:***@127.0.0.1:{proxy.port}" in log


def test_daemon_wrong_password_logs_no_traceback(tmp_path: Path, password_server) -> None:
    config = write_config(tmp_path / "faktory.toml", f"tcp://:wrong-pw@{password_server.host}:{password_server.port}")
    with Daemon(config) as daemon:
        daemon.wait_log("refused the password", timeout=20)
        daemon.wait_log("unexpectedly", timeout=10)
        log = daemon.log
    assert "Traceback" not in log, log


# ---------------------------------------------------------------------------------------------- TLS mismatch


def observe_daemon(config: Path, expected: str, window: float = 4.0) -> str:
    """Run the daemon until ``expected`` is logged and for ``window`` seconds more; returns its log. (It is
    killed then: a graceful stop is slow while it cannot connect, see test_worker_stops_promptly_...)"""
    with Daemon(config) as daemon:
        daemon.wait_log(expected, timeout=20)
        time.sleep(window)  # the observation window
        assert daemon.proc.poll() is None, "the daemon keeps running (and retrying)"
        return daemon.log


def test_daemon_tls_to_a_plain_port_says_use_tcp(tmp_path: Path, embedded) -> None:
    with FaultProxy(embedded.host, embedded.port) as proxy:
        config = write_config(tmp_path / "faktory.toml", f"tcp+tls://127.0.0.1:{proxy.port}", processes=1, threads=2)
        log = observe_daemon(config, "TLS handshake with")
        attempts = proxy.accepted
    assert "is the server using TLS? Use tcp:// for a plain server" in log
    assert attempts <= 3 * 5, f"{attempts} TLS attempts in ~4 s by 3 connections: no backoff?"
    assert log.count("lost the Faktory server") == 1, "one warning for the outage, not one per attempt"


def test_daemon_plain_to_a_tls_port_says_use_tcp_tls(tmp_path: Path, certificate) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    with (
        EmbeddedServer(ssl_context=context, handshake_timeout=0.5) as tls_server,
        FaultProxy(tls_server.host, tls_server.port) as proxy,
    ):
        config = write_config(tmp_path / "faktory.toml", f"tcp://127.0.0.1:{proxy.port}", processes=1, threads=2)
        log = observe_daemon(config, "lost the Faktory server")
        attempts = proxy.accepted
    assert "tcp+tls://" in log, "the error suggests the TLS scheme"
    assert attempts <= 3 * 5, f"{attempts} plain attempts in ~4 s by 3 connections: no backoff?"


# ---------------------------------------------------------------------------------------------- payloads


def registry_of(**handlers: Callable[..., Any]) -> Registry:
    registry = Registry()
    for jobtype, fn in handlers.items():
        registry.register(fn, jobtype)
    return registry


def run_until(srv, registry: Registry, queue: str, condition: Callable[[], Any], **options: Any) -> None:
    worker = Worker(settings_for(srv), [queue], registry, heartbeat_interval=0.5, shutdown_timeout=2, **options)
    with running(worker):
        wait_for(condition, timeout=20, what="the jobs handled")


def retried(client: Client) -> int:
    return client.info()["faktory"]["sets"]["retries"]


def test_args_that_do_not_fit_the_handler_are_failed_with_a_clear_message(srv, client) -> None:
    calls: list[tuple[int, int]] = []

    def two(a: int, b: int) -> None:
        calls.append((a, b))

    async def two_async(a: int, b: int) -> None:
        calls.append((a, b))

    queue = unique()
    too_many = client.perform("Two", 1, 2, 3, queue=queue)
    too_few = client.perform("Two", 1, queue=queue)
    async_many = client.perform("TwoAsync", 1, 2, 3, queue=queue)
    fits = client.perform("Two", 1, 2, queue=queue)
    run_until(srv, registry_of(Two=two, TwoAsync=two_async), queue, lambda: retried(client) == 3 and calls)
    assert calls == [(1, 2)] and fits
    failures = {
        jid: take_from_set(srv, client, "retries", jid, queue)["failure"] for jid in (too_many, too_few, async_many)
    }
    assert failures[too_many]["errtype"] == "TypeError"
    assert failures[too_many]["message"].endswith(".two() takes 2 positional arguments but 3 were given")
    assert failures[too_few]["message"].endswith(".two() missing 1 required positional argument: 'b'")
    assert failures[async_many]["errtype"] == "TypeError"
    assert "two_async() takes 2 positional arguments but 3 were given" in failures[async_many]["message"]


def test_unserializable_return_values_are_acked_and_ignored(srv, client) -> None:
    values = [object(), {1, 2}, (x for x in ()), float("nan"), lambda: None, threading.Lock()]

    async def async_value(index: int) -> object:
        return values[index]

    queue = unique()
    handlers = registry_of(Value=lambda index: values[index], AsyncValue=async_value)
    for index in range(len(values)):
        client.perform("Value", index, queue=queue)
        client.perform("AsyncValue", index, queue=queue)
    before = client.info()["faktory"]["total_processed"]

    def done() -> bool:
        info = client.info()["faktory"]
        return info["total_processed"] - before == 2 * len(values) and not info["queues"].get(queue)

    run_until(srv, handlers, queue, done)
    info = client.info()["faktory"]
    assert info["total_failures"] == 0 and info["sets"]["retries"] == 0 and info["sets"]["working"] == 0


def test_ten_megabyte_job_through_a_worker(srv, client) -> None:
    size = 10 * 1024 * 1024
    big = (bytes(range(32, 127)) * (size // 95 + 1))[:size].decode()
    digest = hashlib.sha256(big.encode()).hexdigest()
    seen: list[tuple[int, str]] = []
    queue = unique()
    jid = client.push(Job("Big", [big, "\u2603"], queue=queue))
    with Stopwatch() as took:
        run_until(
            srv,
            registry_of(Big=lambda text, snow: seen.append((len(text), hashlib.sha256(text.encode()).hexdigest()))),
            queue,
            lambda: seen and client.info()["faktory"]["sets"]["working"] == 0,
        )
    assert seen == [(size, digest)]
    assert took.elapsed < 15
    info = client.info()["faktory"]
    assert info["total_failures"] == 0 and not info["queues"].get(queue) and jid


def raw_push(server: Any, line: bytes) -> bytes:
    """PUSH a hand-made line (bytes the client would never send) over a raw socket; returns the reply line."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"+HI")
        sock.sendall(b'HELLO {"v":2}\r\n')
        assert reader.readline() == b"+OK\r\n"
        sock.sendall(line)
        reply = reader.readline()
        sock.sendall(b"END\r\n")
        return reply


def test_non_utf8_bytes_in_a_job_run_with_replacement_characters(srv, client) -> None:
    """Faktory stores invalid UTF-8 as U+FFFD (Go's JSON): the worker gets valid text and runs the job."""
    seen: list[Any] = []
    queue = unique()
    jid = uuid.uuid4().hex
    line = (
        b'PUSH {"jid":"%s","jobtype":"Bytes","queue":"%s","retry":25,'
        b'"args":["caf\xe9","\xff\xfe",{"k\xc3":"\xed\xa0\x80"}],"custom":{"note":"\xc0\xaf"}}\r\n'
    ) % (jid.encode(), queue.encode())
    assert raw_push(srv, line) == b"+OK\r\n"
    run_until(srv, registry_of(Bytes=lambda *args: seen.append(args)), queue, lambda: seen)
    assert seen == [("caf\ufffd", "\ufffd\ufffd", {"k\ufffd": "\ufffd\ufffd\ufffd"})]
    wait_for(lambda: client.info()["faktory"]["sets"]["working"] == 0, timeout=5, what="the ACK")
    assert client.info()["faktory"]["total_failures"] == 0


def test_non_utf8_payload_from_a_nonconforming_server_is_failed_by_jid() -> None:
    """A server that is not Go (no U+FFFD replacement) hands out raw invalid UTF-8: the worker must not crash,
    and should FAIL the job by its (readable) jid so that it does not sit reserved."""
    script = JobScript()
    jid = uuid.uuid4().hex
    script.offer(b'{"jid":"%s","jobtype":"Ok","args":["\xff\xfe"],"queue":"default","retry":25}' % jid.encode())
    after = job_payload()
    script.offer(after)
    with FakeServer(script) as fake:
        with running(fake_worker(fake)) as thread:
            wait_for(lambda: json.loads(after)["jid"] in script.acks, timeout=10, what="the next job ACKed")
            assert thread.is_alive()
        assert [fail["jid"] for fail in script.fails] == [jid]
        assert script.fails[0]["errtype"] == "faktoryd.InvalidJobPayload"


def test_non_utf8_payload_from_a_nonconforming_server_does_not_stop_the_worker() -> None:
    script = JobScript()
    script.offer(b'{"jid":"%s","jobtype":"Ok","args":["\xff"]}' % uuid.uuid4().hex.encode())
    script.offer(b"\xff\xfe not json at all")
    after = job_payload()
    script.offer(after)
    with FakeServer(script) as fake, running(fake_worker(fake)) as thread:
        wait_for(lambda: json.loads(after)["jid"] in script.acks, timeout=10, what="the next job ACKed")
        assert thread.is_alive()


# ---------------------------------------------------------------------------------------------- config files


def run_cli(*args: str, preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, timeout=30, check=False, preexec_fn=preexec_fn
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], path: Path, expected: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and expected in lines[0], lines[0]
    assert result.stdout == ""


NOT_TOML = {
    "binary": b"\x00\x01\x02\xff\xfe",
    "not UTF-8": b"[worker]\nprocesses = 2\nname = '\xe9t\xe9'\n",
    "JSON": b'{"worker": {"processes": 2}}\n',
    "YAML": b"worker:\n  processes: 2\napp:\n  modules: [basic]\n",
    "INI": b"[worker]\nprocesses: 2\n",
    "half a table": b"[worker]\nprocesses = 2\n[app\n",
}


@pytest.mark.parametrize("content", NOT_TOML.values(), ids=NOT_TOML.keys())
def test_config_file_that_is_not_toml_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "faktory.toml"
    path.write_bytes(content)
    result = run_cli("--config", str(path))
    expected = "not UTF-8" if content in (NOT_TOML["binary"], NOT_TOML["not UTF-8"]) else "not valid TOML"
    assert_one_line_exit_2(result, path, expected)


@pytest.mark.parametrize("command", [(), ("check",), ("status",)], ids=["run", "check", "status"])
def test_config_file_that_is_a_directory_exits_2_with_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    path = tmp_path / "faktory.toml"
    path.mkdir()
    result = run_cli(*command, "--config", str(path))
    if command == ("status",):
        assert result.returncode != 0 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
        return
    assert_one_line_exit_2(result, path, "is a directory")


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _without_file_read_override() -> None:
    """In the child before exec: drop root's power to read any file (its capabilities after exec come from the
    bounding set), so a mode 000 file is unreadable to it as to anybody."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_config_file_that_is_unreadable_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "faktory.toml"
    path.write_text("[app]\nmodules = ['basic']\n")
    path.chmod(0)
    preexec = _without_file_read_override if os.geteuid() == 0 else None
    try:
        result = run_cli("--config", str(path), preexec_fn=preexec)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop the file-read capabilities of root here: {exc}")
    finally:
        path.chmod(0o600)
    assert_one_line_exit_2(result, path, "cannot read it: permission denied")
