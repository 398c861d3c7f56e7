"""Handlers of the resource-hygiene tests (tests/test_hygiene.py): every path a job can take through a worker."""

from __future__ import annotations

import asyncio


def noop(*args: object) -> None:
    """ACKed."""


def fail(n: int) -> None:
    """FAILed with a traceback (the FAIL path builds a backtrace)."""
    raise ValueError(f"hygiene failure {n}")


async def async_noop(n: int) -> int:
    """Run on the processor's event loop; its (ignored) return value is an int."""
    await asyncio.sleep(0)
    return n


def chunky(n: int) -> bytearray:
    """Allocates 64 KiB and returns it: the worker must drop the value (it is not sent anywhere)."""
    return bytearray(64 * 1024)
