"""An ``async def`` handler: the worker thread that fetched the job runs it to completion on an event loop of
its own, so ``await`` works as usual inside it (an HTTP client, an async database driver, ``asyncio.gather``).

    faktoryd push FetchAll 3       ->  three "downloads" run concurrently inside one job

A time limit or a shutdown cancels the task (``asyncio.CancelledError`` at the current ``await``), and the job
is FAILed as ``faktoryd.JobTimeout`` or ``Faktory::Shutdown``.
"""

from __future__ import annotations

import asyncio
import logging

import faktoryd

log = logging.getLogger("examples.async_handler")


async def download(number: int) -> int:
    await asyncio.sleep(0.1)  # stands in for network I/O
    return number * 100


@faktoryd.job("FetchAll", timeout=30)
async def fetch_all(count: int = 3) -> None:
    sizes = await asyncio.gather(*(download(n) for n in range(1, count + 1)))
    log.info("fetched %d pages concurrently, %d bytes in all", len(sizes), sum(sizes))
