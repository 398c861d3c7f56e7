"""Shared fixtures: a Faktory server for every test.

By default each test gets a fresh embedded server on an ephemeral loopback port. With ``FAKTORY_URL`` set,
tests run against that real server instead, which is FLUSHed before each test; tests that need the embedded
server's Python-side controls take the ``embedded`` fixture and are skipped there.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from faultproxy import FaultProxy
from helpers import wait_for

from faktoryd.embedded import EmbeddedServer

REAL_URL = os.environ.get("FAKTORY_URL")


class RealServer:
    """The subset of EmbeddedServer's surface that a real server offers: where it is."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 7419
        self.password = parts.password

    def flush(self) -> None:
        """FLUSH over a raw socket, so the fixture does not depend on the client under test."""
        import faktoryd.protocol as p

        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            reader = sock.makefile("rb")
            greeting = p.parse_greeting(reader.readline()[1:-2].decode())
            sock.sendall(p.hello(greeting, password=self.password))
            assert reader.readline() == b"+OK\r\n", "HELLO refused by the real server"
            sock.sendall(p.FLUSH)
            assert reader.readline() == b"+OK\r\n"
            sock.sendall(p.END)


@pytest.fixture
def server() -> Iterator[EmbeddedServer | RealServer]:
    """A Faktory server with empty state: embedded by default, the real one at FAKTORY_URL if set."""
    if REAL_URL:
        real = RealServer(REAL_URL)
        real.flush()
        yield real
        return
    with EmbeddedServer() as srv:
        yield srv


@pytest.fixture
def embedded(server: EmbeddedServer | RealServer) -> EmbeddedServer:
    """The embedded server, for tests that need its controls (skipped against a real server)."""
    if not isinstance(server, EmbeddedServer):
        pytest.skip("needs the embedded server's controls; FAKTORY_URL points at a real server")
    return server


@pytest.fixture
def password_server() -> Iterator[EmbeddedServer]:
    """An embedded server that requires the password ``s3cret``."""
    if REAL_URL:
        pytest.skip("needs a second server with a password; FAKTORY_URL points at a real server")
    with EmbeddedServer(password="s3cret") as srv:
        yield srv


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made with the openssl CLI (skipped without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate and is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Every proxy and fake server a test starts is gone afterwards: no thread and no descriptor left."""
    before = len(os.listdir("/proc/self/fd"))
    yield
    leftover = [t.name for t in threading.enumerate() if t.name.startswith(("faultproxy", "fakeserver"))]
    assert leftover == [], f"threads left running: {leftover}"
    gc.collect()  # a socket dropped without close() is only released by the collector (and warns)
    wait_for(lambda: len(os.listdir("/proc/self/fd")) <= before, 5, what="file descriptors to be released")


@pytest.fixture
def proxy(server: EmbeddedServer | RealServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test's server, closed (threads joined) after the test."""
    with FaultProxy(server.host, server.port) as proxy:
        yield proxy
