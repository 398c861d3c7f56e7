"""The pipe from each child to the supervisor: one short text line per event, without I/O here.

A child reports what the supervisor needs to keep every job accounted for: which jids it is running (so a
crash can be turned into FAILs at once), that it is alive (the watchdog), and why it is leaving. Each
message is one ``os.write`` of less than PIPE_BUF bytes, so lines from several threads never interleave.
The supervisor reads the pipes every 100 ms and when a child dies, so a write never wakes it.

    R <wid>                   ready: the worker said HELLO to the server
    S <jid> <jobtype>         started a job (sent before the handler runs)
    D <jid>                   done: the job's ACK or FAIL was accepted by the server
    P <busy> <rss_kb> <jobs>  ping (alive), with busy threads, memory and jobs run so far
    X <reason>                leaving on purpose: terminate (told by the server), halt, idle-exit
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_MESSAGE: Final = 512  # well under PIPE_BUF (4096), so a write is atomic


@dataclass(frozen=True, slots=True)
class Ready:
    wid: str


@dataclass(frozen=True, slots=True)
class Started:
    jid: str
    jobtype: str


@dataclass(frozen=True, slots=True)
class Done:
    jid: str


@dataclass(frozen=True, slots=True)
class Ping:
    busy: int
    rss_kb: int
    jobs: int


@dataclass(frozen=True, slots=True)
class Leaving:
    reason: str


Message = Ready | Started | Done | Ping | Leaving


def _clean(text: str, limit: int) -> str:
    return text.replace("\n", " ").replace("\r", " ")[:limit]


def ready(wid: str) -> bytes:
    return f"R {_clean(wid, 100)}\n".encode()


def started(jid: str, jobtype: str) -> bytes:
    return f"S {_clean(jid, 200).replace(' ', '_')} {_clean(jobtype, 200)}\n".encode()


def done(jid: str) -> bytes:
    return f"D {_clean(jid, 200).replace(' ', '_')}\n".encode()


def ping(busy: int, rss_kb: int, jobs: int) -> bytes:
    return f"P {busy} {rss_kb} {jobs}\n".encode()


def leaving(reason: str) -> bytes:
    return f"X {_clean(reason, 200)}\n".encode()


class Reader:
    """Splits the bytes read from one child's pipe into messages; garbage lines are skipped, not fatal."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > 4 * MAX_MESSAGE:
            self._buf = b""
        out: list[Message] = []
        for line in lines:
            message = parse(line.decode("utf-8", "replace"))
            if message is not None:
                out.append(message)
        return out


def parse(line: str) -> Message | None:
    kind, _, rest = line.partition(" ")
    try:
        if kind == "S":
            jid, _, jobtype = rest.partition(" ")
            return Started(jid, jobtype)
        if kind == "D":
            return Done(rest)
        if kind == "P":
            busy, rss, jobs = rest.split()
            return Ping(int(busy), int(rss), int(jobs))
        if kind == "R":
            return Ready(rest)
        if kind == "X":
            return Leaving(rest)
    except ValueError:
        return None
    return None
