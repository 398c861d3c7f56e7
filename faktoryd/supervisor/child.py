"""What a worker process runs after the supervisor forks it: import the app, then run a Worker.

The child reports over its pipe (see :mod:`channel`): ready once it has said HELLO, each job's start and end,
and a ping every second from a thread of its own, which is also the supervisor's watchdog: a child stuck
holding the GIL stops pinging and is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from ..config import Config
from ..errors import AuthenticationError
from ..jobs import Job
from ..worker import Worker
from ..worker.heartbeat import rss_kb
from . import channel
from .appload import AppLoadError, load_app
from .notify import set_title
from .startup import die_with_parent

log = logging.getLogger("faktoryd.child")

PING_EVERY = 1.0


class Reporter:
    """Writes channel messages to the supervisor and keeps the process title current.

    Called from processor threads; each message is a single small ``os.write``, atomic on a pipe. The title
    is refreshed by the ping thread once a second, not per job: a title update costs more than a no-op job.
    """

    def __init__(self, fd: int, slot: int) -> None:
        self.fd = fd
        self.slot = slot
        self.running: dict[str, str] = {}
        self.jobs = 0
        self.quiet = False
        self.registered = False  # until the worker has said HELLO, the title says "starting"
        self._title = ""
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: PDEATHSIG stops us
            os.write(self.fd, data)

    def ready(self, wid: str) -> None:
        self.registered = True
        self.send(channel.ready(wid))
        self.title()

    def started(self, job: Job) -> None:
        with self._lock:
            self.running[job.jid] = job.jobtype
        self.send(channel.started(job.jid, job.jobtype))

    def done(self, job: Job) -> None:
        with self._lock:
            self.running.pop(job.jid, None)
            self.jobs += 1
        self.send(channel.done(job.jid))

    def quieted(self) -> None:
        self.quiet = True
        self.title()

    def ping(self) -> None:
        self.send(channel.ping(len(self.running), rss_kb(), self.jobs))

    def title(self) -> None:
        """``starting``, ``idle``, ``quiet``, or ``busy JOBTYPE JID`` (the latest job, ``+N`` others), when it
        changed."""
        with self._lock:
            busy = len(self.running)
            latest = next(reversed(self.running.items()), None)
        if latest is not None:
            jid, jobtype = latest
            state = f"busy {jobtype} {jid}" + (f" (+{busy - 1})" if busy > 1 else "")
        elif not self.registered:
            state = "starting"
        else:
            state = "quiet" if self.quiet else "idle"
        title = f"faktoryd worker {self.slot}: {state}"
        if title != self._title:
            self._title = title
            set_title(title)


def run_child(config: Config, slot: int, fd: int, quiet: bool) -> int:
    """The body of a worker process. Returns its exit code: 0 done, 3 the app failed to load here."""
    parent = os.getppid()
    _die_with_parent(parent)
    reporter = Reporter(fd, slot)
    reporter.title()
    pinger = threading.Thread(target=_ping_loop, args=(reporter, parent), name="faktoryd-ping", daemon=True)
    pinger.start()
    try:
        registry = load_app(config)
    except AppLoadError as exc:
        log.error("worker %d: %s", slot, exc)
        return 3
    worker_config = config.worker
    worker = Worker(
        config.settings(),
        worker_config.weights or worker_config.queues,
        registry,
        threads=worker_config.threads,
        queue_order=worker_config.queue_order,
        labels=worker_config.labels,
        shutdown_timeout=worker_config.shutdown_timeout,
        job_timeout=worker_config.job_timeout or None,
        heartbeat_interval=worker_config.heartbeat_interval,
        on_job_start=reporter.started,
        on_job_done=reporter.done,
        on_ready=lambda w: reporter.ready(w.wid),
        on_quiet=[lambda w: reporter.quieted()],
    )
    if quiet:
        reporter.quiet = True
        worker.quiet()
    try:
        worker.run()
    except AuthenticationError as exc:  # a configuration problem: one line, and the supervisor's backoff
        log.error("worker %d cannot log in: %s", slot, exc)
        return 2
    if worker.stop_reason in ("terminate", "halt"):
        reporter.send(channel.leaving(worker.stop_reason))
    return 0


def _ping_loop(reporter: Reporter, parent: int) -> None:
    while True:
        reporter.ping()
        reporter.title()
        time.sleep(PING_EVERY)
        if os.getppid() != parent:  # PDEATHSIG is Linux-only; elsewhere notice the orphaning this way
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _die_with_parent(parent: int) -> None:
    """SIGTERM (a graceful stop) when the supervisor dies."""
    die_with_parent()
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
