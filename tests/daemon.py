"""Running the real ``faktoryd`` executable in tests: config files, the process, its children, its log."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from helpers import wait_for

APPS = Path(__file__).parent / "daemon_apps"
EXECUTABLE = shutil.which("faktoryd", path=str(Path(sys.executable).parent)) or "faktoryd"


def write_config(
    path: Path, url: str, *, modules: tuple[str, ...] = ("basic",), app_path: Path = APPS, **worker: Any
) -> Path:
    """A config file for the daemon under test; ``worker`` keys go to ``[worker]``."""
    worker.setdefault("processes", 2)
    worker.setdefault("threads", 2)
    worker.setdefault("shutdown_timeout", 5)
    lines = [f"{key} = {_toml(value)}" for key, value in worker.items()]
    path.write_text(
        textwrap.dedent(
            f"""\
            [faktory]
            url = {_toml(url)}

            [worker]
            """
        )
        + "\n".join(lines)
        + textwrap.dedent(
            f"""

            [app]
            path = [{_toml(str(app_path))}]
            modules = [{", ".join(_toml(m) for m in modules)}]

            [logging]
            level = "DEBUG"
            """
        )
    )
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


class Daemon:
    """``faktoryd --config PATH`` in a subprocess; always killed (with its children) on exit."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> None:
        self.config = config
        self.log_path = config.with_suffix(".log")
        environ = {k: v for k, v in os.environ.items() if k not in ("FAKTORY_URL", "FAKTORY_PROVIDER")}
        environ.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*(prefix or []), EXECUTABLE, "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def children(self) -> dict[int, str]:
        """Live child processes of the daemon: pid -> process title (from /proc)."""
        return {pid: title for pid, (ppid, title, state) in _processes().items() if ppid == self.pid and state != "Z"}

    def workers(self) -> dict[int, str]:
        return {pid: title for pid, title in self.children().items() if title.startswith("faktoryd worker")}

    def wait_workers(self, count: int, timeout: float = 20.0, ready: bool = True) -> dict[int, str]:
        def enough() -> dict[int, str] | None:
            found = {p: t for p, t in self.workers().items() if not ready or "starting" not in t}
            return found if len(found) == count else None

        return wait_for(enough, timeout=timeout, what=f"{count} worker processes")

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        wait_for(lambda: text in self.log, timeout=timeout, what=f"{text!r} in the daemon's log")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the daemon's whole process group (it runs in a session of its own), then reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, title, state) for every process, from /proc."""
    out: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        title = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        out[int(entry)] = (int(rest[1]), title, rest[0])
    return out


def zombies_of(pid: int) -> list[int]:
    return [p for p, (ppid, _, state) in _processes().items() if ppid == pid and state == "Z"]


def wait_exit(daemon: Daemon, timeout: float) -> tuple[int, float]:
    """Wait for the daemon to exit; returns (exit code, seconds it took)."""
    started = time.monotonic()
    code = daemon.wait(timeout)
    return code, time.monotonic() - started
