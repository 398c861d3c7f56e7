"""Helpers for the worker tests: servers, workers in threads and subprocesses, reading the server's state.

Everything here works against the embedded server and against a real one (``FAKTORY_URL``): state is read
over the protocol (INFO, MUTATE requeue + FETCH), and worker states are set with the BEAT ``current_state``
trick (PROTOCOL.md 4.8).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faktoryd import Client, Connection, Settings, Worker, protocol

TESTS_DIR = Path(__file__).resolve().parent.parent
REAL_URL = os.environ.get("FAKTORY_URL")
FAST_FETCH = 0.3
FETCH_BLOCK = 2.0 if REAL_URL else FAST_FETCH
"""How long an idle FETCH blocks on the server of :func:`fast_server`: what a worker that quiets may still wait."""


def fast_server(**options: Any) -> Iterator[Any]:
    """Body of a fixture like ``server``, but an embedded server answers an idle FETCH after 0.3 s instead of 2 s
    (unless ``options`` say otherwise), so workers stop fast in tests that are not about FETCH timing."""
    if REAL_URL:
        from conftest import RealServer

        real = RealServer(REAL_URL)
        real.flush()
        yield real
        return
    from faktoryd.embedded import EmbeddedServer

    options.setdefault("fetch_timeout", FAST_FETCH)
    with EmbeddedServer(**options) as srv:
        yield srv


def settings_for(server: Any, **options: Any) -> Settings:
    return Settings.from_url(server.url, **options)


def sets(client: Client) -> dict[str, int]:
    """Sizes of the server's sets: working, retries, scheduled, dead."""
    return client.info()["faktory"]["sets"]


def queue_sizes(client: Client) -> dict[str, int]:
    return client.info()["faktory"]["queues"]


def beat_state(server: Any, wid: str, state: str) -> None:
    """Quiet or terminate worker ``wid`` the way the web UI does, portably: a BEAT with its wid."""
    with Connection(settings_for(server)) as conn:
        conn.request(protocol.beat(wid, current_state=state))


def fetch_raw(server: Any, queue: str) -> dict[str, Any] | None:
    """FETCH one job over a producer connection and ACK it (to inspect it); None if the queue stays empty."""
    with Connection(settings_for(server)) as conn:
        reply = conn.request(protocol.fetch([queue]))
        if reply is None:
            return None
        assert isinstance(reply, bytes)
        job = json.loads(reply)
        conn.request(protocol.ack(job["jid"]))
        return job


def take_from_set(server: Any, client: Client, target: str, jid: str, queue: str) -> dict[str, Any]:
    """The job ``jid`` as stored in the retries/scheduled/dead set: requeue it and FETCH it from ``queue``."""
    client.mutate("requeue", target, jids=[jid])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = fetch_raw(server, queue)
        if job is not None:
            assert job["jid"] == jid, f"unexpected job {job['jid']} in {queue}"
            return job
    raise AssertionError(f"{jid} did not come back from the {target} set")


@contextmanager
def running(worker: Worker, timeout: float = 30.0) -> Iterator[threading.Thread]:
    """Run ``worker`` in a thread; on exit stop it (not gracefully) and join it. Errors of run() are raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-worker", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop(graceful=False)
        thread.join(timeout)
        assert not thread.is_alive(), "worker did not stop"
    if errors:
        raise errors[0]


class WorkerProcess:
    """A worker in a subprocess (tests/worker_apps/run.py), killed on exit whatever happens."""

    def __init__(self, server: Any, **options: Any) -> None:
        options.setdefault("handlers", ["worker_apps.handlers:noop"])
        options["url"] = server.url
        self.wid: str = options.setdefault("wid", os.urandom(8).hex())
        self._log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", delete=False)  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS_DIR / "worker_apps" / "run.py"), json.dumps(options)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()
        os.unlink(self._log.name)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (with the worker's log) if it is still running after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout} s; log:\n{self.log()}") from None

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the worker's log:\n{self.log()}")
            time.sleep(0.02)
