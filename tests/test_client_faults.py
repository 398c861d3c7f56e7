"""The client under network faults and bad input: it fails fast with a clear, typed error, never hangs, never
repeats a command that may have run, and works again as soon as the path or the server is healthy.

Misbehaving servers are played by :class:`fakeserver.FakeServer`; network faults are injected by
:class:`faultproxy.FaultProxy` in front of the ``server`` fixture (embedded, or the real server at FAKTORY_URL,
so these tests run against both). Every wait polls with a deadline; every socket and thread is closed by a
context manager.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeserver import CLOSE, GREETING, FakeServer, Reply, behaving, bulk, trickle
from faultproxy import FaultProxy
from helpers import wait_for

from faktoryd import (
    AuthenticationError,
    Client,
    Connection,
    FaktoryConnectionError,
    FaktoryError,
    Job,
    ProtocolError,
    ServerError,
    Settings,
)
from faktoryd import protocol as p
from faktoryd.connection import RequestError

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leaks")]

READ_TIMEOUT = 3.0
CONNECT_TIMEOUT = 1.0
SLACK = 1.5
"""Seconds a timeout may overrun on a loaded machine before the test calls it a hang."""


def fast(url: str, **options: object) -> Settings:
    """Short timeouts, so a fault that is not detected shows up as a slow test, not a hung one."""
    return Settings.from_url(url, read_timeout=READ_TIMEOUT, connect_timeout=CONNECT_TIMEOUT, **options)


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def queue_size(server: object, queue: str) -> int:
    """The queue's size on the server, asked over a direct (unproxied) connection."""
    with Client(Settings.from_url(server.url)) as client:
        return int(client.info()["faktory"]["queues"].get(queue, 0))


def fetch_job(server: object, queue: str) -> dict:
    """FETCH one job over a direct worker connection and ACK it."""
    with Connection(Settings.from_url(server.url, read_timeout=30), wid=unique("w")) as conn:
        reply = conn.request(p.fetch([queue]))
        assert isinstance(reply, bytes), f"no job in {queue}"
        job = json.loads(reply)
        conn.request(p.ack(job["jid"]))
        return job


class Timer:
    """Elapsed seconds of a with-block, to assert that a failure came from a timeout and not a hang."""

    def __enter__(self) -> Timer:
        self.started = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.started


@pytest.fixture
def proxied(server, proxy) -> Iterator[Client]:
    """A client whose every connection goes through ``proxy``, with short timeouts."""
    with Client(fast(proxy.url_for(server.url))) as client:
        yield client


# ---------------------------------------------------------------------------------------------- bad greetings

BAD_GREETINGS = {
    "garbage": b"garbage\r\n",
    "binary": b"\x00\xff\xfe\xfd\r\n",
    "ssh server": b"SSH-2.0-OpenSSH_9.6\r\n",
    "http server": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "not HI": b"+HELLO\r\n",
    "HI without JSON": b"+HI there\r\n",
    "HI without v": b'+HI {"x":2}\r\n',
    "error line": b"-ERR go away\r\n",
    "bulk": b"$2\r\nHI\r\n",
    "bare LF": b'+HI {"v":2}\n',
    "invalid UTF-8": b'+HI {"v":2,"s":"\xff\xfe"}\r\n',
}


@pytest.mark.parametrize("greeting", BAD_GREETINGS.values(), ids=BAD_GREETINGS.keys())
def test_bad_greeting_is_a_protocol_error_then_recovers(greeting: bytes) -> None:
    with FakeServer(greeting=greeting) as fake, Client(fast(fake.url)) as client:
        expected = re.escape(f"{fake.url} did not greet like a Faktory server")
        with Timer() as timer, pytest.raises(ProtocolError, match=expected):
            client.info()
        assert timer.elapsed < CONNECT_TIMEOUT, "garbage is recognised as soon as it arrives"
        assert fake.accepted == 1, "a protocol error is not retried"
        fake.greeting = GREETING
        assert client.info()["server"]["description"] == "Faktory"
        assert fake.accepted == 2


def test_half_greeting_then_close_is_a_connection_error() -> None:
    with FakeServer(greeting=b'+HI {"v"', close_after_greeting=True) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(FaktoryConnectionError, match="closed the connection during the handshake") as info:
            client.info()
        assert fake.url in str(info.value)
        assert not isinstance(info.value, ProtocolError)
        fake.close_after_greeting = False
        fake.greeting = GREETING
        assert client.info()["server"]["description"] == "Faktory"


@pytest.mark.parametrize("greeting", [None, b'+HI {"v":2'], ids=["no greeting", "half greeting"])
def test_silent_server_times_out_in_the_connect_timeout(greeting: bytes | None) -> None:
    with FakeServer(greeting=greeting) as fake, Client(fast(fake.url)) as client:
        with Timer() as timer, pytest.raises(FaktoryConnectionError) as info:
            client.info()
        assert CONNECT_TIMEOUT * 0.9 <= timer.elapsed < CONNECT_TIMEOUT + SLACK
        message = str(info.value)
        assert fake.url in message and f"within {CONNECT_TIMEOUT:g} s" in message
        assert fake.accepted == 1


def test_trickled_greeting_is_bounded_by_the_connect_timeout() -> None:
    with FakeServer(greeting=trickle(GREETING, 0.12)) as fake, Client(fast(fake.url)) as client:
        with Timer() as timer, pytest.raises(FaktoryConnectionError, match=f"within {CONNECT_TIMEOUT:g} s"):
            client.info()
        assert timer.elapsed < CONNECT_TIMEOUT + SLACK


# ---------------------------------------------------------------------------------------------- bad replies

BAD_FRAMES = {
    "garbage line": b"garbage\r\n",
    "binary": b"\x00\x01\x02",
    "bare LF": b"+OK\n",
    "bad bulk length": b"$abc\r\n",
    "negative bulk length": b"$-5\r\n",
    "huge bulk length": b"$999999999999\r\n",
    "bulk not followed by CRLF": b"$5\r\nhelloXX",
    "bad integer": b":x\r\n",
    "invalid UTF-8 simple string": b"+\xff\xfe\r\n",
    "invalid UTF-8 error line": b"-ERR \xc3\x28\r\n",
}


@pytest.mark.parametrize("reply", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_badly_framed_reply_is_a_protocol_error_then_recovers(reply: bytes) -> None:
    """Bytes that are not a reply leave the stream out of step: error, connection dropped, next call reconnects."""
    with FakeServer([reply]) as fake, Client(fast(fake.url)) as client:
        with Timer() as timer, pytest.raises(ProtocolError):
            client.info()
        assert timer.elapsed < CONNECT_TIMEOUT
        assert fake.accepted == 1, "a protocol error is not retried"
        assert client._idle == [], "the out-of-step connection is not pooled"
        fake.script = behaving
        assert client.info()["server"]["description"] == "Faktory"
        assert fake.accepted == 2


BAD_CONTENTS = {
    "simple string for INFO": b"+OK\r\n",
    "null for INFO": b"$-1\r\n",
    "bulk that is not JSON": bulk(b"{not json"),
    "invalid UTF-8 bulk": bulk(b'{"x":"\xff\xfe"}'),
}


@pytest.mark.parametrize("reply", BAD_CONTENTS.values(), ids=BAD_CONTENTS.keys())
def test_well_framed_but_wrong_reply_is_a_protocol_error(reply: bytes) -> None:
    """A complete reply of the wrong kind is a ProtocolError too; the stream is still in step, so the
    connection may stay pooled and serve the next call."""
    with FakeServer([reply]) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(ProtocolError, match="JSON"):
            client.info()
        fake.script = behaving
        assert client.info()["server"]["description"] == "Faktory"
        assert fake.accepted == 1, "the connection stays in step, so it is kept"


def test_invalid_utf8_in_a_push_reply_is_a_protocol_error() -> None:
    """A simple-string reply that is not UTF-8 is rejected even where the value is not otherwise used."""
    with (
        FakeServer([b"+\xc0\xaf\r\n"]) as fake,
        Client(fast(fake.url)) as client,
        pytest.raises(ProtocolError, match="not UTF-8"),
    ):
        client.perform("X", queue=unique())


def test_overload_error_after_hello_is_a_server_error_then_recovers() -> None:
    """Faktory over its connection cap sends ``-ERR too many connections`` right after ``+OK`` and closes."""
    overloaded = (b"+OK\r\n-ERR too many connections: 2001\r\n", CLOSE)
    with FakeServer(hello_reply=overloaded) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(ServerError, match="too many connections"):
            client.info()
        fake.hello_reply = b"+OK\r\n"
        assert client.info()["server"]["description"] == "Faktory"
        assert fake.accepted == 2, "the closed connection was not reused"


def test_unasked_reply_buffered_with_the_previous_one_is_not_taken_as_the_next_reply() -> None:
    """The server answers INFO with an extra ``+OK`` in the same write, then never answers anything on that
    connection. The pooled connection is out of step; a PUSH must not be reported as done on the strength
    of the stray ``+OK``."""
    with FakeServer() as fake, Client(fast(fake.url)) as client:

        def script(line: bytes) -> Reply:
            if line.startswith(b"INFO"):
                info = behaving(line)
                assert isinstance(info, bytes)
                return info + b"+OK\r\n"  # one write: both replies arrive in one recv()
            return b"+OK\r\n" if fake.accepted > 1 else None

        fake.script = script
        client.info()
        client.perform("Once", queue="default")
        assert fake.accepted == 2, "the PUSH went to a fresh connection"
        assert [line.split(b" ")[0] for line in fake.lines].count(b"PUSH") == 1


def test_half_reply_then_close_is_a_connection_error_and_push_is_not_repeated() -> None:
    with FakeServer([(b"+O", CLOSE)]) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(RequestError, match="was not repeated") as info:
            client.perform("Once", queue="default")
        assert info.value.request_sent and not isinstance(info.value, ProtocolError)
        assert fake.url in str(info.value)
        assert [line.split(b" ")[0] for line in fake.lines] == [b"HELLO", b"PUSH"]


def test_half_reply_then_close_retries_info_once() -> None:
    with FakeServer([(b"$10\r\n{", CLOSE)]) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(FaktoryConnectionError, match="lost connection"):
            client.info()
        assert fake.accepted == 2, "one transparent retry, no more"
        fake.script = behaving
        assert client.info()["server"]["description"] == "Faktory"


def test_reply_never_sent_fires_the_read_timeout() -> None:
    with FakeServer([None]) as fake, Client(fast(fake.url)) as client:
        with Timer() as timer, pytest.raises(RequestError) as info:
            client.perform("Slow", queue="default")
        assert READ_TIMEOUT * 0.9 <= timer.elapsed < READ_TIMEOUT + SLACK
        message = str(info.value)
        assert f"no reply from {fake.url} within {READ_TIMEOUT:g} s" in message
        assert "was not repeated" in message and info.value.request_sent
        assert fake.accepted == 1


def test_trickled_reply_is_bounded_by_the_read_timeout() -> None:
    with FakeServer([trickle(b"+OK\r\n", 0.8)]) as fake, Client(fast(fake.url)) as client:
        with Timer() as timer, pytest.raises(RequestError, match=f"within {READ_TIMEOUT:g} s"):
            client.perform("Slow", queue="default")
        assert timer.elapsed < READ_TIMEOUT + SLACK


def test_info_times_out_once_then_retries_on_a_fresh_connection() -> None:
    """A repeatable command whose reply stops halfway (the parser holds a partial bulk) times out, and is
    retried once, transparently, on a new connection."""
    with FakeServer() as fake, Client(fast(fake.url)) as client:
        fake.script = lambda line: b'$40\r\n{"now":' if fake.accepted == 1 else behaving(line)
        with Timer() as timer:
            assert client.info()["server"]["description"] == "Faktory"
        assert READ_TIMEOUT * 0.9 <= timer.elapsed < READ_TIMEOUT + SLACK
        assert fake.accepted == 2
        assert [line.split(b" ")[0] for line in fake.lines] == [b"HELLO", b"INFO", b"HELLO", b"INFO"]


# ---------------------------------------------------------------------------------------------- passwords

PASSWORD_GREETING = b'+HI {"v":2,"i":4000,"s":"5f3a9c"}\r\n'


def test_wrong_password_is_one_clear_error_per_call() -> None:
    with FakeServer(greeting=PASSWORD_GREETING, hello_reply=(b"-ERR Invalid password\r\n", CLOSE)) as fake:
        settings = fast(f"tcp://:wrong-pw@127.0.0.1:{fake.port}")
        with Client(settings) as client:
            for call in range(1, 4):
                with pytest.raises(AuthenticationError, match="refused the password") as info:
                    client.info()
                assert fake.accepted == call, "no retry storm: one connection attempt per call"
        message = str(info.value)
        assert "wrong-pw" not in message and "wrong-pw" not in repr(info.value)
        assert f"tcp://:***@127.0.0.1:{fake.port}" in message
        hello = json.loads(fake.hellos[0][len(b"HELLO ") :])
        assert hello["pwdhash"] == p.password_hash("wrong-pw", "5f3a9c", 4000)
        assert not any(line.startswith(b"INFO") for line in fake.lines)


def test_wrong_password_against_the_embedded_server(password_server) -> None:
    with FaultProxy(password_server.host, password_server.port) as proxy:
        wrong = fast(proxy.url, password="not-it")
        with Client(wrong) as client:
            for call in range(1, 3):
                with pytest.raises(AuthenticationError) as info:
                    client.info()
                assert proxy.accepted == call
        assert "not-it" not in str(info.value) and "s3cret" not in str(info.value)
        assert proxy.requests == [b"HELLO", b"HELLO"]
        with Client(fast(proxy.url, password="s3cret")) as client:
            assert client.info()["server"]["description"] == "Faktory"


def test_connection_errors_never_show_the_password() -> None:
    secret = "pa55-w0rd"
    with FaultProxy("127.0.0.1", 9) as proxy:  # refusing: the target is never reached
        proxy.refuse(None)
        failures: list[FaktoryError] = []
        for greeting in (b"garbage\r\n", (b"+HI", CLOSE)):
            with FakeServer(greeting=greeting) as fake, pytest.raises(FaktoryError) as info:
                Client(fast(f"tcp://:{secret}@127.0.0.1:{fake.port}")).info()
            failures.append(info.value)
        with pytest.raises(FaktoryConnectionError) as info:
            Client(fast(f"tcp://:{secret}@127.0.0.1:{proxy.port}")).info()
        failures.append(info.value)
    for failure in failures:
        assert ":***@127.0.0.1:" in str(failure) and secret not in str(failure) and secret not in repr(failure)


def test_missing_password_is_refused_before_sending_anything() -> None:
    with FakeServer(greeting=PASSWORD_GREETING) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(AuthenticationError, match="requires a password and none is configured"):
            client.info()
        assert fake.lines == [] and fake.accepted == 1


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_fake(certificate: tuple[Path, Path]) -> Iterator[FakeServer]:
    """A TLS-from-byte-0 server like Faktory with certificates (2 s handshake deadline)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(*map(str, certificate))
    with FakeServer(ssl_context=context) as fake:
        yield fake


def test_tls_server_works_with_a_tls_client(tls_fake, certificate) -> None:
    """The control case: the TLS fake is right, so the failures below are about the mismatch."""
    with Client(fast(tls_fake.url, tls_ca_file=str(certificate[0]))) as client:
        assert client.info()["server"]["description"] == "Faktory"
    with Client(fast(tls_fake.url)) as client, pytest.raises(FaktoryConnectionError, match="certificate"):
        client.info()


def test_tls_client_to_silent_plain_port_times_out() -> None:
    with FakeServer(lambda line: None, greeting=None, handshake=False) as fake:  # reads, never writes
        settings = fast(fake.url, tls=True, tls_verify=False)
        with Client(settings) as client, Timer() as timer, pytest.raises(FaktoryConnectionError) as info:
            client.info()
    assert "TLS handshake" in str(info.value) and settings.url in str(info.value)
    assert CONNECT_TIMEOUT * 0.9 <= timer.elapsed < CONNECT_TIMEOUT + SLACK


def test_tls_client_to_plain_port_is_a_clear_error(server) -> None:
    settings = fast(server.url, tls=True, tls_verify=False)
    with Client(settings) as client, Timer() as timer, pytest.raises(FaktoryConnectionError) as info:
        client.info()
    message = str(info.value)
    assert "TLS handshake" in message and "tcp://" in message and settings.url in message
    assert timer.elapsed < CONNECT_TIMEOUT + SLACK


def test_plain_client_to_tls_port_fails_within_the_connect_timeout(tls_fake) -> None:
    plain = fast(f"tcp://127.0.0.1:{tls_fake.port}")
    with Client(plain) as client, Timer() as timer, pytest.raises(FaktoryConnectionError) as info:
        client.info()
    assert timer.elapsed < CONNECT_TIMEOUT + SLACK
    message = str(info.value)
    assert f"no greeting from {plain.url} within {CONNECT_TIMEOUT:g} s" in message and "tcp+tls://" in message


def test_plain_client_to_tls_port_that_hangs_up_hints_at_tls(tls_fake) -> None:
    """When the TLS server gives up first (Faktory does after 2 s), the error suggests tcp+tls://."""
    tls_fake.tls_handshake_timeout = 0.3
    plain = Settings.from_url(f"tcp://127.0.0.1:{tls_fake.port}", read_timeout=READ_TIMEOUT, connect_timeout=5)
    with Client(plain) as client, Timer() as timer, pytest.raises(FaktoryConnectionError, match="tcp\\+tls://"):
        client.info()
    assert timer.elapsed < 0.3 + SLACK
    wait_for(lambda: tls_fake.tls_failures == 1, 5, what="the TLS server to record the failed handshake")


# ---------------------------------------------------------------------------------------------- network faults


def test_cut_between_commands_is_transparent(proxied, proxy) -> None:
    assert proxied.info()
    assert proxy.cut_all() == 1
    assert proxied.info()["server"]["description"] == "Faktory"
    assert proxy.accepted == 2


def test_cut_after_info_request_is_retried_once(proxied, proxy) -> None:
    proxied.info()
    proxy.cut_after_request()
    assert proxied.info()["server"]["description"] == "Faktory"
    assert proxy.accepted == 2
    assert proxy.requests == [b"HELLO", b"INFO", b"INFO", b"HELLO", b"INFO"]


def test_push_cut_after_request_raises_and_is_enqueued_exactly_once(server, proxied, proxy) -> None:
    queue = unique()
    proxied.info()
    proxy.cut_after_request()
    jid = uuid.uuid4().hex
    with pytest.raises(RequestError, match="was not repeated") as info:
        proxied.perform("Once", 1, queue=queue, jid=jid)
    assert info.value.request_sent
    assert proxy.requests.count(b"PUSH") == 1
    wait_for(lambda: queue_size(server, queue) == 1, 5, what="the PUSH that reached the server")
    assert fetch_job(server, queue)["jid"] == jid
    assert queue_size(server, queue) == 0
    # the client is usable right away
    proxied.perform("Next", queue=queue)
    assert queue_size(server, queue) == 1


def test_refused_connection_is_a_clear_error_and_recovers(server, proxied, proxy) -> None:
    proxied.info()
    proxy.refuse(None)
    proxy.cut_all()
    for call in (proxied.info, lambda: proxied.perform("X", queue=unique())):
        with Timer() as timer, pytest.raises(FaktoryConnectionError, match="cannot connect to Faktory at") as info:
            call()
        assert timer.elapsed < CONNECT_TIMEOUT
        assert "refused" in str(info.value).lower()
        assert proxy.url.removeprefix("tcp://") in str(info.value)
    if getattr(server, "password", None):
        assert server.password not in str(info.value)
    proxy.accept_again()
    assert proxied.info()["server"]["description"] == "Faktory"


def test_refusal_for_a_while_then_recovers(proxied, proxy) -> None:
    proxy.refuse(0.5)
    proxy.cut_all()
    with pytest.raises(FaktoryConnectionError, match="cannot connect"):
        proxied.info()
    info = wait_for(lambda: _try_info(proxied), 5, what="the proxy to accept again")
    assert info["server"]["description"] == "Faktory"


def _try_info(client: Client) -> dict | None:
    try:
        return client.info()
    except FaktoryConnectionError:
        return None


def test_delayed_path_still_works(server, proxied, proxy) -> None:
    queue = unique()
    proxy.delay(0.1)
    with Timer() as timer:
        proxied.perform("Slow", queue=queue)  # greeting, HELLO, +OK, PUSH, +OK: five delayed chunks
    assert timer.elapsed >= 0.4
    assert proxied.info()["faktory"]["queues"][queue] == 1
    proxy.delay(0)
    with Timer() as timer:
        proxied.info()
    assert timer.elapsed < 0.1


def test_stall_fires_the_read_timeout(server, proxied, proxy) -> None:
    queue = unique()
    proxied.info()
    proxy.stall()
    with Timer() as timer, pytest.raises(RequestError) as info:
        proxied.perform("Stalled", queue=queue)
    assert READ_TIMEOUT * 0.9 <= timer.elapsed < READ_TIMEOUT + SLACK
    assert f"within {READ_TIMEOUT:g} s" in str(info.value) and "was not repeated" in str(info.value)
    proxy.unstall()
    assert queue_size(server, queue) == 1, "the PUSH went through; only its reply was lost"
    assert proxied.info()["faktory"]["queues"][queue] == 1


def test_threads_sharing_a_client_under_repeated_cuts(server, proxied, proxy) -> None:
    """Cuts at random points of many concurrent commands: every call either succeeds or raises a connection
    error, never gets another call's reply, and the pushes counted as done are on the server."""
    queue = unique()
    done, maybe, unexpected = [], [], []
    lock = threading.Lock()

    def produce(worker: int) -> None:
        for i in range(60):
            try:
                proxied.perform("Cut", worker, i, queue=queue)
                outcome = done
                if i % 10 == 0:
                    assert isinstance(proxied.info()["faktory"]["queues"], dict)
            except RequestError as exc:
                outcome = maybe if exc.request_sent else unexpected
            except FaktoryConnectionError:
                continue  # could not connect at all: certainly not pushed
            except BaseException as exc:  # reported below
                outcome = unexpected
                outcome.append(exc)
                continue
            with lock:
                outcome.append((worker, i))

    threads = [threading.Thread(target=produce, args=(n,), name=f"producer-{n}") for n in range(4)]
    for thread in threads:
        thread.start()
    cuts = seen = 0
    while any(thread.is_alive() for thread in threads):
        with lock:
            finished = len(done) + len(maybe)
        if finished > seen:  # cut again only after some progress, however slow the handshake (passwords)
            seen = finished
            cuts += proxy.cut_all()
        threading.Event().wait(0.002)
    for thread in threads:
        thread.join(10)
    assert unexpected == []
    assert cuts > 0 and len(done) > 0
    size = queue_size(server, queue)
    assert len(done) <= size <= len(done) + len(maybe)


# ---------------------------------------------------------------------------------------------- payloads


def test_ten_megabyte_job_round_trip(server) -> None:
    queue = unique()
    size = 10 * 1024 * 1024
    big = (bytes(range(32, 127)) * (size // 95 + 1))[:size].decode()
    args = [big, {"n": 1, "unicode": "h\u00e9llo \u2603 \U0001f600"}]
    with Client(Settings.from_url(server.url, read_timeout=30)) as client:
        jid = client.push(Job("Big", args, queue=queue))
    job = fetch_job(server, queue)
    assert job["jid"] == jid and job["args"] == args


def test_lone_surrogate_is_sent_escaped_and_comes_back_replaced(server) -> None:
    """The client does not reject a lone surrogate: JSON's ASCII escaping carries it as ``\\udc80``, and the
    server (Go's JSON decoder) replaces it with U+FFFD, as it does any invalid UTF-16."""
    with FakeServer() as fake, Client(fast(fake.url)) as client:
        client.perform("Surrogate", "a\udc80b", queue="default")
    (push,) = [line for line in fake.lines if line.startswith(b"PUSH")]
    assert b'"args":["a\\udc80b"]' in push and push.isascii()
    queue = unique()
    with Client(fast(server.url)) as client:
        client.perform("Surrogate", "a\udc80b", {"k\udc80": "\ud800"}, queue=queue)
    assert fetch_job(server, queue)["args"] == ["a\ufffdb", {"k\ufffd": "\ufffd"}]


def test_unencodable_argument_is_rejected_before_sending(server) -> None:
    with FakeServer() as fake, Client(fast(fake.url)) as client:
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            client.perform("Bad", {1, 2})
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            client.perform("Bad", float("nan"))
    assert not any(line.startswith(b"PUSH") for line in fake.lines)


def test_server_error_reply_keeps_the_connection() -> None:
    """A -ERR reply is a ServerError and the connection stays pooled (no reconnect)."""
    script = lambda line: b"-ERR nope\r\n" if line.startswith(b"PUSH") else behaving(line)  # noqa: E731
    with FakeServer(script) as fake, Client(fast(fake.url)) as client:
        with pytest.raises(ServerError, match="nope") as info:
            client.perform("X")
        assert not isinstance(info.value, FaktoryConnectionError | ProtocolError)
        client.info()
        assert fake.accepted == 1


def test_every_fault_error_is_a_faktory_error() -> None:
    for error in (ProtocolError, FaktoryConnectionError, RequestError, AuthenticationError, ServerError):
        assert issubclass(error, FaktoryError)
