"""The command line tools around the daemon: server, push, --version, --help, usage errors."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from daemon import EXECUTABLE
from helpers import wait_for

from faktoryd import Client, Settings, __version__


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXECUTABLE, *args], capture_output=True, text=True, timeout=30, check=False, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.strip() == f"faktoryd {__version__}"
    text = run_cli("--help").stdout
    for word in ("check", "status", "push", "server", "--config", "Exit codes", "TSTP", "HUP"):
        assert word in text


def test_server_command_serves_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([EXECUTABLE, "server", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "listening on tcp://127.0.0.1:" in log.read_text(), what="the server listening")
        url = f"tcp://127.0.0.1:{port}"
        pushed = run_cli("push", "Hello", "world", "42", '{"a":1}', "--queue", "cli", "--url", url)
        assert pushed.returncode == 0, pushed.stderr
        jid = pushed.stdout.strip()
        with Client(Settings.from_url(url)) as client:
            assert client.info()["faktory"]["queues"]["cli"] == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert len(jid) == 24
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def test_push_parses_json_args_and_schedules(server) -> None:
    with Client(Settings.from_url(server.url)) as client:
        result = run_cli("push", "Later", "x", "--in", "3600", "--retry", "3", "--url", server.url)
        assert result.returncode == 0, result.stderr
        assert client.info()["faktory"]["sets"]["scheduled"] == 1
        result = run_cli("push", "At", "--at", "2099-01-01T00:00:00Z", "--url", server.url)
        assert result.returncode == 0
        assert client.info()["faktory"]["sets"]["scheduled"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("push", "X", "--at", "tomorrow"), "not an ISO 8601 time"),
        (("push", "X", "--at", "2030-01-01T00:00:00"), "has no UTC offset"),
        (("push", "X", "--queue", "no spaces", "--url", "tcp://127.0.0.1:1"), "queue names must match"),
        (("push", "X", "--url", "http://x"), "invalid Faktory URL"),
        ((), "no config file given"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unreachable_server_exits_1() -> None:
    result = run_cli("push", "X", "--url", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "cannot connect to Faktory" in result.stderr and "Traceback" not in result.stderr
