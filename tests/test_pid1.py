"""faktoryd as a container's entrypoint: PID 1 of a PID namespace (``unshare --pid --fork --mount-proc``).

PID 1 is special: the kernel delivers it only the signals it has a handler for, and every orphaned process of
the namespace becomes its child, so it must reap them. Signals are sent from outside the namespace, as
``docker stop`` and the kubelet do, to the daemon's pid as seen from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from daemon import Daemon, _processes, wait_exit, write_config, zombies_of
from helpers import wait_for

from faktoryd import Client, Settings

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def _can_unshare() -> str | None:
    """None when a PID namespace can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "the unshare command (util-linux) is not installed"
    try:
        result = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unshare failed: {exc}"
    if result.returncode != 0:
        return f"unshare cannot create a PID namespace here (needs root or user namespaces): {result.stderr.strip()}"
    return None


_WHY_NOT = _can_unshare()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


class Pid1Daemon(Daemon):
    """``unshare ... faktoryd --config PATH``: ``pid`` is faktoryd (PID 1 inside), ``outer`` is unshare, whose
    exit status is faktoryd's."""

    def __init__(self, config: Path) -> None:
        super().__init__(config, prefix=UNSHARE)
        self.outer = self.proc.pid
        self.pid = wait_for(self._inner, timeout=10, what="faktoryd started inside the namespace")
        namespaced = wait_for(lambda: _nspid(self.pid), timeout=5, what="its namespaced pid")
        assert namespaced[-1] == 1, f"faktoryd is not PID 1 of its namespace: NSpid {namespaced}"

    def _inner(self) -> int | None:
        kids = [pid for pid, (ppid, _, _) in _processes().items() if ppid == self.outer]
        return kids[0] if kids else None

    def stop(self) -> None:
        """SIGKILL unshare's group; killing PID 1 makes the kernel kill everything else in the namespace."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.outer, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


def _nspid(pid: int) -> list[int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return [int(n) for n in line.split()[1:]]
    return None


def unique() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def faktory(client: Client) -> dict:
    return client.info()["faktory"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_signal_reaches_pid1_and_running_jobs_finish(tmp_path: Path, server, signum: int) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=1, queues=[queue])
    with Client(Settings.from_url(server.url)) as client, Pid1Daemon(config) as daemon:
        daemon.wait_workers(2)
        daemon.wait_log("all 2 worker process(es) are ready")
        jid = client.perform("nap", 1.5, queue=queue)
        wait_for(lambda: any(jid in t for t in daemon.workers().values()), what="the job running")
        daemon.signal(signum)
        code, took = wait_exit(daemon, 15)
        assert code == 0, daemon.log[-3000:]
        assert took < 8
        info = faktory(client)
        assert info["total_processed"] == 1 and info["total_failures"] == 0, "the running job was not let finish"
        assert info["sets"]["working"] == 0
        assert f"{signal.Signals(signum).name}: stopping gracefully" in daemon.log


def test_second_term_stops_pid1_at_once_and_fails_the_running_job(tmp_path: Path, server) -> None:
    queue = unique()
    config = write_config(
        tmp_path / "faktory.toml", server.url, processes=1, threads=1, queues=[queue], shutdown_timeout=30
    )
    with Client(Settings.from_url(server.url)) as client, Pid1Daemon(config) as daemon:
        daemon.wait_workers(1)
        jid = client.perform("nap", 60, queue=queue)
        wait_for(lambda: any(jid in t for t in daemon.workers().values()), what="the job running")
        daemon.signal(signal.SIGTERM)
        daemon.wait_log("stopping gracefully")
        daemon.signal(signal.SIGTERM)
        code, took = wait_exit(daemon, 15)
        assert code == 0, daemon.log[-3000:]
        assert took < 8, "the second TERM did not cut the 30 s shutdown_timeout short"
        wait_for(lambda: faktory(client)["sets"]["retries"] == 1, timeout=5, what="the job FAILed for a retry")
        assert faktory(client)["sets"]["working"] == 0


def test_pid1_reaps_orphaned_grandchildren(tmp_path: Path, server) -> None:
    """A handler's subprocess that outlives its parent is re-parented to PID 1: the supervisor must reap it,
    or zombies pile up until the pid table is full."""
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=1, threads=2, queues=[queue])
    with Client(Settings.from_url(server.url)) as client, Pid1Daemon(config) as daemon:
        daemon.wait_workers(1)
        for _ in range(3):
            client.perform("orphan", 1, queue=queue)

        def orphans() -> list[int]:
            adopted = _processes().items()
            return [pid for pid, (ppid, title, _) in adopted if ppid == daemon.pid and title.startswith("sleep")]

        adopted = wait_for(lambda: len(orphans()) == 3 and orphans(), timeout=10, what="3 orphans adopted by PID 1")
        wait_for(lambda: not set(adopted) & set(_processes()), timeout=10, what="the orphans exited and were reaped")
        assert zombies_of(daemon.pid) == []
        assert daemon.log.count("reaped orphaned process") >= 3
        assert faktory(client)["total_processed"] == 3
        daemon.signal(signal.SIGTERM)
        code, _ = wait_exit(daemon, 15)
        assert code == 0


def test_pid1_config_error_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "faktory.toml"
    config.write_text("[worker]\nprocesses = 0\n[app]\nmodules = ['basic']\n")
    with Pid1Daemon(config) as daemon:
        code, _ = wait_exit(daemon, 15)
        assert code == 2
        assert "worker.processes: expected an integer from 1 to 1024, found 0" in daemon.log


def test_term_during_startup_stops_pid1(tmp_path: Path, server) -> None:
    app = tmp_path / "slowapp.py"
    app.write_text("import time\nimport faktoryd\ntime.sleep(3)\n\n@faktoryd.job\ndef work():\n    pass\n")
    config = write_config(tmp_path / "faktory.toml", server.url, processes=1, modules=("slowapp",), app_path=tmp_path)
    with Pid1Daemon(config) as daemon:
        wait_for(daemon.children, timeout=5, what="the short-lived process that imports the app")
        assert "app loaded" not in daemon.log  # the 3 s import is under way
        daemon.signal(signal.SIGTERM)
        code, _ = wait_exit(daemon, 5)
        assert code == 0
