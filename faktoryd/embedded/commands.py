"""One command line in, reply bytes out: the server's ``CommandSet`` over the store.

A handler returns the exact reply bytes, ``END`` (close without a reply) or a ``Pending`` that tells the
connection layer to reply later (a FETCH that blocks). Replies and error texts follow the real 1.10.0
server byte for byte, including its ``internal error`` for bare verbs that slice past the end of the line.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable
from typing import Any, Final, Protocol

from . import gojson
from .gojson import GoJSONError, decode_job, decode_job_list, decode_string_map, decode_struct, go_bytes, go_float
from .gotime import NS_PER_SEC, clock_text, format_ns
from .store import RUNNING, CommandError, Store, Worker

log = logging.getLogger("faktoryd.embedded")

FAKTORY_VERSION: Final = "1.10.0"
CRLF: Final = b"\r\n"
OK: Final = b"+OK\r\n"
NIL: Final = b"$-1\r\n"
EMPTY_MAP: Final = b"$2\r\n{}\r\n"
INTERNAL_ERROR: Final = b"-ERR internal error\r\n"
END: Final = object()
"""Returned for END: close the connection, write nothing."""


class Pending:
    """Reply later: after ``timeout`` seconds with ``$-1``, or earlier with a job pushed to ``queues``."""

    __slots__ = ("queues", "timeout")

    def __init__(self, timeout: float, queues: list[str] | None) -> None:
        self.timeout = timeout
        self.queues = queues


Reply = bytes | Pending | object


class Session(Protocol):
    """What the dispatcher needs to know about the connection a command came from."""

    wid: str
    worker: Worker | None


class RuntimeStats:
    """The ``server`` part of INFO."""

    __slots__ = ("commands", "connections", "started_ns")

    def __init__(self, started_ns: int) -> None:
        self.started_ns = started_ns
        self.connections = 0
        self.commands = 0


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def error(message: str) -> bytes:
    """``-ERR <message>``; raw bytes kept by surrogateescape (echoed payloads) go back out unchanged."""
    try:
        raw = message.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = message.encode("utf-8", "replace")
    return b"-ERR " + raw + CRLF


def payload_text(payload: bytes) -> tuple[str, bool]:
    """Payload bytes as text; ``clean`` is False when they were not valid UTF-8 (Go then uses U+FFFD)."""
    try:
        return payload.decode("utf-8"), True
    except UnicodeDecodeError:
        return payload.decode("utf-8", "surrogateescape"), False


def _slice(line: bytes, start: int) -> bytes:
    """Go's ``cmd[start:]``, which panics (answered as ``internal error``) past the end of the line."""
    if len(line) < start:
        raise IndexError(f"slice bounds out of range [{start}:{len(line)}]")
    return line[start:]


# What Go's strings.TrimSpace trims (unicode.IsSpace), which differs from str.strip()'s idea of space.
_SPACES: Final = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def _cleanse(text: str, limit: int) -> str:
    """FAIL's ``cleanse``: trim Unicode space, ``unknown`` if empty, cut to ``limit`` bytes (may split a rune)."""
    text = text.strip(_SPACES)
    if not text:
        return "unknown"
    if len(text) <= limit // 4 or len(raw := text.encode("utf-8")) <= limit:
        return text
    return raw[:limit].decode("utf-8", "surrogateescape")


def memory_mb() -> int:
    """Resident memory in MiB (the real server reports Go's ``runtime.MemStats.Sys``)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


class Dispatcher:
    """Maps a command line to its reply; the verbs and texts of Faktory 1.10.0's ``CommandSet``."""

    def __init__(self, store: Store, stats: RuntimeStats, *, fetch_timeout: float) -> None:
        self.store = store
        self.stats = stats
        self.fetch_timeout = fetch_timeout
        self.decoder = gojson.Decoder()
        self._handlers: dict[bytes, Callable[[Session, bytes], Reply]] = {
            b"END": self._end,
            b"PUSH": self._push,
            b"PUSHB": self._pushb,
            b"FETCH": self._fetch,
            b"ACK": self._ack,
            b"FAIL": self._fail,
            b"BEAT": self._beat,
            b"INFO": self._info,
            b"FLUSH": self._flush,
            b"MUTATE": self._mutate,
            b"BATCH": self._batch,
            b"TRACK": self._track,
            b"QUEUE": self._queue,
        }

    def dispatch(self, session: Session, line: bytes) -> Reply:
        """Serve one line (without its line terminator)."""
        space = line.find(b" ")
        verb = line if space < 0 else line[:space]
        handler = self._handlers.get(verb)
        if handler is None:
            return b"-ERR unknown command " + verb + CRLF
        self.stats.commands += 1
        try:
            return handler(session, line)
        except CommandError as exc:
            return error(str(exc))
        except IndexError:
            return INTERNAL_ERROR
        except Exception:
            log.exception("internal error serving %r", line[:200])
            return INTERNAL_ERROR

    # ------------------------------------------------------------------ jobs

    def _push(self, session: Session, line: bytes) -> Reply:
        text, clean = payload_text(_slice(line, 5))
        try:
            job, problem, retry_given = decode_job(self.decoder, text, clean=clean)
        except GoJSONError as exc:
            return error(f"invalid JSON: {exc}")
        store = self.store
        if retry_given and store.retry_default_bug:
            store.retry_default = job.retry  # type: ignore[assignment]  # Go writes through the pointer
        if problem:
            return error(f"invalid JSON: {problem}")
        if job.retry is None:
            job.retry = store.retry_default
        store.push(job)
        return OK

    def _pushb(self, session: Session, line: bytes) -> Reply:
        text, clean = payload_text(_slice(line, 6))
        try:
            jobs = decode_job_list(self.decoder, text, clean=clean)
        except GoJSONError as exc:
            return error(f"invalid JSON: {exc}")
        created = format_ns(self.store.now())
        failed: dict[str, str] = {}
        for job in jobs:
            if not job.created_at:
                job.created_at = created
            if job.retry is None:
                job.retry = self.store.retry_default
            try:
                self.store.push(job)
            except CommandError as exc:
                failed[job.jid] = str(exc)
        if not failed:
            return EMPTY_MAP
        return bulk(go_bytes({jid: failed[jid] for jid in sorted(failed)}))

    def _fetch(self, session: Session, line: bytes) -> Reply:
        worker = session.worker
        if worker is not None and worker.state != RUNNING:
            return Pending(self.fetch_timeout, None)  # quiet or terminated: no jobs, after the block time
        names = line.decode("utf-8", "surrogateescape").split(" ")[1:]
        if not names:
            return error("must call fetch with at least one queue")
        paused = self.store.paused
        active = [name for name in names if name not in paused] if paused else names
        if not active:
            return Pending(self.fetch_timeout, None)
        data = self.store.fetch(active, session.wid)
        if data is not None:
            return bulk(data)
        return Pending(self.fetch_timeout, active)

    def _ack(self, session: Session, line: bytes) -> Reply:
        payload = _slice(line, 4)
        text, clean = payload_text(payload)
        try:
            fields = decode_string_map(self.decoder, text, clean=clean)
        except GoJSONError:
            fields = None
        if fields is None or "jid" not in fields:
            return b"-ERR invalid ACK " + payload + CRLF
        self.store.ack(fields["jid"])
        return OK

    def _fail(self, session: Session, line: bytes) -> Reply:
        payload = _slice(line, 5)
        text, clean = payload_text(payload)
        try:
            fields = decode_struct(self.decoder, text, gojson.FAIL_PAYLOAD, clean=clean)
        except GoJSONError:
            return b"-ERR invalid FAIL " + payload + CRLF
        jid = fields.get("jid", "")
        if not jid:
            return error("missing JID")
        errtype = _cleanse(fields.get("errtype", ""), 100)
        message = _cleanse(fields.get("message", ""), 1000)
        backtrace = (fields.get("backtrace") or [])[:50]
        self.store.fail(jid, errtype, message, backtrace)
        return OK

    # ------------------------------------------------------------------ workers

    def _beat(self, session: Session, line: bytes) -> Reply:
        payload = _slice(line, 5)
        text, clean = payload_text(payload)
        try:
            fields = decode_struct(self.decoder, text, gojson.CLIENT_BEAT, clean=clean)
        except GoJSONError:
            return b"-ERR invalid BEAT " + payload + CRLF
        wid = fields.get("wid", "")
        worker = self.store.beat(wid, fields.get("current_state", ""), fields.get("rss_kb", 0))
        if worker is None:
            return error(f"unknown worker {wid}")
        if worker.state == RUNNING:
            return OK
        return _STATE_REPLIES[worker.state]

    # ------------------------------------------------------------------ admin

    def _info(self, session: Session, line: bytes) -> Reply:
        return bulk(go_bytes(self.info()))

    def info(self) -> dict[str, Any]:
        """The INFO document, keys in the order the real server sends them."""
        now = self.store.now()
        return {
            "now": format_ns(now),
            "server_utc_time": clock_text(now),
            "faktory": self.store.info(),
            "server": {
                "description": "Faktory",
                "faktory_version": FAKTORY_VERSION,
                "uptime": (now - self.stats.started_ns) // NS_PER_SEC,
                "connections": self.stats.connections,
                "command_count": self.stats.commands,
                "used_memory_mb": memory_mb(),
            },
        }

    def _flush(self, session: Session, line: bytes) -> Reply:
        self.store.flush()
        return OK

    def _end(self, session: Session, line: bytes) -> Reply:
        return END

    def _batch(self, session: Session, line: bytes) -> Reply:
        return b"-ERR batch subsystem is only available in Faktory Enterprise\r\n"

    def _track(self, session: Session, line: bytes) -> Reply:
        return b"-ERR tracking subsystem is only available in Faktory Enterprise\r\n"

    def _mutate(self, session: Session, line: bytes) -> Reply:
        parts = line.split(b" ")
        if len(parts) != 2:
            return error("invalid format")
        text, clean = payload_text(parts[1])
        try:
            op = decode_struct(self.decoder, text, gojson.OPERATION, clean=clean)
        except GoJSONError as exc:
            return error(str(exc))
        self.store.mutate(op.get("cmd", ""), op.get("target", ""), op.get("filter"))
        return OK

    def _queue(self, session: Session, line: bytes) -> Reply:
        args = line.decode("utf-8", "surrogateescape").split(" ")[1:]
        subcommand = args[0].upper()  # IndexError for a bare QUEUE, as Go's qs[0] panics
        names = args[1:]
        if subcommand in ("PAUSE", "RESUME", "REMOVE"):
            if not names:
                raise IndexError("QUEUE subcommand without names")
            {"PAUSE": self.store.pause, "RESUME": self.store.resume, "REMOVE": self.store.remove}[subcommand](names)
            return OK
        if subcommand == "LATENCY":
            if names[:1] == ["*"]:
                return error("QUEUE LATENCY does not support wildcards")
            latency = self.store.latency(names)
            body = ",".join(f"{gojson.estr(name)}:{go_float(latency[name])}" for name in sorted(latency))
            return bulk(gojson.finish("{" + body + "}"))
        return error(f"no such QUEUE subcommand: {subcommand}")


_STATE_REPLIES: Final = {1: bulk(b'{"state":"quiet"}'), 2: bulk(b'{"state":"terminate"}')}
