"""The worker: fetch jobs, run their handlers, report ACK or FAIL; one :class:`Worker` per process.

See :mod:`faktoryd.worker.worker` for how the pieces fit: processors (:mod:`.processor`), the heartbeat
(:mod:`.heartbeat`), the deadline watchdog (:mod:`.watchdog`) and the lifecycle state machine
(:mod:`.lifecycle`).
"""

from .errors import JobTimeout, Shutdown, WorkerHalt
from .lifecycle import State
from .middleware import Hook, Middleware
from .worker import Worker, run_worker

__all__ = ["Hook", "JobTimeout", "Middleware", "Shutdown", "State", "Worker", "WorkerHalt", "run_worker"]
