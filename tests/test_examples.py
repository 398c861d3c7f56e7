"""The README's demo command and the examples, run for real: ``scripts/demo`` (embedded server, two workers),
``faktoryd push``, the Python producer, the worker-library example, and the example configs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from daemon import EXECUTABLE
from helpers import wait_for

from faktoryd import Client, Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO_CONFIG = ROOT / "config" / "demo.toml"
DEMO_SCRIPT = ROOT / "scripts" / "demo"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FAKTORY_URL", "FAKTORY_PROVIDER", "FAKTORY_CONFIG")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), so a test can kill what escaped the process group."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Running:
    """A command in a session of its own, its output in a file; killed with everything it started."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        self.known: set[int] = set()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        def seen() -> bool:
            self.known.update(descendants(self.proc.pid))
            if self.proc.poll() is not None and text not in self.log:
                raise AssertionError(f"exited with {self.proc.returncode} before {text!r}:\n{self.log[-3000:]}")
            return text in self.log

        wait_for(seen, timeout=timeout, what=f"{text!r} in the log")

    def stop(self) -> None:
        self.known.update(descendants(self.proc.pid))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.known:  # the embedded server runs in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


@contextlib.contextmanager
def running(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[Running]:
    proc = Running(argv, log, env)
    try:
        yield proc
    finally:
        proc.stop()


def push(url: str, *args: str) -> str:
    result = subprocess.run(
        [EXECUTABLE, "push", "--url", url, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def demo_copy(tmp_path: Path, port: int) -> Path:
    """config/demo.toml on another port (never 7419: that is the user's demo), examples path made absolute."""
    text = DEMO_CONFIG.read_text()
    for old, new in (
        ("port = 7419", f"port = {port}"),
        ('path = ["../examples"]', f"path = [{json.dumps(str(EXAMPLES))}]"),
    ):
        assert old in text, f"config/demo.toml no longer has {old!r}: update this test"
        text = text.replace(old, new)
    copy = tmp_path / "demo.toml"
    copy.write_text(text)
    return copy


def test_demo_config_is_what_the_readme_promises() -> None:
    from faktoryd.config import load_config

    config = load_config(DEMO_CONFIG, environ={})
    assert config.embedded.enabled and config.faktory.url_source == "embedded"
    assert config.worker.processes == 2
    assert config.logging.level == "INFO"
    assert config.app.path == (EXAMPLES,)
    assert set(config.app.modules) == {"consumer", "async_handler", "current_job"}


def test_demo_processes_a_pushed_job_and_retries_boom(tmp_path: Path) -> None:
    """The README's first command, for a few seconds: scripts/demo starts the embedded server and two workers;
    ``faktoryd push Hello world`` is processed and logged, ``Hello BOOM`` lands in the retry set with its error."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    config = demo_copy(tmp_path, port)
    with running([str(DEMO_SCRIPT), str(config)], tmp_path / "demo.log", clean_env()) as demo:
        demo.wait_log("all 2 worker process(es) are ready", timeout=60)
        assert listening(port)

        jid = push(url, "Hello", "world")
        demo.wait_log(f"done Hello {jid}")
        assert "Hello, world!" in demo.log

        boom = push(url, "Hello", "BOOM")
        demo.wait_log(f"fail Hello {boom}")
        with Client(Settings.from_url(url)) as client:
            info = client.info()["faktory"]
            assert info["sets"]["retries"] == 1 and info["sets"]["working"] == 0
            assert info["total_processed"] == 2 and info["total_failures"] == 1
            # The retry set holds the job with its error: move the jobs whose JSON has that errtype to the dead set.
            client.mutate("kill", "retries", pattern='*"errtype":"consumer.Boom"*')
            info = client.info()["faktory"]
            assert info["sets"]["retries"] == 0 and info["sets"]["dead"] == 1

        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(15) == 0
        assert "supervisor" in demo.log and "stopped" in demo.log
        wait_for(lambda: not listening(port), timeout=5, what="the embedded server stopped with the demo")


def test_example_configs_import_their_handlers() -> None:
    expected = {
        ROOT / "config" / "demo.toml": ["Add -> consumer.add", "FetchAll -> async_handler.fetch_all",
                                        "Hello -> consumer.hello", "Report -> current_job.report"],
        EXAMPLES / "faktory.toml": ["Hello -> consumer.hello"],
        EXAMPLES / "django_project" / "faktory.toml": ["SendReceipt -> orders.jobs.send_receipt",
                                                       "NightlyCleanup -> orders.jobs.nightly_cleanup"],
    }
    for config, handlers in expected.items():
        result = subprocess.run(
            [EXECUTABLE, "check", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd="/",  # paths in the configs are relative to the file, not to the current directory
            env=clean_env(),
        )
        assert result.returncode == 0, f"{config}: {result.stderr}"
        for line in handlers:
            assert line in result.stdout, f"{config}: {result.stdout}"


def test_producer_and_worker_examples(tmp_path: Path, server) -> None:
    """``python examples/producer.py`` pushes to FAKTORY_URL; ``python examples/worker.py`` (the worker library,
    no daemon) runs every example handler, the async and current-job ones included, and FAILs BOOM."""
    env = clean_env(FAKTORY_URL=server.url, PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "producer.py")], capture_output=True, text=True, timeout=30, env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "10 Add jobs in one PUSHB, 0 rejected" in result.stderr
    with Client(Settings.from_url(server.url)) as client:
        info = client.info()["faktory"]
        assert info["queues"].get("default") == 14 and info["sets"]["scheduled"] == 1

        with running([sys.executable, str(EXAMPLES / "worker.py")], tmp_path / "worker.log", env) as worker:
            wait_for(
                lambda: client.info()["faktory"]["queues"].get("default", 0) == 0
                and client.info()["faktory"]["sets"]["working"] == 0,
                timeout=20,
                what="the queue drained",
            )
            worker.wait_log("fetched 3 pages concurrently")
            worker.wait_log("daily report for acme")
            info = client.info()["faktory"]
            assert info["total_failures"] == 1 and info["sets"]["retries"] == 1
            assert "Boom: BOOM" in worker.log
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.proc.wait(10) == 0
