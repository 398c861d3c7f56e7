"""The fault proxy itself: bytes pass through unchanged, and each fault does exactly what it says.

These use raw sockets (``rawclient``), not the client under test, so a proxy bug cannot hide behind a client
bug or the other way round. The server is the ``server`` fixture (embedded, or the real one at FAKTORY_URL).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from faultproxy import FaultProxy
from helpers import wait_for
from rawclient import RawConnection, bulk_json, dumps

from faktoryd import Client, Settings

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leaks")]


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def password_of(server: object) -> str | None:
    return getattr(server, "password", None)


def raw_through(proxy: FaultProxy, server: object, *, timeout: float = 5.0) -> RawConnection:
    """A raw connection through the proxy, past the handshake."""
    conn = RawConnection(proxy.host, proxy.port, timeout=timeout)
    try:
        conn.handshake(password=password_of(server))
    except BaseException:
        conn.close()
        raise
    return conn


def push_line(queue: str, jid: str | None = None) -> bytes:
    job = {"jid": jid or uuid.uuid4().hex, "jobtype": "ProxyTest", "args": [1], "queue": queue, "retry": 25}
    return b"PUSH " + dumps(job).encode() + b"\r\n"


def queue_size(server: object, queue: str) -> int:
    """The queue's size as the server reports it, over a direct (unproxied) connection."""
    with Client(Settings.from_url(server.url)) as client:
        return int(client.info()["faktory"]["queues"].get(queue, 0))


def refused(port: int) -> bool:
    """Whether a connect to 127.0.0.1:port is refused right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@contextlib.contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """A TCP echo server: the simplest target to prove the proxy alters no byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(0.05)
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    thread = threading.Thread(target=serve, name="echo-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        listener.close()
        thread.join(5)


# ---------------------------------------------------------------------------------------------- passthrough


def test_bytes_pass_through_unchanged() -> None:
    """Every byte value, in chunks of every size, arrives unchanged and in order."""
    payload = bytes(range(256)) * 64 + os.urandom(2 * 1024 * 1024) + b"\r\n\n\r\x00"
    with echo_server() as (host, port), FaultProxy(host, port) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
            received = bytearray()

            def read_all() -> None:
                while len(received) < len(payload):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    received.extend(chunk)

            reader = threading.Thread(target=read_all, daemon=True)
            reader.start()
            sock.sendall(payload)
            reader.join(10)
            assert bytes(received) == payload
            assert proxy.connections == 1 and proxy.accepted == 1
        wait_for(lambda: proxy.connections == 0, 5, what="the proxy to notice the client closed")


def test_protocol_exchange_through_proxy(server, proxy) -> None:
    """The server's greeting and replies reach a raw client exactly as they would directly."""
    queue = unique()
    with RawConnection(server.host, server.port) as direct:
        direct_greeting = direct.read_greeting()
    with raw_through(proxy, server) as conn:
        assert conn.greeting is not None
        if password_of(server) is None:
            assert conn.greeting == direct_greeting == b'+HI {"v":2}\r\n'
        assert conn.request(push_line(queue)) == b"+OK\r\n"
        info = bulk_json(conn.request(b"INFO"))
        assert info["faktory"]["queues"][queue] == 1
        assert conn.request(b"NOPE") == b"-ERR unknown command NOPE\r\n"
        assert proxy.requests == [b"HELLO", b"PUSH", b"INFO", b"NOPE"]
        conn.send(b"END\r\n")
        assert conn.closed(timeout=2) and conn.pending == b""
    wait_for(lambda: proxy.connections == 0, 5, what="the proxied connection to end after END")
    assert proxy.accepted == 1


def test_url_for_keeps_scheme_password_and_namespace(proxy) -> None:
    port = proxy.port
    assert proxy.url == f"tcp://127.0.0.1:{port}"
    assert proxy.url_for("tcp://localhost:7419") == f"tcp://127.0.0.1:{port}"
    assert proxy.url_for("tcp://:s3cret@10.1.2.3:7419/ns.") == f"tcp://:s3cret@127.0.0.1:{port}/ns."
    assert proxy.url_for("tcp+tls://u:p%40ss@host") == f"tcp+tls://u:p%40ss@127.0.0.1:{port}"
    assert Settings.from_url(proxy.url_for("tcp://:pw@h:1/ns")).password == "pw"


# ---------------------------------------------------------------------------------------------- faults


def test_cut_all_closes_both_sides(server, proxy) -> None:
    with raw_through(proxy, server) as first, raw_through(proxy, server) as second:
        assert proxy.connections == 2
        assert proxy.cut_all() == 2
        assert proxy.connections == 0
        assert first.closed(timeout=2) and second.closed(timeout=2)
        assert first.pending == b"" and second.pending == b""
    # the proxy still accepts afterwards
    with raw_through(proxy, server) as third:
        assert bulk_json(third.request(b"INFO"))["server"]["description"] == "Faktory"
    assert proxy.accepted == 3


def test_cut_all_closes_the_server_side_too(embedded, proxy) -> None:
    """The server sees the connection end (its INFO connection count drops back)."""
    with Client(Settings.from_url(embedded.url)) as direct:
        baseline = direct.info()["server"]["connections"]
        with raw_through(proxy, embedded):
            wait_for(lambda: direct.info()["server"]["connections"] == baseline + 1, 5, what="server sees it")
            proxy.cut_all()
            wait_for(lambda: direct.info()["server"]["connections"] == baseline, 5, what="server sees the cut")


def test_refuse_until_accept_again(server, proxy) -> None:
    with raw_through(proxy, server) as live:
        proxy.refuse(None)
        assert proxy.refusing
        assert refused(proxy.port)
        with pytest.raises(ConnectionRefusedError):
            RawConnection(proxy.host, proxy.port, timeout=1)
        # a live connection is untouched by a refusal
        assert bulk_json(live.request(b"INFO"))["server"]["description"] == "Faktory"
        proxy.accept_again()
        assert not proxy.refusing
        with raw_through(proxy, server) as again:
            assert again.request(b"FLUSH") == b"+OK\r\n"
    assert proxy.accepted == 2


def test_refuse_for_a_while_then_listen_again_on_the_same_port(server, proxy) -> None:
    port = proxy.port
    started = time.monotonic()
    proxy.refuse(0.3)
    assert refused(port)
    wait_for(lambda: not refused(port), 5, what="the proxy to listen again")
    assert time.monotonic() - started >= 0.3
    assert proxy.port == port
    with raw_through(proxy, server) as conn:
        assert conn.request(b"FLUSH") == b"+OK\r\n"


def test_delay_slows_both_directions(server, proxy) -> None:
    with raw_through(proxy, server) as conn:
        started = time.monotonic()
        conn.request(b"FLUSH")
        fast = time.monotonic() - started
        proxy.delay(0.15)
        started = time.monotonic()
        assert conn.request(b"FLUSH") == b"+OK\r\n"
        slow = time.monotonic() - started
        proxy.delay(0)
        started = time.monotonic()
        conn.request(b"FLUSH")
        fast_again = time.monotonic() - started
    assert slow >= 0.3, "one delay on the request and one on the reply"
    assert fast < 0.15 and fast_again < 0.15


def test_stall_downstream_holds_replies_until_unstall(server, proxy) -> None:
    queue = unique()
    with raw_through(proxy, server) as conn:
        proxy.stall()
        conn.send(push_line(queue))
        with pytest.raises(TimeoutError):
            conn.read_reply(timeout=0.3)
        assert conn.pending == b""
        # upstream still flows: the server got the PUSH
        wait_for(lambda: queue_size(server, queue) == 1, 5, what="the PUSH to reach the server")
        proxy.unstall()
        assert conn.read_reply(timeout=5) == b"+OK\r\n"


def test_stall_upstream_holds_requests_until_unstall(server, proxy) -> None:
    queue = unique()
    with raw_through(proxy, server) as conn:
        proxy.stall("upstream")
        conn.send(push_line(queue))
        with pytest.raises(TimeoutError):
            conn.read_reply(timeout=0.3)
        assert queue_size(server, queue) == 0, "nothing flowed upstream"
        assert proxy.connections == 1, "the stalled connection stays open"
        proxy.unstall()
        assert conn.read_reply(timeout=5) == b"+OK\r\n"
        assert queue_size(server, queue) == 1


def test_stall_applies_to_new_connections(server, proxy) -> None:
    proxy.stall("both")
    with RawConnection(proxy.host, proxy.port, timeout=5) as conn:
        with pytest.raises(TimeoutError):
            conn.read_reply(timeout=0.4)  # not even the greeting
        proxy.unstall()
        assert conn.read_greeting().startswith(b"+HI ")
    with pytest.raises(ValueError, match="direction"):
        proxy.stall("sideways")


def test_stall_mid_reply_forwards_half_a_reply(server, proxy) -> None:
    with raw_through(proxy, server) as conn:
        proxy.stall_mid_reply()
        conn.send(b"INFO\r\n")
        with pytest.raises(TimeoutError):
            conn.read_reply(timeout=0.3)
        partial = conn.pending
        assert partial.startswith(b"$") and len(partial) >= 1
        proxy.unstall()
        reply = conn.read_reply(timeout=5)
        assert reply.startswith(partial)
        assert json.loads(reply.split(b"\r\n", 1)[1][:-2])["server"]["description"] == "Faktory"
        # later replies flow normally
        assert conn.request(b"FLUSH") == b"+OK\r\n"


def test_cut_after_request_forwards_then_drops_the_client(server, proxy) -> None:
    queue = unique()
    with raw_through(proxy, server) as conn:  # the HELLO is not counted
        proxy.cut_after_request()
        conn.send(push_line(queue))
        assert conn.closed(timeout=3), "the client side is closed"
        assert conn.pending == b"", "no reply byte reached the client"
    wait_for(lambda: queue_size(server, queue) == 1, 5, what="the forwarded PUSH to be processed")
    wait_for(lambda: proxy.connections == 0, 5, what="the server side to be closed too")
    # only one request was cut
    with raw_through(proxy, server) as conn:
        assert conn.request(push_line(queue)) == b"+OK\r\n"
    assert queue_size(server, queue) == 2


def test_cut_after_request_counts_requests(server, proxy) -> None:
    queue = unique()
    proxy.cut_after_request(2)
    for _ in range(2):
        with raw_through(proxy, server) as conn:
            conn.send(push_line(queue))
            assert conn.closed(timeout=3) and conn.pending == b""
    with raw_through(proxy, server) as conn:
        assert conn.request(b"FLUSH") == b"+OK\r\n"
    assert proxy.requests.count(b"PUSH") == 2


def test_reset_clears_every_fault(server, proxy) -> None:
    proxy.delay(5)
    proxy.stall("both")
    proxy.cut_after_request(3)
    proxy.refuse(None)
    proxy.reset()
    with raw_through(proxy, server, timeout=2) as conn:
        assert conn.request(b"FLUSH") == b"+OK\r\n"


def test_close_leaves_no_thread_or_socket(server) -> None:
    before = set(threading.enumerate())
    proxy = FaultProxy(server.host, server.port)
    conn = raw_through(proxy, server)
    try:
        proxy.stall("both")
        proxy.delay(10)  # a pipe thread may be waiting on a delay: close() must still be prompt
        conn.send(b"INFO\r\n")
        started = time.monotonic()
        proxy.close()
        assert time.monotonic() - started < 2
        assert conn.closed(timeout=2)
    finally:
        conn.close()
    assert refused(proxy.port)
    leftover = [t for t in set(threading.enumerate()) - before if t.name.startswith("faultproxy")]
    assert leftover == []
    proxy.close()  # idempotent
