"""Handlers the worker tests load by ``"module:function"`` spec, in-process and in subprocess workers."""

from __future__ import annotations

import time

import faktoryd


def noop(*args: object) -> None:
    """Does nothing: for throughput and exactly-once tests."""


def boom(message: str) -> None:
    raise ValueError(message)


def nap(seconds: float) -> None:
    """Blocks in C (``time.sleep``): an async exception cannot break it before it returns."""
    time.sleep(seconds)


def spin(seconds: float) -> None:
    """Pure Python busy work: an async exception stops it at once."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(100))


def halt() -> None:
    raise faktoryd.WorkerHalt("halt job", ack=True)
