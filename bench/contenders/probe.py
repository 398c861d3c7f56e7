"""Latency probes shared by the Python contenders: a job's first argument is the monotonic time (ns) it was
pushed; ``started``/``acked`` send the elapsed time to the harness as one UDP datagram each.

CLOCK_MONOTONIC is system-wide on Linux, so times from different processes compare directly.
"""

from __future__ import annotations

import os
import socket
import time

_ADDRESS = ("127.0.0.1", int(os.environ.get("BENCH_PROBE_PORT", "0") or 0))
_SOCK: socket.socket | None = None


def enabled() -> bool:
    return bool(_ADDRESS[1])


def _send(kind: bytes, pushed: object) -> None:
    global _SOCK  # noqa: PLW0603 - one socket per process, made on first use (after any fork)
    if not _ADDRESS[1] or not isinstance(pushed, int):
        return
    if _SOCK is None:
        _SOCK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _SOCK.sendto(b"%s %d" % (kind, time.monotonic_ns() - pushed), _ADDRESS)


def started(pushed: object) -> None:
    _send(b"S", pushed)


def acked(pushed: object) -> None:
    _send(b"A", pushed)
