"""One socket to the Faktory server: connect (TCP or TLS), handshake, one command at a time, END on close.

This layer owns the socket and nothing else; the bytes come from :mod:`faktoryd.protocol`. A connection is
not thread-safe: each thread keeps its own. Any I/O error or timeout leaves the stream out of step, so the
connection is aborted (closed without END) and the error is raised as :class:`FaktoryConnectionError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Sequence

from . import protocol
from .errors import AuthenticationError, FaktoryConnectionError, ProtocolError, ServerError
from .protocol import NEED_DATA, ErrorReply, Reply, ReplyParser
from .settings import Settings

log = logging.getLogger("faktoryd.connection")

_RECV_SIZE = 65536


class RequestError(FaktoryConnectionError):
    """The connection failed during a command. ``request_sent`` tells whether the whole command line left
    this process (then the server may have acted on it); when False it certainly did not."""

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class Connection:
    """A connection to the server, with the identity given in HELLO.

    A worker connection passes ``wid`` (and hostname, pid, labels come from the settings and the process);
    a producer connection passes none.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        wid: str | None = None,
        pid: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self.wid = wid
        self.pid = os.getpid() if pid is None else pid
        self.labels = tuple(settings.labels if labels is None else labels)
        self._sock: socket.socket | None = None
        self._parser = ReplyParser()
        self._handshake_end = 0.0
        self._kernel_timeouts = False
        """Plain TCP after the handshake: a blocking socket whose timeouts the kernel enforces (SO_RCVTIMEO,
        SO_SNDTIMEO), so a command costs one send and one recv. A Python-level timeout would poll() before
        each of them and reset the socket's mode after each reply: three more syscalls per command."""

    def __repr__(self) -> str:
        state = "open" if self._sock is not None else "closed"
        who = f" wid={self.wid}" if self.wid else ""
        return f"<Connection {self.settings.url}{who} {state}>"

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    # ------------------------------------------------------------------------------------------ lifecycle

    def open(self) -> Connection:
        """Connect and complete the HI/HELLO handshake. Returns self."""
        if self._sock is not None:
            return self
        settings = self.settings
        self._handshake_end = time.monotonic() + settings.connect_timeout
        try:
            raw = socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout)
        except OSError as exc:
            raise FaktoryConnectionError(
                f"cannot connect to Faktory at {settings.url}: {_reason(exc)}"
            ) from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        try:
            if settings.tls:
                sock = self._wrap_tls(raw)
            self._sock = sock
            self._parser = ReplyParser()
            self._handshake()
        except BaseException:
            self.abort()
            if sock is not raw:
                raw.close()
            raise
        if settings.tls:
            sock.settimeout(settings.read_timeout)
        else:
            sock.settimeout(None)
            timeout = _timeval(settings.read_timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
            self._kernel_timeouts = True
        log.debug("connected to %s%s", settings.url, f" as {self.wid}" if self.wid else "")
        return self

    def _wrap_tls(self, raw: socket.socket) -> ssl.SSLSocket:
        settings = self.settings
        context = ssl.create_default_context(cafile=settings.tls_ca_file)
        if settings.tls_cert_file:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        if not settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            return context.wrap_socket(raw, server_hostname=settings.host)
        except ssl.SSLCertVerificationError as exc:
            raise FaktoryConnectionError(
                f"TLS certificate of {settings.url} rejected ({exc.verify_message}): set tls_ca_file to the "
                "CA that signed it, or turn tls_verify off only for testing"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise FaktoryConnectionError(
                f"TLS handshake with {settings.url} failed ({_reason(exc)}): is the server using TLS? "
                "Use tcp:// for a plain server and tcp+tls:// for a TLS one"
            ) from None

    def _handshake(self) -> None:
        settings = self.settings
        reply = self._read(handshake=True)
        try:
            greeting = protocol.parse_greeting(reply)
        except ProtocolError as exc:
            raise ProtocolError(f"{settings.url} did not greet like a Faktory server: {exc}") from None
        if greeting.needs_password and not settings.password:
            raise AuthenticationError(
                "ERR",
                f"Faktory at {settings.url} requires a password and none is configured: "
                "put it in the URL (tcp://:PASSWORD@host:port) or in the config's password_file",
            )
        hello = protocol.hello(
            greeting,
            password=settings.password,
            wid=self.wid,
            hostname=settings.hostname,
            pid=self.pid,
            labels=self.labels,
        )
        self._send(hello)
        reply = self._read(handshake=True)
        if isinstance(reply, ErrorReply):
            if "password" in reply.message.lower():
                raise AuthenticationError(
                    reply.code,
                    f"Faktory at {settings.url} refused the password ({reply.message}): "
                    "check the password in the URL or the password_file",
                )
            raise ServerError(reply.code, reply.message)
        if reply != "OK":
            raise ProtocolError(f"unexpected reply to HELLO from {settings.url}: {reply!r:.80}")

    def close(self) -> None:
        """Send END (the server answers nothing) and close. Safe to call twice."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.settimeout(1.0)
            self._kernel_timeouts = False
            sock.sendall(protocol.END)
        except OSError:
            pass
        self.abort()

    def abort(self) -> None:
        """Close without END: for a connection whose stream is out of step or already dead."""
        sock, self._sock = self._sock, None
        self._kernel_timeouts = False
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Connection:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ commands

    def request(self, data: bytes) -> Reply:
        """Send one encoded command and return its reply. ``-ERR`` replies raise :class:`ServerError`.

        ``data`` may hold more commands (pipelining: the server answers them in order); this returns the reply
        to the first, and :meth:`read_reply` reads each of the others."""
        if self._sock is None:
            raise RequestError(f"connection to {self.settings.url} is closed", request_sent=False)
        self._send(data)
        reply = self._read(handshake=False, request_sent=True)
        if isinstance(reply, ErrorReply):
            raise ServerError(reply.code, reply.message)
        return reply

    def read_reply(self) -> Reply:
        """The reply to the next command of a pipelined :meth:`request`. ``-ERR`` replies raise
        :class:`ServerError`."""
        if self._sock is None:
            raise RequestError(f"connection to {self.settings.url} is closed", request_sent=True)
        reply = self._read(handshake=False, request_sent=True)
        if isinstance(reply, ErrorReply):
            raise ServerError(reply.code, reply.message)
        return reply

    def is_stale(self) -> bool:
        """Whether the server has closed this idle connection (or sent something unasked, which would be
        taken for the reply to the next command)."""
        sock = self._sock
        if sock is None or self._parser.pending:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _set_read_timeout(self, sock: socket.socket, seconds: float) -> None:
        if self._kernel_timeouts:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
        else:
            sock.settimeout(seconds)

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.abort()
            raise RequestError(
                f"lost connection to {self.settings.url} while sending: {_reason(exc)}", request_sent=False
            ) from None

    def _read(self, *, handshake: bool, request_sent: bool = True) -> Reply:
        """One complete reply, within ``read_timeout`` overall (a reply trickled byte by byte cannot hold the
        caller longer), or within what is left of ``connect_timeout`` during the handshake."""
        sock, parser = self._sock, self._parser
        assert sock is not None
        end = self._handshake_end if handshake else time.monotonic() + self.settings.read_timeout
        # The socket's standing timeout (read_timeout) covers the first recv of a command's reply; only a reply
        # that needs more recvs pays for setting what is left of the deadline, and for restoring it after.
        timed = handshake
        adjusted = False
        kernel = self._kernel_timeouts and not handshake
        try:
            while True:
                reply = parser.next_reply()
                if reply is not NEED_DATA:
                    if adjusted:
                        self._set_read_timeout(sock, self.settings.read_timeout)
                    return reply  # type: ignore[return-value]
                if timed:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    self._set_read_timeout(sock, left)
                    adjusted = not handshake
                try:
                    chunk = sock.recv(_RECV_SIZE)
                except BlockingIOError:
                    if kernel:  # SO_RCVTIMEO expired
                        raise TimeoutError from None
                    raise
                if not chunk:
                    raise ConnectionResetError("server closed the connection")
                parser.feed(chunk)
                timed = True
        except ProtocolError as exc:
            self.abort()
            if handshake:
                raise ProtocolError(f"{self.settings.url} did not greet like a Faktory server: {exc}") from None
            raise ProtocolError(f"{self.settings.url} sent {exc}") from None
        except TimeoutError:
            self.abort()
            if handshake:
                raise FaktoryConnectionError(
                    f"no greeting from {self.settings.url} within {self.settings.connect_timeout:g} s: is it a "
                    "Faktory server, and does it use TLS (then use a tcp+tls:// URL)?"
                ) from None
            raise RequestError(
                f"no reply from {self.settings.url} within {self.settings.read_timeout:g} s",
                request_sent=request_sent,
            ) from None
        except OSError as exc:
            self.abort()
            if handshake:
                raise FaktoryConnectionError(
                    f"{self.settings.url} closed the connection during the handshake ({_reason(exc)}): "
                    "if the server uses TLS, use a tcp+tls:// URL"
                ) from None
            raise RequestError(
                f"lost connection to {self.settings.url}: {_reason(exc)}", request_sent=request_sent
            ) from None


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO; never zero, which would mean "no timeout"."""
    micros = max(int(seconds * 1_000_000), 1000)
    return struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BlockingIOError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
