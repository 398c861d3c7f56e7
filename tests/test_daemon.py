"""The faktoryd daemon end to end: the real executable, real signals, and the server's state."""

from __future__ import annotations

import contextlib
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
        assert time.monotonic() - killed < 1.0
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
        wait_for(lambda: not embedded.blocked_fetches(), timeout=5, what="FETCHes in flight returned")
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


def test_watchdog_kills_a_child_stuck_holding_the_gil(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(
        tmp_path / "faktory.toml", server.url, processes=1, threads=1, queues=[queue], watchdog_timeout=3
    )
    with Daemon(config) as daemon:
        (first,) = daemon.wait_workers(1)
        jid = client.perform("hog_gil", queue=queue)
        wait_for(lambda: first not in daemon.workers(), timeout=15, what="the stuck child killed")
        daemon.wait_workers(1)
        wait_for(lambda: faktory(client)["sets"]["retries"] == 1, timeout=10, what="its job FAILed")
        assert "watchdog" in daemon.log and jid in daemon.log
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_max_jobs_per_child_recycles_one_at_a_time(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(
        tmp_path / "faktory.toml", server.url, processes=2, threads=1, queues=[queue], max_jobs_per_child=20
    )
    with Daemon(config) as daemon:
        original = set(daemon.wait_workers(2))
        assert client.push_bulk([Job("noop", [i], queue=queue) for i in range(200)]) == {}
        wait_for(lambda: drained(client, queue), timeout=60, what="jobs processed")
        wait_for(lambda: not original & set(daemon.workers()), timeout=30, what="both originals recycled")
        assert faktory(client)["total_failures"] == 0
        assert "recycling it" in daemon.log
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_max_memory_recycles_a_grown_child(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(
        tmp_path / "faktory.toml", server.url, processes=1, threads=1, queues=[queue], max_memory_mb=100
    )
    with Daemon(config) as daemon:
        (first,) = daemon.wait_workers(1)
        client.perform("grow", 150, queue=queue)
        wait_for(lambda: first not in daemon.workers(), timeout=20, what="the grown child recycled")
        daemon.wait_workers(1)
        assert faktory(client)["total_failures"] == 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_ttin_and_ttou_resize_the_pool(tmp_path: Path, server) -> None:
    config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=1)
    with Daemon(config) as daemon:
        daemon.wait_workers(2)
        daemon.signal(signal.SIGTTIN)
        daemon.wait_workers(3)
        daemon.signal(signal.SIGTTOU)  # one at a time: a signal sent while the same one is pending is merged
        daemon.wait_workers(2)
        daemon.signal(signal.SIGTTOU)
        daemon.wait_workers(1)
        daemon.signal(signal.SIGTTOU)  # never below one process
        daemon.wait_log("SIGTTOU: the pool is already at one process")
        daemon.signal(signal.SIGUSR1)
        daemon.wait_log("faktoryd-ping")  # a stack dump names every thread
        assert len(daemon.workers()) == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_hup_reloads_new_code_without_losing_jobs(tmp_path: Path, server, client) -> None:
    queue = unique()
    ledger = tmp_path / "ledger.txt"
    app = tmp_path / "reloadable.py"
    code = (
        "import time\nimport faktoryd\n\n@faktoryd.job\ndef work(ledger, seconds):\n"
        "    time.sleep(seconds)\n    with open(ledger, 'a') as f:\n        f.write('{version}\\n')\n"
    )
    app.write_text(code.format(version="v1"))
    config = write_config(
        tmp_path / "faktory.toml", server.url, processes=2, threads=1, queues=[queue], modules=("reloadable",),
        app_path=tmp_path,
    )
    with Daemon(config) as daemon:
        old = set(daemon.wait_workers(2))
        client.perform("work", str(ledger), 2, queue=queue)  # running across the reload
        wait_for(lambda: faktory(client)["sets"]["working"] == 1, what="the long job started")
        app.write_text(code.format(version="v2"))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: not old & set(daemon.workers()), timeout=30, what="every worker replaced")
        daemon.wait_workers(2)
        for _ in range(4):
            client.perform("work", str(ledger), 0, queue=queue)
        wait_for(lambda: drained(client, queue), timeout=20, what="jobs after the reload processed")
        lines = ledger.read_text().split()
        assert lines[0] == "v1" and lines[1:] == ["v2"] * 4
        info = faktory(client)
        assert info["total_failures"] == 0 and info["total_processed"] == 5
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_hup_with_a_broken_app_keeps_the_old_workers(tmp_path: Path, server) -> None:
    app = tmp_path / "fragile.py"
    app.write_text("import faktoryd\n\n@faktoryd.job\ndef work():\n    pass\n")
    config = write_config(tmp_path / "faktory.toml", server.url, processes=1, modules=("fragile",), app_path=tmp_path)
    with Daemon(config) as daemon:
        old = set(daemon.wait_workers(1))
        app.write_text("import faktoryd\nraise RuntimeError('half-deployed')\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reload failed, keeping the running app")
        assert "RuntimeError: half-deployed" in daemon.log
        assert set(daemon.workers()) == old
        config.write_text(config.read_text() + "\n[bogus]\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reload failed, keeping the running configuration")
        assert set(daemon.workers()) == old
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_sd_notify_ready_status_watchdog_stopping(tmp_path: Path, server) -> None:
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.5)
        config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=1)
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        seen: list[str] = []

        def receive_until(field: str, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not any(line == field or line.startswith(field) for line in seen):
                assert time.monotonic() < deadline, f"no {field} in {seen}"
                with contextlib.suppress(TimeoutError):
                    seen.extend(sock.recv(4096).decode().splitlines())

        with Daemon(config, env=env) as daemon:
            receive_until("READY=1", 20)
            assert len(daemon.workers()) == 2
            receive_until("STATUS=", 5)
            receive_until("WATCHDOG=1", 5)
            daemon.signal(signal.SIGTERM)
            receive_until("STOPPING=1", 5)
            assert daemon.wait(10) == 0
        assert f"MAINPID={daemon.pid}" in seen


def test_children_stop_when_the_supervisor_dies(tmp_path: Path, server, client) -> None:
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=1, queues=[queue])
    with Daemon(config) as daemon:
        children = set(daemon.wait_workers(2))
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(5)

        def gone() -> bool:
            return not any(os.path.exists(f"/proc/{pid}") and "faktoryd worker" in _title(pid) for pid in children)

        wait_for(gone, timeout=10, what="orphaned workers stopped")


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_json_logs_one_object_per_line(tmp_path: Path, server, client) -> None:
    import json

    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=1, threads=1, queues=[queue])
    config.write_text(config.read_text().replace('level = "DEBUG"', 'level = "INFO"\nformat = "json"'))
    with Daemon(config) as daemon:
        daemon.wait_workers(1)
        jid = client.perform("noop", queue=queue)
        wait_for(lambda: drained(client, queue), what="job processed")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    records = [json.loads(line) for line in daemon.log.splitlines() if line.strip()]
    assert all({"time", "level", "pid", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("jid") == jid for r in records)


def test_status_command_reports_health(tmp_path: Path, server) -> None:
    config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=1)
    with Daemon(config) as daemon:
        daemon.wait_workers(2)
        result = wait_for(
            lambda: (r := run_cli("status", "--config", str(config))).returncode == 0 and r, what="healthy status"
        )
        assert "running: 2/2 worker process(es) ready" in result.stdout
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    result = run_cli("status", "--config", str(config))
    assert result.returncode == 1 and "no status file" in result.stderr


def test_warns_when_shutdown_timeout_exceeds_the_container_kill_timer(tmp_path: Path, server) -> None:
    config = write_config(tmp_path / "faktory.toml", server.url, processes=1, threads=1, shutdown_timeout=25)
    with Daemon(config, env={"container": "docker"}) as daemon:
        daemon.wait_log("`docker stop` kills after 10 s by default")
        assert "docker stop -t 30" in daemon.log
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_ctrl_c_to_the_whole_process_group_is_one_graceful_stop(tmp_path: Path, server, client) -> None:
    """A terminal's Ctrl-C sends INT to the supervisor and every child at once: the supervisor's own stop order
    (USR2) must not count as a second signal, so running jobs still finish."""
    queue = unique()
    config = write_config(tmp_path / "faktory.toml", server.url, processes=2, threads=1, queues=[queue])
    with Daemon(config) as daemon:
        daemon.wait_workers(2)
        client.perform("nap", 1.5, queue=queue)
        wait_for(lambda: faktory(client)["sets"]["working"] == 1, what="the job started")
        os.killpg(daemon.pid, signal.SIGINT)
        assert daemon.wait(10) == 0
    info = faktory(client)
    assert (info["total_processed"], info["total_failures"], info["sets"]["working"]) == (1, 0, 0)
