"""The faktoryd daemon end to end: the real executable, real signals, and the server's state."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from daemon import EXECUTABLE, Daemon, wait_exit, write_config
from helpers import wait_for

from faktoryd import Client, Job, Settings


def settings_for(server) -> Settings:
    return Settings.from_url(server.url)


@pytest.fixture
def client(server):
    with Client(settings_for(server)) as c:
        yield c


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXECUTABLE, *args], capture_output=True, text=True, timeout=30, check=False)


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def faktory(client: Client) -> dict:
    return client.info()["faktory"]


def drained(client: Client, queue: str) -> bool:
    info = faktory(client)
    return info["queues"].get(queue, 0) == 0 and info["sets"]["working"] == 0


def test_processes_jobs_pushed_by_client_and_cli(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=3, threads=2, queues=[queue])
    with Daemon(config) as daemon:
        daemon.wait_workers(3)
        jobs = [Job("noop", [i], queue=queue) for i in range(2000)]
        assert client.push_bulk(jobs) == {}
        wait_for(lambda: drained(client, queue), timeout=60, what="2,000 jobs processed")
        info = faktory(client)
        assert info["total_processed"] == 2000 and info["total_failures"] == 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_sigkilled_busy_child_is_replaced_and_its_job_failed_at_once(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=3, threads=1, queues=[queue])
    with Daemon(config) as daemon:
        daemon.wait_workers(3)
        jid = client.perform("nap", 60, queue=queue)
        busy = wait_for(
            lambda: [pid for pid, title in daemon.workers().items() if jid in title], what="the child running it"
        )
        victim = busy[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: len(daemon.workers()) == 3 and victim not in daemon.workers(), timeout=5, what="replacement")
        assert time.monotonic() - killed < 1.5
        retries = wait_for(lambda: faktory(client)["sets"]["retries"] == 1, timeout=5, what="the job FAILed")
        assert retries
        assert faktory(client)["sets"]["working"] == 0
        assert "faktoryd.ChildKilled(SIGKILL)" in daemon.log
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_sigterm_fails_long_jobs_as_shutdown_within_budget(tmp_path: Path, embedded) -> None:
    queue = unique()
    config = write_config(
        tmp_path / "faktory.toml", embedded.url, processes=2, threads=2, queues=[queue], shutdown_timeout=3
    )
    with Client(settings_for(embedded)) as client, Daemon(config) as daemon:
        daemon.wait_workers(2)
        jids = [client.perform("nap", 60, queue=queue) for _ in range(4)]
        wait_for(lambda: len(embedded.reservations()) == 4, timeout=10, what="4 jobs running")
        daemon.signal(signal.SIGTERM)
        code, took = wait_exit(daemon, 10)
        assert code == 0
        assert took < 6.0
        failed = {job["jid"]: job["failure"]["errtype"] for job in embedded.set_jobs("retries")}
        assert failed == dict.fromkeys(jids, "Faktory::Shutdown")
        assert embedded.reservations() == []


def test_idle_sigterm_is_fast_and_strands_nothing(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=2, queues=[queue])
    with Daemon(config) as daemon:
        daemon.wait_workers(2)
        daemon.wait_log("all 2 worker process(es) are ready")
        daemon.signal(signal.SIGTERM)
        started = time.monotonic()
        pushed = 0
        while daemon.proc.poll() is None and time.monotonic() - started < 5:
            client.perform("noop", queue=queue)
            pushed += 1
            time.sleep(0.05)
        code, _ = wait_exit(daemon, 5)
        assert code == 0
        assert time.monotonic() - started < 3.0
    info = faktory(client)
    assert info["sets"]["working"] == 0, "a job was stranded by an abandoned FETCH"
    assert info["total_processed"] + info["queues"].get(queue, 0) == pushed


def test_sigtstp_quiets_every_worker(tmp_path: Path, embedded) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", embedded.url, processes=2, threads=1, queues=[queue])
    with Client(settings_for(embedded)) as client, Daemon(config) as daemon:
        daemon.wait_workers(2)
        daemon.wait_log("all 2 worker process(es) are ready")
        daemon.signal(signal.SIGTSTP)
        wait_for(lambda: all("quiet" in t for t in daemon.workers().values()), what="workers quiet")
        wait_for(
            lambda: [w["state"] for w in embedded.workers().values()] == ["quiet", "quiet"],
            timeout=10,
            what="BEATs report quiet",
        )
        for _ in range(5):
            client.perform("noop", queue=queue)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert embedded.queue_sizes()[queue] == 5
            time.sleep(0.1)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_crash_loop_backs_off_and_stays_responsive(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=3, threads=1, queues=[queue])
    with Daemon(config) as daemon:
        daemon.wait_workers(3)
        for _ in range(50):
            client.perform("exit_now", 1, queue=queue)
        observe = 15.0
        time.sleep(observe)  # the observation window itself: spawns are counted over it
        spawns = daemon.log.count("started worker")
        assert 4 <= spawns <= 3 + 6, f"{spawns} spawns in {observe} s"
        daemon.signal(signal.SIGTERM)
        code, took = wait_exit(daemon, 10)
        assert code == 0 and took < 8
    # every job a dying child took was FAILed by the supervisor, none is left reserved
    wait_for(lambda: faktory(client)["sets"]["working"] == 0, timeout=10, what="no job left in working")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[worker]\nproceses = 2\n", "worker.proceses: unknown key (did you mean worker.processes?)"),
        ("[worker]\nprocesses = 'two'\n", "worker.processes: expected"),
        ("[worker\n", "not valid TOML"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "faktory.toml"
    path.write_text(content + "[app]\nmodules = ['basic']\n")
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_cli("--config", str(missing))
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_app_that_fails_to_import_exits_3(tmp_path: Path, server) -> None:
    (tmp_path / "broken.py").write_text("import faktoryd\nimport no_such_dependency\n")
    config = write_config(tmp_path / "faktory.toml", server.url, modules=("broken",), app_path=tmp_path)
    result = run_cli("--config", str(config))
    assert result.returncode == 3
    assert (
        "cannot import app module 'broken': ModuleNotFoundError: No module named 'no_such_dependency'"
        in result.stderr
    )
    assert "broken.py:2" in result.stderr
    assert "Traceback" not in result.stderr
    check = run_cli("check", "--config", str(config))
    assert check.returncode == 3 and "no_such_dependency" in check.stderr


def test_check_lists_handlers_and_queues(tmp_path: Path, server) -> None:
    config = write_config(tmp_path / "faktory.toml", server.url, queues=["critical", "default"])
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "noop -> basic.noop" in result.stdout
    assert "critical, default (strict)" in result.stdout
