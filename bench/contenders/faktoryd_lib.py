"""faktoryd's Worker used as a library, without the supervisor: one ``faktoryd.Worker`` per process.

    python -m bench.contenders.faktoryd_lib work URL QUEUE PROCESSES THREADS

The daemon (``faktoryd --config``) is what users run; this shows what its supervisor channel costs.
"""

from __future__ import annotations

import logging
import os
import sys

import faktoryd
from bench.contenders import probe


def noop(*args: object) -> None:
    if args:
        probe.started(args[0])


def main(argv: list[str]) -> int:
    url, queue, processes, threads = argv[1], argv[2], int(argv[3]), int(argv[4])
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    logging.basicConfig(level=logging.WARNING)

    def done(job: faktoryd.Job) -> None:
        if job.args:
            probe.acked(job.args[0])

    worker = faktoryd.Worker(
        faktoryd.Settings.from_url(url),
        [queue],
        {"noop": noop},
        threads=threads,
        on_job_done=done if probe.enabled() else None,
    )
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
