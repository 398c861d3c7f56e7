"""What the daemon does before the supervisor's loop starts: start the demo's embedded server, and warn when
the shutdown budget does not fit the platform's kill timer."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..config import Config

log = logging.getLogger("faktoryd.supervisor")

STOP_MARGIN = 3.0  # the supervisor exits within shutdown_timeout + this many seconds
DOCKER_DEFAULT_STOP = 10.0
PR_SET_PDEATHSIG = 1


_RUN_EMBEDDED = (
    "import sys; from faktoryd.logs import setup_logging; setup_logging(sys.argv[1], sys.argv[2]); "
    "from faktoryd.embedded.__main__ import main; sys.exit(main(sys.argv[3:]))"
)


class EmbeddedServerProcess:
    """The demo's Faktory server, in a process of its own and its own session (a terminal's Ctrl-C reaches
    the workers, which still need the server to FAIL or ACK their jobs; the supervisor stops it last). It
    logs like the daemon and dies with the supervisor, so it never lingers on its port."""

    def __init__(self, host: str, port: int, log_level: str = "INFO", log_format: str = "text") -> None:
        self.host, self.port = host, port
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_EMBEDDED, log_level, log_format, "--host", host, "--port", str(port)],
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - the supervisor runs no threads
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_listening(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent (the supervisor) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def warn_about_kill_timers(config: Config, environ: dict[str, str] | None = None) -> None:
    """Warn when shutdown_timeout would not fit the platform's timer between TERM and KILL."""
    env = dict(os.environ if environ is None else environ)
    budget = config.worker.shutdown_timeout + STOP_MARGIN
    in_container = Path("/.dockerenv").exists() or "container" in env or "KUBERNETES_SERVICE_HOST" in env
    if in_container and budget > DOCKER_DEFAULT_STOP - 2:
        log.warning(
            "shutdown_timeout is %g s, so a graceful stop takes up to %g s, but `docker stop` kills after %g s "
            "by default: use `docker stop -t %d` (Kubernetes: terminationGracePeriodSeconds >= %d) or lower "
            "[worker] shutdown_timeout",
            config.worker.shutdown_timeout,
            budget,
            DOCKER_DEFAULT_STOP,
            int(budget) + 2,
            int(budget) + 2,
        )
    limit = _systemd_stop_timeout(env)
    if limit is not None and budget > limit:
        log.warning(
            "shutdown_timeout is %g s, so a graceful stop takes up to %g s, but systemd's TimeoutStopSec for "
            "this unit is %g s: raise TimeoutStopSec to at least %d or lower [worker] shutdown_timeout",
            config.worker.shutdown_timeout,
            budget,
            limit,
            int(budget) + 2,
        )


def _systemd_stop_timeout(env: dict[str, str]) -> float | None:
    """TimeoutStopSec of the systemd unit we run in, when that can be known cheaply."""
    if "INVOCATION_ID" not in env:
        return None
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    units = [part for part in cgroup.replace("\n", "/").split("/") if part.endswith(".service")]
    if not units:
        return None
    try:
        out = subprocess.run(
            ["systemctl", "show", "--property=TimeoutStopUSec", "--value", units[-1]],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return _parse_systemd_span(out)


def _parse_systemd_span(text: str) -> float | None:
    """'1min 30s' / '45s' / '500ms' / 'infinity' -> seconds (None when unknown or infinite)."""
    units = {"min": 60.0, "ms": 0.001, "us": 1e-6, "s": 1.0, "h": 3600.0}
    total = 0.0
    for part in text.split():
        for suffix in ("min", "ms", "us", "s", "h"):
            if part.endswith(suffix) and part[: -len(suffix)].replace(".", "", 1).isdigit():
                total += float(part[: -len(suffix)]) * units[suffix]
                break
        else:
            return None
    return total or None
