"""The Faktory work protocol without I/O (sans-IO, in the manner of h11).

Commands are encoded to the exact bytes the server reads: one line, ``VERB payload\\r\\n``, compact JSON.
Replies are parsed incrementally from whatever byte chunks the socket delivers (the server writes a bulk
reply in three separate writes), so the connection layer only moves bytes. Nothing here touches sockets,
clocks or threads.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Final

from .errors import ProtocolError

PROTOCOL_VERSION: Final = 2
CRLF: Final = b"\r\n"

# A header line (`$n`, `:n`) is short; a simple or error line may echo a command's payload back
# (`-ERR invalid ACK <payload>`), so it gets a generous but finite bound.
_MAX_HEADER: Final = 32
_MAX_LINE: Final = 16 * 1024 * 1024
_MAX_BULK: Final = 512 * 1024 * 1024
_GROW: Final = 256 * 1024  # past this many pending bytes the parser's buffer grows in place


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error line: ``-ERR message`` (code ``ERR``) or ``-CODE message`` from server middleware."""

    code: str
    message: str


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
"""Returned by :meth:`ReplyParser.next_reply` while a reply is still incomplete."""

# What a reply parses to: simple string -> str, bulk -> bytes, null bulk -> None, integer -> int.
Reply = str | bytes | int | None | ErrorReply


def _unencodable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# Built once: ``json.dumps`` with options builds a JSONEncoder, and that a C encoder, on every call, which
# costs more than encoding a small command. No circular-reference markers: a cyclic value fails either way.
_encode = c_make_encoder(None, _unencodable, encode_basestring_ascii, None, ":", ",", False, False, False)


def dumps(obj: Any) -> str:
    """Compact JSON as the server expects it on one line (ASCII-escaped, so no raw newline can appear).

    A value JSON cannot carry (a set, an object, NaN) raises TypeError naming the value and where it is.
    """
    try:
        return "".join(_encode(obj, 0))
    except (TypeError, ValueError) as exc:
        path, value = _find_unencodable(obj, "payload")
        raise TypeError(
            f"{path} = {value!r:.100} ({type(value).__name__}) cannot be sent as JSON: "
            "use str, int, float, bool, None, list or dict with str keys"
        ) from exc


def _find_unencodable(value: Any, path: str) -> tuple[str, Any]:
    """The first value under ``value`` that JSON cannot encode, with its path (``("", None)`` if none)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key is not None and not isinstance(key, str | int | float | bool):
                return f"{path} key", key
            found = _find_unencodable(item, f"{path}[{key!r}]")
            if found[0]:
                return found
        return "", None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_unencodable(item, f"{path}[{index}]")
            if found[0]:
                return found
        return "", None
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if value is None or isinstance(value, str | int | float | bool):
        return "", None
    return path, value


class ReplyParser:
    """Incremental parser of server replies.

    Feed it bytes as they arrive and call :meth:`next_reply` until it returns ``NEED_DATA``. Bytes that are not
    a valid reply raise :class:`ProtocolError` as soon as they are seen to be wrong; a parser that raised is
    out of step with the stream and must be discarded with its connection.

    This runs twice per job in a worker, so the usual replies (``+OK``, a bulk job) take short paths; the
    buffer is an immutable ``bytes`` that a chunk usually replaces whole, so a payload is sliced out once.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._buf = bytes(data)
        elif type(buf) is bytearray or len(buf) - pos + len(data) > _GROW:
            # A big reply arriving in many chunks grows in place (copying it whole for each chunk is quadratic).
            grown = bytearray(buf[pos:]) if type(buf) is bytes else buf
            if grown is buf and pos:
                del grown[:pos]
            grown += data
            self._buf = grown
        else:
            self._buf = buf[pos:] + data
        self._pos = 0

    @property
    def pending(self) -> int:
        """How many received bytes are not yet consumed."""
        return len(self._buf) - self._pos

    def next_reply(self) -> Reply | _NeedData:
        """Return the next complete reply, or ``NEED_DATA``."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return NEED_DATA
        if buf.startswith(b"+OK\r\n", pos):
            self._pos = pos + 5
            return "OK"
        kind = buf[pos]
        limit = _MAX_LINE if kind in b"+-" else _MAX_HEADER
        end = buf.find(b"\r\n", pos, pos + limit + 2)
        if end < 0:
            if kind not in b"+-$:":
                raise ProtocolError(f"reply starts with {buf[pos:pos + 1]!r}, not one of + - $ :")
            if len(buf) - pos > limit + 1:
                raise ProtocolError(f"reply line longer than {limit} bytes without CRLF")
            if b"\n" in buf[pos:] or (kind in b"$:" and not _looks_numeric(buf[pos + 1 :])):
                raise ProtocolError(f"malformed reply line {_preview(buf[pos:])}")
            return NEED_DATA
        line = buf[pos + 1 : end]
        if b"\n" in line or b"\r" in line:
            raise ProtocolError(f"malformed reply line {_preview(buf[pos:end])}")
        after = end + 2
        if kind == 0x24:  # $
            size = int(line) if line.isdigit() and len(line) <= 18 else _integer(line)
            if size == -1:
                self._pos = after
                return None
            if size < 0 or size > _MAX_BULK:
                raise ProtocolError(f"bad bulk length {size}")
            stop = after + size
            if len(buf) < stop + 2:
                return NEED_DATA
            if buf[stop : stop + 2] != b"\r\n":
                raise ProtocolError(f"bulk reply of {size} bytes is not followed by CRLF")
            self._pos = stop + 2
            return buf[after:stop] if type(buf) is bytes else bytes(buf[after:stop])
        if kind == 0x2B:  # +
            self._pos = after
            return _text(line)
        if kind == 0x2D:  # -
            self._pos = after
            code, _, message = _text(line).partition(" ")
            return ErrorReply(code, message)
        if kind == 0x3A:  # :
            self._pos = after
            return _integer(line)
        raise ProtocolError(f"reply starts with {bytes([kind])!r}, not one of + - $ :")


def _looks_numeric(partial: bytes | bytearray) -> bool:
    """Whether an unterminated `$`/`:` header could still become valid (digits, optional leading minus, CR)."""
    body = bytes(partial).rstrip(b"\r")
    if body.startswith(b"-"):
        body = body[1:]
    return body.isdigit() or body == b""


def _integer(line: bytes) -> int:
    digits = line[1:] if line.startswith(b"-") else line
    if not digits.isdigit() or len(digits) > 18:
        raise ProtocolError(f"bad integer in reply header {_preview(line)}")
    return int(line)


def _text(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"reply line is not UTF-8: {_preview(line)}") from exc


def _preview(data: bytes | bytearray) -> str:
    return repr(bytes(data[:60])) + ("..." if len(data) > 60 else "")


# ---------------------------------------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True)
class Greeting:
    """What the server's ``+HI`` said: protocol version and, when a password is required, salt and iterations."""

    version: int
    salt: str | None = None
    iterations: int = 1

    @property
    def needs_password(self) -> bool:
        return self.salt is not None


def parse_greeting(reply: Reply) -> Greeting:
    """Parse the ``+HI {...}`` greeting that opens every connection."""
    if not isinstance(reply, str) or not reply.startswith("HI "):
        raise ProtocolError(f"expected the +HI greeting, got {reply!r:.80}; is this a Faktory server?")
    try:
        data = json.loads(reply[3:])
        version = data["v"]
        salt = data.get("s")
        iterations = data.get("i", 1)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"malformed +HI greeting {reply!r:.80}") from exc
    if not isinstance(version, int) or not isinstance(iterations, int):
        raise ProtocolError(f"malformed +HI greeting {reply!r:.80}")
    if salt is not None and not isinstance(salt, str):
        raise ProtocolError(f"malformed +HI greeting {reply!r:.80}")
    return Greeting(version, salt, iterations)


def password_hash(password: str, salt: str, iterations: int) -> str:
    """The iterated SHA-256 the server checks: ``sha256^iterations(password + salt)`` as lowercase hex."""
    digest = (password + salt).encode("utf-8")
    for _ in range(max(iterations, 1)):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def hello(
    greeting: Greeting,
    *,
    password: str | None = None,
    wid: str | None = None,
    hostname: str | None = None,
    pid: int | None = None,
    labels: Sequence[str] = (),
) -> bytes:
    """The HELLO line answering ``greeting``.

    A worker connection carries its identity (wid, hostname, pid, labels); a producer sends only ``v``.
    Always ``v: 2``, because the server verifies the iterated hash only for v >= 2.
    """
    payload: dict[str, Any] = {}
    if wid:
        payload["hostname"] = hostname or ""
        payload["wid"] = wid
        payload["pid"] = pid if pid is not None else 0
        payload["labels"] = list(labels)
    payload["v"] = PROTOCOL_VERSION
    if greeting.needs_password:
        assert greeting.salt is not None
        payload["pwdhash"] = password_hash(password or "", greeting.salt, greeting.iterations)
    return command("HELLO", payload)


# ---------------------------------------------------------------------------------------------- commands


def command(verb: str, payload: Any = None) -> bytes:
    """Encode ``VERB <json>``; a payload of None sends the bare verb."""
    if payload is None:
        return verb.encode("ascii") + CRLF
    return f"{verb} {dumps(payload)}\r\n".encode("ascii")


def push(job: Mapping[str, Any]) -> bytes:
    return command("PUSH", job)


def push_bulk(jobs: Iterable[Mapping[str, Any]]) -> bytes:
    return command("PUSHB", list(jobs))


def fetch(queues: Sequence[str]) -> bytes:
    """``FETCH q1 q2 ...``: the server pops from the first non-empty queue in this order."""
    if not queues:
        raise ValueError("FETCH needs at least one queue name")
    for name in queues:
        _check_queue_name(name)
    return ("FETCH " + " ".join(queues) + "\r\n").encode("ascii")


def ack(jid: str) -> bytes:
    if type(jid) is str:  # the worker's case, once per job
        return b'ACK {"jid":' + encode_basestring_ascii(jid).encode("ascii") + b"}\r\n"
    return command("ACK", {"jid": jid})


def fail(jid: str, errtype: str, message: str, backtrace: Sequence[str] = ()) -> bytes:
    """FAIL a reserved job. The server keeps 100 bytes of errtype, 1000 of message and 50 backtrace lines."""
    return command(
        "FAIL", {"jid": jid, "errtype": errtype, "message": message, "backtrace": list(backtrace[:50])}
    )


def beat(wid: str, *, rss_kb: int | None = None, current_state: str | None = None) -> bytes:
    payload: dict[str, Any] = {"wid": wid}
    if rss_kb is not None:
        payload["rss_kb"] = int(rss_kb)
    if current_state:
        payload["current_state"] = current_state
    return command("BEAT", payload)


def parse_beat(reply: Reply) -> str:
    """The worker state a BEAT reply carries: ``running``, ``quiet`` or ``terminate``.

    The server sends ``+OK`` while running and a sticky bulk ``{"state":"quiet"}`` afterwards; old
    documentation shows the same JSON as a simple string, which is accepted too.
    """
    if reply == "OK":
        return "running"
    if isinstance(reply, bytes | str):
        try:
            state = json.loads(reply)["state"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"unexpected BEAT reply {reply!r:.80}") from exc
        if state in ("quiet", "terminate"):
            return str(state)
    raise ProtocolError(f"unexpected BEAT reply {reply!r:.80}")


def mutate(operation: Mapping[str, Any]) -> bytes:
    """``MUTATE <json>``. The server splits this line on spaces, so spaces inside strings become ``\\u0020``.

    Compact JSON has no space outside strings, so every space left is inside one.
    """
    return ("MUTATE " + dumps(operation).replace(" ", "\\u0020") + "\r\n").encode("ascii")


def queue(subcommand: str, names: Sequence[str]) -> bytes:
    """``QUEUE PAUSE|RESUME|REMOVE|LATENCY names...``; ``*`` means every queue (not for LATENCY)."""
    if not names:
        raise ValueError(f"QUEUE {subcommand} needs at least one queue name")
    for name in names:
        if name != "*":
            _check_queue_name(name)
    return f"QUEUE {subcommand} {' '.join(names)}\r\n".encode("ascii")


def _check_queue_name(name: str) -> None:
    if not name or not name.isascii() or any(ch in name for ch in " \r\n"):
        raise ValueError(f"invalid queue name {name!r}: queue names must match [a-zA-Z0-9._-]+")


INFO: Final = b"INFO\r\n"
FLUSH: Final = b"FLUSH\r\n"
END: Final = b"END\r\n"
