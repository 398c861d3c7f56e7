"""A scriptable fake Faktory server on loopback, for testing the client against servers that misbehave.

A real server (or the embedded one) always speaks the protocol correctly; the client's handling of garbage,
half lines, silence, a wrong TLS mode or invalid UTF-8 can only be tested against a peer that does these on
purpose. Each connection gets a greeting (configurable: garbage, half a line, nothing), an automatic ``+OK`` to
HELLO (unless ``handshake=False``), then one reply per received line from a script:

    with FakeServer([b"garbage\\r\\n"]) as fake:          # the first command gets garbage, later ones nothing
        ...
    with FakeServer(lambda line: b"+OK\\r\\n") as fake:  # a callable sees every command line
        ...

A reply is ``bytes`` (sent as is), ``None`` (never answered), :data:`CLOSE` (close the connection),
:class:`Pause`, or a tuple of these done in order, e.g. ``(b"+O", CLOSE)`` for half a line and then a close;
the greeting may be any of these too. ``script``, ``greeting``,
``hello_reply`` and ``close_after_greeting`` may be reassigned at any time: a list script applies to each
connection from its start, so reassigning it lets a test make the server "behave" for the next connection.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Union

TICK = 0.02
IO_TIMEOUT = 5.0
JOIN_TIMEOUT = 5.0
MAX_LINE = 64 * 1024 * 1024
GREETING = b'+HI {"v":2}\r\n'


class _Close:
    def __repr__(self) -> str:
        return "CLOSE"


CLOSE = _Close()
"""A reply action: close the connection (after anything sent before it in the same tuple)."""


class Pause:
    """A reply action: wait this many seconds (cut short when the server closes) before the next action."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Pause({self.seconds})"


Reply = Union[bytes, None, _Close, Pause, tuple["Reply", ...]]  # noqa: UP007 (a recursive alias needs Union)
Script = Union[Callable[[bytes], Reply], Sequence[Reply]]  # noqa: UP007


def bulk(payload: bytes) -> bytes:
    """A bulk reply ``$n\\r\\n<payload>\\r\\n``."""
    return b"$%d\r\n%s\r\n" % (len(payload), payload)


def trickle(data: bytes, interval: float) -> tuple[Reply, ...]:
    """``data`` one byte at a time, ``interval`` seconds apart: a slow server that never goes fully silent."""
    actions: list[Reply] = []
    for index in range(len(data)):
        actions += [data[index : index + 1], Pause(interval)]
    return tuple(actions[:-1])


def behaving(line: bytes) -> Reply:
    """A minimal well-behaved server: INFO gets an INFO document, FETCH ``$-1``, END a close, the rest ``+OK``.

    Enough for a client's calls to succeed, so tests can show it recovers once the server behaves.
    """
    verb = line.split(b" ", 1)[0].strip()
    if verb == b"INFO":
        info = {
            "now": "2026-01-01T00:00:00Z",
            "server_utc_time": "00:00:00 UTC",
            "faktory": {"queues": {}, "sets": {}, "tasks": {}, "total_enqueued": 0, "total_queues": 0},
            "server": {"description": "Faktory", "faktory_version": "fake", "connections": 1},
        }
        return bulk(json.dumps(info, separators=(",", ":")).encode())
    if verb == b"FETCH":
        return b"$-1\r\n"
    if verb == b"END":
        return CLOSE
    return b"+OK\r\n"


class FakeServer:
    """Listens on 127.0.0.1 (ephemeral port) and plays ``script`` on every connection.

    Observable: ``accepted`` (connections so far), ``connections`` (live), ``lines`` (every line received,
    HELLO included, without the line ending), ``hellos`` (the HELLO lines only). With ``ssl_context`` it is a
    TLS server from byte 0, like Faktory with certificates: the greeting follows a completed TLS handshake.
    """

    def __init__(
        self,
        script: Script = behaving,
        *,
        greeting: Reply = GREETING,
        close_after_greeting: bool = False,
        handshake: bool = True,
        hello_reply: Reply = b"+OK\r\n",
        ssl_context: ssl.SSLContext | None = None,
        tls_handshake_timeout: float = 2.0,
    ) -> None:
        self.script = script
        self.greeting = greeting
        self.close_after_greeting = close_after_greeting
        self.handshake = handshake
        self.hello_reply = hello_reply
        self.ssl_context = ssl_context
        self.tls_handshake_timeout = tls_handshake_timeout
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._live: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._lines: list[bytes] = []
        self.tls_failures = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"fakeserver-{self.port}", daemon=True)
        self._acceptor.start()

    def __repr__(self) -> str:
        return f"<FakeServer 127.0.0.1:{self.port} accepted={self.accepted}>"

    @property
    def url(self) -> str:
        scheme = "tcp+tls" if self.ssl_context else "tcp"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._live)

    @property
    def lines(self) -> list[bytes]:
        with self._lock:
            return list(self._lines)

    @property
    def hellos(self) -> list[bytes]:
        return [line for line in self.lines if line.startswith(b"HELLO")]

    # ------------------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop accepting, close every connection and join every thread (idempotent)."""
        self._closing.set()
        self._acceptor.join(JOIN_TIMEOUT)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            live = list(self._live)
            threads = list(self._threads)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        alive = [t.name for t in [self._acceptor, *threads] if t.is_alive()]
        if alive:
            raise RuntimeError(f"FakeServer threads did not stop: {alive}")

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], TICK)
                if not readable:
                    continue
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError):
                return
            sock.settimeout(IO_TIMEOUT)
            with self._lock:
                self._accepted += 1
                number = self._accepted
                self._live.add(sock)
                thread = threading.Thread(
                    target=self._serve, args=(sock,), name=f"fakeserver-{self.port}-conn-{number}", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                thread.start()  # under the lock: close() may join it as soon as it is listed

    def _serve(self, raw: socket.socket) -> None:
        sock: socket.socket = raw
        try:
            if self.ssl_context is not None:
                # wrapping detaches the descriptor from ``raw``: from here on only the TLS socket owns it
                sock = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                self._replace_live(raw, sock)
                try:
                    sock.settimeout(self.tls_handshake_timeout)  # like the real server's 2 s deadline
                    sock.do_handshake()
                    sock.settimeout(IO_TIMEOUT)
                except (OSError, ValueError):
                    with self._lock:
                        self.tls_failures += 1
                    return
            if not self._act(sock, self.greeting) or self.close_after_greeting:
                return
            self._command_loop(sock)
        except OSError:
            pass
        finally:
            with self._lock:
                self._live.discard(sock)
                self._live.discard(raw)
            for s in (sock, raw):
                with contextlib.suppress(OSError):
                    s.close()

    def _replace_live(self, old: socket.socket, new: socket.socket) -> None:
        """Track the socket that owns the descriptor, so close() can shut it down."""
        with self._lock:
            self._live.discard(old)
            self._live.add(new)

    def _command_loop(self, sock: socket.socket) -> None:
        buf = bytearray()
        position = 0  # index into a list script, per connection
        greeted = not self.handshake
        while not self._closing.is_set():
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending:
                readable, _, _ = select.select([sock], [], [], TICK)
                if not readable:
                    continue
            try:
                data = sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            if not data:
                return
            buf += data
            if len(buf) > MAX_LINE:
                return
            while (newline := buf.find(b"\n")) >= 0:
                line = bytes(buf[:newline]).rstrip(b"\r")
                del buf[: newline + 1]
                with self._lock:
                    self._lines.append(line)
                if not greeted and line.startswith(b"HELLO"):
                    greeted = True
                    reply = self.hello_reply
                else:
                    reply, position = self._reply_for(line, position)
                if not self._act(sock, reply):
                    return

    def _reply_for(self, line: bytes, position: int) -> tuple[Reply, int]:
        script = self.script
        if callable(script):
            return script(line), position
        if position < len(script):
            return script[position], position + 1
        return None, position  # a list script ran out: never answer again

    def _act(self, sock: socket.socket, reply: Reply) -> bool:
        """Perform one reply; False when the connection must close."""
        if reply is None:
            return True
        if isinstance(reply, _Close):
            return False
        if isinstance(reply, Pause):
            return not self._closing.wait(reply.seconds)
        if isinstance(reply, tuple):
            return all(self._act(sock, part) for part in reply)
        sock.sendall(reply)
        return True
