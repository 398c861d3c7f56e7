"""A worker process for the signal tests: ``python run.py '<json options>'``.

Options: url, wid, queues, threads, shutdown_timeout, heartbeat_interval, job_timeout, handlers (a list of
"module:function" specs). It logs to stderr and exits with run()'s outcome: 0 after a clean stop.
"""

from __future__ import annotations

import json
import logging
import sys

import faktoryd


def main() -> None:
    options = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(threadName)s %(levelname)s %(message)s"
    )
    settings = faktoryd.Settings.from_url(options.pop("url"))
    handlers = faktoryd.Registry.from_specs(options.pop("handlers"))
    faktoryd.run_worker(settings, handlers=handlers, **options)


if __name__ == "__main__":
    main()
