"""The worker library without the daemon: one process, a few threads, the same handlers.

    python examples/worker.py                   # the server from FAKTORY_URL, else tcp://localhost:7419

This is what each of the daemon's worker processes runs. Use it to embed a worker in your own process; for
production prefer ``faktoryd --config ...`` (supervised processes, restarts, reloads, systemd, health checks).
TERM or Ctrl-C stops it gracefully (running jobs get ``shutdown_timeout`` seconds, then are FAILed so Faktory
retries them); a second one stops it at once. TSTP quiets it; "Quiet" and "Terminate" in the web UI work too.
"""

from __future__ import annotations

import logging

# Importing the modules registers their handlers in faktoryd.default_registry.
import async_handler  # noqa: F401
import consumer  # noqa: F401
import current_job  # noqa: F401

import faktoryd

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(threadName)s] %(message)s")
    worker = faktoryd.Worker(queues=["default"], threads=4, shutdown_timeout=10)
    worker.run()  # until a signal, or Terminate in the web UI
