"""A loopback TCP proxy that injects network faults between a client and a Faktory server.

Tests put it in front of a server (embedded or real) and break the path on purpose, from the test thread,
at any moment: cut every connection, refuse new ones, delay bytes, stall them (half-open), forward a request
and drop the client before its reply. It speaks no protocol beyond "a client request is a line ending in
``\\n``", so it works the same in front of any server.

    with FaultProxy(server.host, server.port) as proxy:
        client = Client(Settings.from_url(proxy.url_for(server.url)))
        client.info()
        proxy.cut_all()                 # the pooled connection dies
        client.info()                   # ...and the client reconnects

Design: one accept thread, plus one thread per connection that moves bytes both ways with ``select`` and a
short tick, so every control takes effect within a tick and every blocking call is bounded. Controls only set
shared state (under a lock) or ``shutdown()`` sockets, which is safe from another thread; each socket is closed
by the thread that owns it. ``close()`` joins every thread, so no socket or thread outlives a test.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

TICK = 0.02
"""Seconds between checks of the shared state in every loop: the latency of a control."""
CHUNK = 65536
IO_TIMEOUT = 5.0
"""Bound on any single send, and on connecting upstream."""
JOIN_TIMEOUT = 5.0
MAX_CONNECTIONS = 128
"""Connections beyond this many live ones are closed on accept, so a runaway client cannot exhaust threads."""
DRAIN_TIMEOUT = 2.0
"""How long a connection cut after a request keeps reading the server's reply (discarded) before closing."""
DIRECTIONS = ("downstream", "upstream", "both")


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port``, with faults injected on demand.

    Attributes safe to read at any time: ``port``, ``url``, ``connections`` (live), ``accepted`` (total),
    ``requests`` (the verbs of the client lines forwarded upstream, in order, HELLO included).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._pipes: set[_Pipe] = set()
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._requests: list[bytes] = []
        # fault state, read by the pipe threads under the lock
        self._delay = 0.0
        self._stall_up = False
        self._stall_down = False
        self._mid_reply = False
        self._cut_after = 0
        self._refuse_until: float | None = None  # None: accepting; math.inf: until accept_again()
        self._listener: socket.socket | None = None
        self.port = 0
        self._listener = self._listen()
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"faultproxy-accept-{self.port}", daemon=True)
        self._acceptor.start()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]} live={self.connections}>"

    # ------------------------------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT``: the proxy's own address, with no password."""
        return f"tcp://127.0.0.1:{self.port}"

    def url_for(self, target_url: str) -> str:
        """``target_url`` with its host and port replaced by the proxy's, keeping scheme, password, namespace."""
        parts = urlsplit(target_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    # ------------------------------------------------------------------------------------------ counters

    @property
    def connections(self) -> int:
        """Connections being forwarded right now."""
        with self._lock:
            return len(self._pipes)

    @property
    def accepted(self) -> int:
        """Connections accepted since the proxy started (refused and over-limit ones not counted)."""
        with self._lock:
            return self._accepted

    @property
    def requests(self) -> list[bytes]:
        """The verb (first word) of every client line forwarded to the server, in order."""
        with self._lock:
            return list(self._requests)

    # ------------------------------------------------------------------------------------------ faults

    def cut_all(self) -> int:
        """Close every live connection, both sides, now. Returns how many were cut.

        Returns once their threads have closed the sockets, so ``connections`` is 0 afterwards.
        """
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cut()
        for pipe in pipes:
            pipe.thread.join(JOIN_TIMEOUT)
        return len(pipes)

    def refuse(self, seconds: float | None = None) -> None:
        """Refuse new connections (ECONNREFUSED) for ``seconds``, or until :meth:`accept_again` when None.

        The listening socket is closed now and opened again on the same port later. Live connections are
        not touched; :meth:`cut_all` them too for a full outage.
        """
        with self._lock:
            self._refuse_until = math.inf if seconds is None else time.monotonic() + seconds
            listener, self._listener = self._listener, None
        if listener is not None:
            _stop_listening(listener)

    def accept_again(self) -> None:
        """End a refusal now: listen again on the same port."""
        with self._lock:
            self._refuse_until = None
            if self._listener is None and not self._closing.is_set():
                self._listener = self._listen()

    @property
    def refusing(self) -> bool:
        with self._lock:
            return self._listener is None

    def delay(self, seconds: float) -> None:
        """Hold every chunk, both directions, for ``seconds`` before forwarding it (0 stops delaying)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay = float(seconds)

    def stall(self, direction: str = "downstream") -> None:
        """Stop forwarding in ``direction`` (downstream = server to client, upstream, or both).

        Sockets stay open and nothing flows: a half-open path, as behind a dead NAT or a hung peer. It applies
        to live connections and to new ones until :meth:`unstall`.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        with self._lock:
            self._stall_down = self._stall_down or direction in ("downstream", "both")
            self._stall_up = self._stall_up or direction in ("upstream", "both")

    def stall_mid_reply(self) -> None:
        """Forward only the first half of the next server chunk (of 2 bytes or more), then stall downstream.

        The client holds a partial reply (half a ``+OK``, half a bulk header) that never completes until
        :meth:`unstall`, which forwards the held rest.
        """
        with self._lock:
            self._mid_reply = True

    def unstall(self) -> None:
        """Resume forwarding both ways, held bytes first; cancels a pending :meth:`stall_mid_reply`."""
        with self._lock:
            self._stall_up = self._stall_down = self._mid_reply = False

    def cut_after_request(self, count: int = 1) -> None:
        """For the next ``count`` client requests: forward the request, then close the client's side before
        any reply byte reaches it. The server still gets the line, answers it (the answer is discarded) and
        sees the connection close. HELLO lines do not count: this fault is for commands.
        """
        with self._lock:
            self._cut_after = count

    def reset(self) -> None:
        """Clear every fault (no delay, no stall, no pending cut, accepting)."""
        with self._lock:
            self._delay = 0.0
            self._cut_after = 0
        self.unstall()
        self.accept_again()

    # ------------------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop accepting, close every connection and join every thread (idempotent)."""
        self._closing.set()
        with self._lock:
            listener, self._listener = self._listener, None
            pipes = list(self._pipes)
        if listener is not None:
            _stop_listening(listener)
        for pipe in pipes:
            pipe.cut()
        self._acceptor.join(JOIN_TIMEOUT)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        alive = [t.name for t in [self._acceptor, *threads] if t.is_alive()]
        if alive:
            raise RuntimeError(f"FaultProxy threads did not stop: {alive}")

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # the old port may have connections in TIME_WAIT (or still live) when listening again
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            with self._lock:
                listener = self._listener
                if listener is None and self._refuse_until is not None and time.monotonic() >= self._refuse_until:
                    self._refuse_until = None
                    with contextlib.suppress(OSError):
                        listener = self._listener = self._listen()
            if listener is None:
                self._closing.wait(TICK)
                continue
            try:
                readable, _, _ = select.select([listener], [], [], TICK)
            except (OSError, ValueError):  # closed by refuse() or close() meanwhile
                continue
            if not readable:
                continue
            with self._lock:
                if self._listener is not listener:
                    continue
                try:
                    sock, _ = listener.accept()
                except OSError:
                    continue
                if len(self._pipes) >= MAX_CONNECTIONS:
                    sock.close()
                    continue
                self._accepted += 1
                pipe = _Pipe(self, sock, self._accepted)
                self._pipes.add(pipe)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(pipe.thread)
                pipe.thread.start()  # under the lock: cut_all() and close() may join it as soon as it is listed

    def _take_cut_after(self) -> bool:
        with self._lock:
            if self._cut_after > 0:
                self._cut_after -= 1
                return True
            return False

    def _take_mid_reply(self) -> bool:
        with self._lock:
            if self._mid_reply and not self._stall_down:
                self._mid_reply = False
                self._stall_down = True
                return True
            return False

    def _state(self) -> tuple[float, bool, bool]:
        with self._lock:
            return self._delay, self._stall_up, self._stall_down

    def _record(self, verb: bytes) -> None:
        with self._lock:
            self._requests.append(verb)

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)


class _Pipe:
    """One proxied connection and the thread that forwards it. Only that thread closes its sockets."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.client.settimeout(IO_TIMEOUT)
        self.upstream: socket.socket | None = None
        self.held = bytearray()  # server bytes held back by stall_mid_reply
        self._cut = threading.Event()
        self._head = bytearray()  # the start of the client line in progress, for its verb
        self._last_verb = b""
        self.thread = threading.Thread(target=self._run, name=f"faultproxy-{proxy.port}-conn-{number}", daemon=True)

    def cut(self) -> None:
        """Ask the thread to close both sides; shutdown() wakes its select at once."""
        self._cut.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _stopping(self) -> bool:
        return self._cut.is_set() or self.proxy._closing.is_set()

    def _run(self) -> None:
        try:
            try:
                self.upstream = socket.create_connection(self.proxy.target, timeout=IO_TIMEOUT)
            except OSError:
                return
            self.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._forward()
        except OSError:
            pass  # a peer went away or a send timed out: the connection ends, like a real network path
        finally:
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            self.proxy._forget(self)

    def _forward(self) -> None:
        client, upstream = self.client, self.upstream
        assert upstream is not None
        while not self._stopping():
            _, stall_up, stall_down = self.proxy._state()
            if not stall_down and self.held:
                client.sendall(self.held)
                self.held.clear()
            watch = [s for s, stalled in ((client, stall_up), (upstream, stall_down)) if not stalled]
            if not watch:
                self._cut.wait(TICK)
                continue
            readable, _, _ = select.select(watch, [], [], TICK)
            # a stall set while select waited must hold these bytes too: stall() promises "from now on"
            _, stall_up, stall_down = self.proxy._state()
            for sock in readable:
                if self._stopping():
                    return
                if stall_up if sock is client else stall_down:
                    continue
                data = sock.recv(CHUNK)
                if not data:
                    return
                if sock is client:
                    if not self._upstream_chunk(data):
                        return
                else:
                    self._downstream_chunk(data)

    def _wait_delay(self) -> None:
        delay, _, _ = self.proxy._state()
        if delay > 0:
            self._cut.wait(delay)

    def _upstream_chunk(self, data: bytes) -> bool:
        """Forward client bytes; False when this connection must end (cut after a request)."""
        self._note_requests(data)
        self._wait_delay()
        if self._stopping():
            return False
        assert self.upstream is not None
        self.upstream.sendall(data)
        if data.endswith(b"\n") and self._last_verb != b"HELLO" and self.proxy._take_cut_after():
            self._drop_client_keep_server()
            return False
        return True

    def _downstream_chunk(self, data: bytes) -> None:
        self._wait_delay()
        if self._stopping():
            return
        if len(data) >= 2 and self.proxy._take_mid_reply():
            half = len(data) // 2
            self.client.sendall(data[:half])
            self.held += data[half:]
            return
        _, _, stall_down = self.proxy._state()
        if stall_down or self.held:  # stalled while this chunk was in flight: hold it
            self.held += data
            return
        self.client.sendall(data)

    def _note_requests(self, data: bytes) -> None:
        """Record the verb of every client line completed by this chunk."""
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline + 1
            if len(self._head) < 16:
                self._head += data[start : min(end, start + 16 - len(self._head))]
            if newline < 0:
                return
            self._last_verb = bytes(self._head).split(b" ", 1)[0].strip()
            self.proxy._record(self._last_verb)
            self._head.clear()
            start = end

    def _drop_client_keep_server(self) -> None:
        """Close the client now; half-close towards the server and read (discard) its reply until it closes,
        so the server surely processes the request and nothing is reset under it."""
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)
        self.client.close()
        upstream = self.upstream
        assert upstream is not None
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while not self.proxy._closing.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([upstream], [], [], TICK)
            if readable and not upstream.recv(CHUNK):
                return


def _stop_listening(listener: socket.socket) -> None:
    """Stop listening now. A plain close() is not enough while the accept thread is inside select() on the
    socket: select holds a reference, so the port keeps accepting (then resets) until select returns.
    shutdown() of a listening socket stops it at once on Linux and wakes the select."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
