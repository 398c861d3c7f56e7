"""A handler that reads the job it runs for: ``faktoryd.current_job()`` (the Job) and
``faktoryd.current_context()`` (the Job plus the worker's id and the time left before the job's deadline).

    faktoryd push Report daily --custom '{"tenant": "acme"}'

It works in any code the handler calls, without passing the job around, and in an async handler's tasks.
"""

from __future__ import annotations

import logging

import faktoryd

log = logging.getLogger("examples.current_job")


def tenant() -> str:
    """Code deep inside the app can still see which job it is working for."""
    job = faktoryd.current_job()
    return (job.custom or {}).get("tenant", "nobody")


@faktoryd.job("Report", timeout=600)
def report(kind: str) -> None:
    ctx = faktoryd.current_context()
    log.info(
        "%s report for %s: job %s on queue %s, attempt %d, %.0f s left before its deadline",
        kind,
        tenant(),
        ctx.jid,
        ctx.queue,
        ctx.retry_count + 1,
        ctx.remaining(),
    )
