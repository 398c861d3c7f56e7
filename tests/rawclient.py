"""A tiny raw Faktory line client for tests: real TCP sockets, exact bytes in and out.

It deliberately shares no code with the package under test (only the wire format described in
``PROTOCOL.md``), so conformance tests stay independent of the client they are meant to check.

    with RawConnection(host, port) as conn:
        conn.handshake()                       # reads +HI, sends HELLO, expects +OK
        assert conn.request("INFO").startswith(b"$")
        conn.send(b"END\\r\\n")
        assert conn.closed(timeout=1.0)

Every reply is returned as the exact bytes the server sent, terminator included:
``b"+OK\\r\\n"``, ``b"-ERR ...\\r\\n"``, ``b"$-1\\r\\n"``, ``b"$17\\r\\n{...}\\r\\n"``, ``b":1\\r\\n"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from typing import Any

DEFAULT_TIMEOUT = 5.0
"""Seconds any single read may take; comfortably above the server's 2-second FETCH block."""


class ServerClosed(ConnectionError):
    """The server closed the connection before a complete reply arrived."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(f"{message}; partial bytes received: {partial!r}")
        self.partial = partial


class BadReply(AssertionError):
    """The bytes received are not a well-formed reply (wrong first byte, missing CRLF, bad length...)."""


def password_hash(password: str, salt: str, iterations: int) -> str:
    """``sha256^iterations(password + salt)`` as lowercase hex; 0 or 1 iterations mean one application."""
    digest = (password + salt).encode("utf-8")
    for _ in range(max(iterations, 1)):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def dumps(obj: Any) -> str:
    """Compact JSON, one line, as a client sends it."""
    return json.dumps(obj, separators=(",", ":"))


def bulk_payload(reply: bytes) -> bytes:
    """The payload of a complete bulk reply ``$n\\r\\n<payload>\\r\\n`` (checks the header length)."""
    if not reply.startswith(b"$"):
        raise BadReply(f"expected a bulk reply, got {reply!r:.300}")
    header, sep, rest = reply.partition(b"\r\n")
    if not sep:
        raise BadReply(f"bulk reply without CRLF after its header: {reply!r:.300}")
    size = int(header[1:])
    if size < 0:
        raise BadReply(f"expected a non-null bulk reply, got {reply!r}")
    if len(rest) != size + 2 or not rest.endswith(b"\r\n"):
        raise BadReply(f"bulk header says {size} bytes, reply is {reply!r:.300}")
    return rest[:size]


def bulk_json(reply: bytes, **loads_kwargs: Any) -> Any:
    """Decode the JSON payload of a bulk reply."""
    return json.loads(bulk_payload(reply), **loads_kwargs)


class RawConnection:
    """One TCP connection to a Faktory server, speaking raw bytes.

    ``timeout`` bounds every individual socket operation and every :meth:`read_reply` as a whole.
    Use it as a context manager (or call :meth:`close`) so the socket is always released.
    """

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._buf = bytearray()
        self._eof = False
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.greeting: bytes | None = None

    # ------------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (idempotent). Sends nothing: use ``send(b"END\\r\\n")`` for a polite goodbye."""
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet consumed as a reply."""
        return bytes(self._buf)

    # ------------------------------------------------------------------------------ writing

    def send(self, data: bytes) -> None:
        """Send exactly ``data``."""
        self.sock.sendall(data)

    def request(self, line: bytes | str, *, timeout: float | None = None) -> bytes:
        """Send one command line (CRLF appended unless it already ends with LF) and return the exact reply."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        if not data.endswith(b"\n"):
            data += b"\r\n"
        self.send(data)
        return self.read_reply(timeout=timeout)

    # ------------------------------------------------------------------------------ reading

    def _fill(self, deadline: float) -> None:
        """Receive at least one more chunk into the buffer, or raise on EOF / deadline."""
        if self._eof:
            raise ServerClosed("connection already closed by the server", bytes(self._buf))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete reply within the deadline; received so far: {bytes(self._buf)!r:.300}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as exc:
            raise TimeoutError(
                f"no complete reply within the deadline; received so far: {bytes(self._buf)!r:.300}"
            ) from exc
        except ConnectionResetError as exc:
            self._eof = True
            raise ServerClosed("connection reset by the server", bytes(self._buf)) from exc
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            self._eof = True
            raise ServerClosed("connection closed by the server", bytes(self._buf))
        self._buf += chunk

    def _line_end(self, deadline: float) -> int:
        """Index just past the first CRLF in the buffer, reading more as needed."""
        while True:
            idx = self._buf.find(b"\r\n")
            if idx >= 0:
                return idx + 2
            if b"\n" in self._buf:
                raise BadReply(f"reply line terminated by a bare LF: {bytes(self._buf)!r:.300}")
            self._fill(deadline)

    def read_reply(self, *, timeout: float | None = None) -> bytes:
        """Read one complete reply and return its exact bytes (terminators included).

        Handles ``+``, ``-``, ``:`` lines, ``$n`` bulk strings delivered in any number of fragments, and ``$-1``.
        Raises :class:`ServerClosed` on EOF, :class:`TimeoutError` after ``timeout`` (default: the connection's).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._buf:
            self._fill(deadline)
        kind = self._buf[:1]
        if kind not in (b"+", b"-", b":", b"$"):
            raise BadReply(f"reply starts with {bytes(kind)!r}, not one of + - : $: {bytes(self._buf)!r:.300}")
        end = self._line_end(deadline)
        if kind == b"$":
            try:
                size = int(self._buf[1 : end - 2])
            except ValueError as exc:
                raise BadReply(f"bad bulk header {bytes(self._buf[:end])!r}") from exc
            if size < -1:
                raise BadReply(f"bad bulk length in {bytes(self._buf[:end])!r}")
            if size >= 0:
                total = end + size + 2
                while len(self._buf) < total:
                    self._fill(deadline)
                if self._buf[total - 2 : total] != b"\r\n":
                    raise BadReply(f"bulk of {size} bytes not followed by CRLF: {bytes(self._buf[:total + 10])!r:.300}")
                end = total
        reply = bytes(self._buf[:end])
        del self._buf[:end]
        return reply

    def closed(self, timeout: float = 1.0) -> bool:
        """Whether the server closes the connection within ``timeout`` seconds.

        Any bytes that arrive meanwhile are kept in :attr:`pending` (check it to assert a *silent* close).
        Returns False if the connection is still open when the time is up.
        """
        if self._eof:
            return True
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except ServerClosed:
            return True
        except TimeoutError:
            return False
        except OSError:
            return True

    # ------------------------------------------------------------------------------ handshake

    def read_greeting(self) -> bytes:
        """Read (once) the ``+HI {...}`` line the server sends on accept."""
        if self.greeting is None:
            self.greeting = self.read_reply()
        return self.greeting

    def greeting_json(self) -> dict[str, Any]:
        line = self.read_greeting()
        if not line.startswith(b"+HI ") or not line.endswith(b"\r\n"):
            raise BadReply(f"expected a +HI greeting, got {line!r}")
        return json.loads(line[4:-2])

    def hello_line(
        self,
        *,
        password: str | None = None,
        wid: str | None = None,
        version: int | None = 2,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        """The HELLO line answering this connection's greeting (reads the greeting if not yet read)."""
        hi = self.greeting_json()
        payload: dict[str, Any] = {}
        if wid is not None:
            payload.update(hostname="conformance-test", pid=os.getpid(), labels=["python", "conformance"], wid=wid)
        if version is not None:
            payload["v"] = version
        if password is not None and "s" in hi:
            iterations = hi.get("i", 1) if (version or 0) >= 2 else 1
            payload["pwdhash"] = password_hash(password, hi["s"], iterations)
        if extra:
            payload.update(extra)
        return b"HELLO " + dumps(payload).encode() + b"\r\n"

    def handshake(
        self,
        *,
        password: str | None = None,
        wid: str | None = None,
        version: int | None = 2,
        extra: dict[str, Any] | None = None,
    ) -> RawConnection:
        """Read +HI, send HELLO, and require ``+OK``. Returns self for chaining."""
        reply = self.request(self.hello_line(password=password, wid=wid, version=version, extra=extra))
        if reply != b"+OK\r\n":
            raise AssertionError(f"HELLO refused: {reply!r}")
        return self


def connect(
    host: str,
    port: int,
    *,
    password: str | None = None,
    wid: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> RawConnection:
    """Open a connection and complete the handshake (closing the socket if the handshake fails)."""
    conn = RawConnection(host, port, timeout=timeout)
    try:
        conn.handshake(password=password, wid=wid)
    except BaseException:
        conn.close()
        raise
    return conn
