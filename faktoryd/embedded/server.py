"""The listener, the handshake, the per-connection command loop, the timers and the thread-safe controls.

Everything runs on one asyncio event loop in one daemon thread. Connections are ``asyncio.Protocol``
objects with their own line buffer (faster than streams); commands on a connection are served strictly in
order, and a FETCH that blocks holds back the lines behind it, as the real server's goroutine does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import random
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import quote

from ..protocol import password_hash
from . import gojson
from .commands import END, NIL, Dispatcher, Pending, RuntimeStats, bulk, payload_text
from .gotime import NS_PER_SEC, format_ns
from .store import QUIET, STATE_NAMES, TERMINATE, Store, Waiter, Worker

log = logging.getLogger("faktoryd.embedded")

T = TypeVar("T")
_GREETING: Final = b'+HI {"v":2}\r\n'
_SHUTDOWN: Final = b"-ERR shutdown in progress\r\n"
_STOP_GRACE: Final = 0.1
_CONTROL_TIMEOUT: Final = 30.0


class Clock:
    """Wall-clock Unix nanoseconds plus an offset that ``advance`` moves forward (time warp)."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def now(self) -> int:
        return time.time_ns() + self.offset_ns


# One receive buffer shared by every connection of the loop: each read is copied out before the next one.
# (The default transport reads into a fresh 256 KiB bytes object per recv, which costs more than serving
# a command on a small machine.)
_RECV_SIZE: Final = 64 * 1024


class Connection(asyncio.BufferedProtocol):
    """One client connection: handshake, then one command at a time."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scanned = 0  # bytes of ``buffer`` known to hold no newline
        self.wid = ""
        self.worker: Worker | None = None
        self.ready = False  # handshake completed
        self.closing = False  # we closed it: serve nothing more
        self.lost = False  # the transport is gone
        self.finished = False
        self.counted = False  # included in INFO's connections
        self.blocked = False  # a FETCH reply is pending: later lines wait behind it
        self.write_paused = False
        self.waiter: Waiter | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.corked: list[bytes] | None = None  # replies held back while serving several lines of one read
        self.salt = ""
        self.iterations = 1

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        core = self.core
        core.connections.add(self)
        if core.password:
            self.iterations = random.randint(4000, 8095)
            self.salt = format(secrets.randbits(63), "x")
            greeting = b'+HI {"v":2,"i":%d,"s":"%s"}\r\n' % (self.iterations, self.salt.encode())
        else:
            greeting = _GREETING
        transport.write(greeting)  # type: ignore[attr-defined]
        self.timer = core.loop.call_later(core.handshake_timeout, self._handshake_expired)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.core.recv_view

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        data = self.core.recv_view[:nbytes].tobytes()
        if not self.buffer and not self.blocked and not self.write_paused and data.find(b"\n") == len(data) - 1:
            # The usual case: exactly one whole line per read.
            self._line(data[:-2] if data.endswith(b"\r\n") else data[:-1])
            return
        self.buffer += data
        self._drain()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.closing = self.closing or not self.ready
        if not self.ready and self.timer is not None:
            self.timer.cancel()
        if not self.blocked:
            self._finish()  # else when the blocked FETCH returns, as the real server's goroutine does

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop reading its commands (Go blocks in Write)."""
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()
        self.core.loop.call_soon(self._drain)

    # ------------------------------------------------------------------ line handling

    def _drain(self) -> None:
        """Serve the complete lines in the buffer until one blocks or the connection ends.

        The replies of a pipelining client's lines go out in one write (one send syscall, one wakeup of the
        client) rather than one each."""
        buffer = self.buffer
        self.corked = corked = []
        try:
            while not self.blocked and not self.write_paused and not self.closing:
                newline = buffer.find(b"\n", self.scanned)
                if newline < 0:
                    self.scanned = len(buffer)
                    break
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                self.scanned = 0
                self._line(line[:-1] if line.endswith(b"\r") else line)
                if len(corked) > 64:
                    self._uncork()  # may pause writing: a client that does not read stops being served
                    self.corked = corked = []
        finally:
            self._uncork()
        if self.lost and not self.blocked:
            self._finish()

    def _uncork(self) -> None:
        corked, self.corked = self.corked, None
        if corked:
            self._write(b"".join(corked) if len(corked) > 1 else corked[0])

    def _line(self, line: bytes) -> None:
        if not self.ready:
            self._hello(line)
            return
        core = self.core
        if core.stopping:
            self._write(_SHUTDOWN)
            self.close()
            return
        reply = core.dispatcher.dispatch(self, line)
        if type(reply) is bytes:
            self._write(reply)
        elif reply is END:
            self.close()
        else:
            self._block(reply)  # type: ignore[arg-type]

    def _write(self, data: bytes) -> None:
        corked = self.corked
        if corked is not None:
            corked.append(data)
        elif not self.lost and self.transport is not None:
            self.transport.write(data)

    # ------------------------------------------------------------------ handshake

    def _handshake_expired(self) -> None:
        self.timer = None
        if not self.ready:
            log.debug("handshake deadline passed, closing")
            self.close()

    def _hello(self, line: bytes) -> None:
        core = self.core
        if not line.startswith(b"HELLO {"):
            log.debug("invalid preamble %r", line[:80])
            self.close()
            return
        text, clean = payload_text(line[5:])
        try:
            hello = gojson.decode_struct(core.dispatcher.decoder, text, gojson.CLIENT_DATA, clean=clean)
        except gojson.GoJSONError as exc:
            log.info("invalid client data in HELLO: %s", exc)
            self.close()
            return
        if core.password:
            iterations = self.iterations if hello.get("v", 0) >= 2 else 1
            expected = password_hash(core.password, self.salt, iterations).encode()
            given = hello.get("pwdhash", "").encode("utf-8", "surrogatepass")
            if not hmac.compare_digest(given, expected):
                self._write(b"-ERR Invalid password\r\n")
                self.close()
                return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.ready = True
        wid = hello.get("wid", "")
        if wid:
            self.wid = wid
            self.worker = core.store.attach(self, hello)
        self._write(b"+OK\r\n")
        stats = core.stats
        stats.connections += 1
        self.counted = True
        if stats.connections > core.max_connections:
            self._write(b"-ERR too many connections: %d\r\n" % stats.connections)
            self.close()

    # ------------------------------------------------------------------ blocking FETCH

    def _block(self, pending: Pending) -> None:
        self.blocked = True
        loop = self.core.loop
        if pending.queues is None:
            self.timer = loop.call_later(pending.timeout, self._unblock, NIL)
            return
        self.waiter = self.core.store.wait(pending.queues, self.wid, self._deliver)
        self.timer = loop.call_later(pending.timeout, self._fetch_expired)

    def _deliver(self, data: bytes) -> None:
        """A job arrived for the blocked FETCH (already reserved by the store, even if we are gone)."""
        self.waiter = None
        if self.timer is not None:
            self.timer.cancel()
        self._unblock(bulk(data))

    def _fetch_expired(self) -> None:
        if self.waiter is not None:
            self.core.store.cancel_wait(self.waiter)
            self.waiter = None
        self._unblock(NIL)

    def _unblock(self, reply: bytes) -> None:
        self.timer = None
        self.blocked = False
        if not self.closing:
            self._write(reply)
        if self.buffer or self.lost:
            self.core.loop.call_soon(self._drain)

    def cancel_pending(self) -> None:
        """Forget a blocked FETCH without replying (server stop or outage: the process is gone)."""
        if self.waiter is not None:
            self.core.store.cancel_wait(self.waiter)
            self.waiter = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.blocked = False

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close from the server side; a FETCH still blocked stays armed (see ``Store.wait``)."""
        self.closing = True
        self._uncork()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent replies."""
        self.closing = True
        self.cancel_pending()
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        """The connection's goroutine would return now: unregister it."""
        if self.finished:
            return
        self.finished = True
        core = self.core
        core.connections.discard(self)
        if self.counted:
            core.stats.connections -= 1
        if self.wid:
            core.store.detach(self, self.wid)
        if not core.connections and core.all_closed is not None:
            core.all_closed.set()


class Core:
    """The server's state on its loop: store, dispatcher, listener, connections and timers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, options: EmbeddedServer) -> None:
        self.loop = loop
        self.clock = Clock()
        self.store = Store(self.clock.now, retry_default_bug=options.retry_default_bug)
        self.stats = RuntimeStats(self.clock.now())
        self.dispatcher = Dispatcher(self.store, self.stats, fetch_timeout=options.fetch_timeout)
        self.password = options.password
        self.handshake_timeout = options.handshake_timeout
        self.max_connections = options.max_connections
        self.worker_ttl_ns = int(options.worker_ttl * NS_PER_SEC)
        self.ssl_context = options.ssl_context
        self.host = options.host
        self.port = options.port
        self.connections: set[Connection] = set()
        self.recv_view = memoryview(bytearray(_RECV_SIZE))
        self.listener: asyncio.base_events.Server | None = None
        self.stopping = False
        self.all_closed: asyncio.Event | None = None
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.intervals = {
            "Scheduled": options.scheduled_interval,
            "Retries": options.retries_interval,
            "Dead": options.dead_interval,
            "Busy": options.busy_interval,
            "Workers": options.workers_interval,
        }

    async def listen(self) -> None:
        self.listener = await self.loop.create_server(
            lambda: Connection(self),
            self.host,
            self.port,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.handshake_timeout if self.ssl_context else None,
            reuse_address=True,
            backlog=1024,
        )
        self.port = self.listener.sockets[0].getsockname()[1]

    def start_tasks(self) -> None:
        for name, interval in self.intervals.items():
            self.timers[name] = self.loop.call_later(interval, self._tick, name)

    def _tick(self, name: str) -> None:
        try:
            self.run_task(name)
        finally:
            if not self.stopping:
                self.timers[name] = self.loop.call_later(self.intervals[name], self._tick, name)

    def run_task(self, name: str) -> None:
        for connection in self.store.run_task(name, self.worker_ttl_ns):
            connection.close()  # type: ignore[attr-defined]

    def drop_connections(self) -> None:
        for connection in list(self.connections):
            connection.abort()

    async def stop(self, grace: float) -> None:
        self.stopping = True
        for handle in self.timers.values():
            handle.cancel()
        if self.listener is not None:
            self.listener.close()
        if any(c.ready for c in self.connections):
            # Like the real server's pause before exiting: a command arriving now gets "shutdown in progress".
            self.all_closed = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.all_closed.wait(), grace)
        self.drop_connections()
        await asyncio.sleep(0)  # let connection_lost callbacks run


class EmbeddedServer:
    """An in-memory, in-process Faktory server that is faithful to Faktory 1.10.0 on the wire.

    Use it as a context manager, or ``start()``/``stop()``. The control methods are thread-safe: they
    run on the server's loop and wait for the result.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str | None = None,
        *,
        fetch_timeout: float = 2.0,
        handshake_timeout: float = 2.0,
        scheduled_interval: float = 5.0,
        retries_interval: float = 5.0,
        busy_interval: float = 15.0,
        workers_interval: float = 15.0,
        dead_interval: float = 60.0,
        worker_ttl: float = 60.0,
        max_connections: int = 2000,
        ssl_context: ssl.SSLContext | None = None,
        retry_default_bug: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.password = password
        self.fetch_timeout = fetch_timeout
        self.handshake_timeout = handshake_timeout
        self.scheduled_interval = scheduled_interval
        self.retries_interval = retries_interval
        self.busy_interval = busy_interval
        self.workers_interval = workers_interval
        self.dead_interval = dead_interval
        self.worker_ttl = worker_ttl
        self.max_connections = max_connections
        self.ssl_context = ssl_context
        self.retry_default_bug = retry_default_bug
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: Core | None = None
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EmbeddedServer:
        """Bind (port 0 picks a free port), start the loop thread; returns once connections are accepted."""
        with self._state_lock:
            if self._thread is not None:
                raise RuntimeError("EmbeddedServer already started")
            loop = asyncio.new_event_loop()
            started: concurrent.futures.Future[None] = concurrent.futures.Future()
            thread = threading.Thread(target=self._run, args=(loop, started), name="faktoryd-embedded", daemon=True)
            self._loop, self._thread = loop, thread
            thread.start()
            try:
                started.result(timeout=_CONTROL_TIMEOUT)
            except BaseException:
                thread.join(_CONTROL_TIMEOUT)
                self._loop = self._thread = self._core = None
                raise
        log.debug("listening on %s", self._display_url())
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            core = Core(loop, self)
            loop.run_until_complete(core.listen())
            core.start_tasks()
            self._core = core
            self.port = core.port
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, grace: float = _STOP_GRACE) -> None:
        """Close the listener and every connection, stop the thread. Safe to call more than once.

        For up to ``grace`` seconds (only while connections are open) a command arriving on a connection is
        answered ``-ERR shutdown in progress`` and that connection closed, as the real server does while
        it stops; then every remaining connection is dropped.
        """
        with self._state_lock:
            loop, thread, core = self._loop, self._thread, self._core
            if loop is None or thread is None or core is None:
                return
            self._loop = self._thread = None
            if thread.is_alive():
                with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                    asyncio.run_coroutine_threadsafe(core.stop(grace), loop).result(grace + _CONTROL_TIMEOUT)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_CONTROL_TIMEOUT)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """Where clients connect, with the password (percent-encoded) when there is one."""
        scheme = "tcp+tls" if self.ssl_context is not None else "tcp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{host}:{self.port}"

    def _display_url(self) -> str:
        scheme = "tcp+tls" if self.ssl_context is not None else "tcp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # ------------------------------------------------------------------ controls

    def _call(self, fn: Callable[[Core], T]) -> T:
        """Run ``fn(core)`` on the loop thread and return its result."""
        loop, core, thread = self._loop, self._core, self._thread
        if loop is None or core is None or thread is None:
            raise RuntimeError("EmbeddedServer is not running")
        if threading.current_thread() is thread:
            return fn(core)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(core))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(_CONTROL_TIMEOUT)

    @property
    def connection_count(self) -> int:
        """Live connections past the handshake (INFO's ``connections``)."""
        core = self._core
        return core.stats.connections if core is not None else 0

    def blocked_fetches(self) -> list[str]:
        """The wid of every FETCH blocked on the server right now: tests wait for none to be in flight
        before asserting that a quiet worker takes no new job."""

        def waiting(core: Core) -> list[str]:
            unique = {id(w): w for waiters in core.store.waiters.values() for w in waiters if w.active}
            return [w.wid for w in unique.values()]

        return self._call(waiting)

    def set_worker_state(self, wid: str, state: str) -> None:
        """What the web UI's POST /busy does: signal ``quiet`` or ``terminate`` to a wid, or ``all``."""
        target = {"quiet": QUIET, "terminate": TERMINATE}.get(state)
        if target is None:
            raise ValueError(f"worker state must be 'quiet' or 'terminate', not {state!r}")
        self._call(lambda core: core.store.signal(wid, target))

    def workers(self) -> dict[str, dict[str, Any]]:
        """The registered workers by wid."""

        def snapshot(core: Core) -> dict[str, dict[str, Any]]:
            return {
                wid: {
                    "state": STATE_NAMES[w.state],
                    "hostname": w.hostname,
                    "pid": w.pid,
                    "labels": list(w.labels) if w.labels is not None else None,
                    "rss_kb": w.rss_kb,
                    "last_heartbeat": w.beat_ns / NS_PER_SEC,
                    "started_at": w.started_ns / NS_PER_SEC,
                    "connections": len(w.connections),
                }
                for wid, w in core.store.workers.items()
            }

        return self._call(snapshot)

    def queue_sizes(self) -> dict[str, int]:
        """Every known queue and its length (INFO's ``faktory.queues``)."""
        return self._call(lambda core: {name: len(q) for name, q in sorted(core.store.queues.items())})

    def queue_jobs(self, name: str) -> list[dict[str, Any]]:
        """The jobs of a queue, decoded, in the order FETCH would return them."""
        return self._call(lambda core: [json.loads(data) for _job, data in core.store.queues.get(name, ())])

    def set_jobs(self, name: str) -> list[dict[str, Any]]:
        """The jobs of ``scheduled``, ``retries`` or ``dead``, decoded, in score order."""

        def entries(core: Core) -> list[dict[str, Any]]:
            sorted_set = core.store.sorted_set(name)
            if sorted_set is None:
                raise ValueError(f"no sorted set named {name!r}; use scheduled, retries or dead")
            return [json.loads(entry.data) for entry in sorted_set.entries()]

        return self._call(entries)

    def reservations(self) -> list[dict[str, Any]]:
        """The working set: reserved jobs with wid and RFC3339 ``reserved_at``/``expires_at``."""

        def working(core: Core) -> list[dict[str, Any]]:
            return [
                {
                    "jid": res.jid,
                    "wid": res.wid,
                    "reserved_at": format_ns(res.reserved_ns),
                    "expires_at": format_ns(res.expires_ns),
                    "job": json.loads(res.job.encode()),
                }
                for res in sorted(core.store.working.values(), key=lambda r: (r.expires_ns, r.seq))
            ]

        return self._call(working)

    def info(self) -> dict[str, Any]:
        """The document INFO returns (without counting a command)."""
        return self._call(lambda core: json.loads(gojson.go_bytes(core.dispatcher.info())))

    def begin_outage(self) -> None:
        """Drop every connection without a reply and refuse new ones; all data is kept."""

        def outage(core: Core) -> None:
            if core.listener is not None:
                core.listener.close()
                core.listener = None
            core.drop_connections()

        self._call(outage)

    def end_outage(self) -> None:
        """Accept connections again, on the same port."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("EmbeddedServer is not running")

        async def relisten() -> None:
            core = self._core
            if core is not None and core.listener is None:
                await core.listen()

        asyncio.run_coroutine_threadsafe(relisten(), loop).result(_CONTROL_TIMEOUT)

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward: due times, reservation expiry and worker TTL see the jump."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")

        def warp(core: Core) -> None:
            core.clock.offset_ns += int(seconds * NS_PER_SEC)

        self._call(warp)

    def run_tasks(self) -> None:
        """Run every background task once now: Scheduled, Retries, Dead, Busy, Workers."""

        def run(core: Core) -> None:
            for name in ("Scheduled", "Retries", "Dead", "Busy", "Workers"):
                core.run_task(name)

        self._call(run)
