"""What every workload of the harness shares: a raw protocol connection, the server under test, process
statistics (CPU, RSS, PSS) and summary statistics.

Nothing here imports faktoryd: the harness talks to the server with its own minimal client, so the same
bytes measure every contender.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- raw protocol


class RawConn:
    """One blocking socket speaking the Faktory protocol with the least code possible (no validation)."""

    def __init__(self, url: str, wid: str | None = None, timeout: float = 10.0) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 7419), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        greeting = self.reply()
        hello: dict[str, Any] = {"v": 2}
        if wid:
            hello.update(hostname="bench", wid=wid, pid=os.getpid(), labels=["bench"])
        data = json.loads(greeting[3:])
        if "s" in data:
            import hashlib  # noqa: PLC0415

            digest = ((unquote(parsed.password or "")) + data["s"]).encode()
            for _ in range(max(int(data.get("i", 1)), 1)):
                digest = hashlib.sha256(digest).digest()
            hello["pwdhash"] = digest.hex()
        reply = self.request(b"HELLO " + json.dumps(hello).encode())
        if reply != "OK":
            raise RuntimeError(f"HELLO refused: {reply!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def reply(self) -> Any:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, rest = self.buf.partition(b"\r\n")
        kind = line[:1]
        if kind == b"$":
            size = int(line[1:])
            if size < 0:
                self.buf = rest
                return None
            while len(rest) < size + 2:
                self._fill()
                line, _, rest = self.buf.partition(b"\r\n")
            self.buf = rest[size + 2 :]
            return rest[:size]
        self.buf = rest
        if kind == b"-":
            raise RuntimeError(line[1:].decode())
        return line[1:].decode()

    def request(self, line: bytes) -> Any:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def info(self) -> dict[str, Any]:
        return json.loads(self.request(b"INFO"))

    def push_bulk(self, jobs: Sequence[dict[str, Any]], chunk: int = 1000) -> None:
        for start in range(0, len(jobs), chunk):
            errors = json.loads(self.request(b"PUSHB " + json.dumps(jobs[start : start + chunk]).encode()))
            if errors:
                raise RuntimeError(f"PUSHB rejected {len(errors)} job(s): {next(iter(errors.values()))}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"END\r\n")
        self.sock.close()


def noop_jobs(count: int, queue: str, jobtype: str = "noop", prefix: str = "") -> list[dict[str, Any]]:
    """Tiny jobs with unique jids (24 hex characters, like faktoryd's)."""
    tag = prefix or os.urandom(4).hex()
    return [{"jid": f"{tag}{i:016x}", "jobtype": jobtype, "args": [], "queue": queue, "retry": 0} for i in range(count)]


def queue_state(info: dict[str, Any], queue: str) -> tuple[int, int, int]:
    """(jobs waiting in ``queue``, jobs reserved anywhere, total processed) from an INFO document."""
    faktory = info["faktory"]
    return faktory["queues"].get(queue, 0), faktory["sets"]["working"], faktory["total_processed"]


# ---------------------------------------------------------------------------------------------- the server


class Server:
    """The Faktory server under test: a given URL, or the embedded server in a process of its own."""

    def __init__(self, url: str | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.embedded = url is None
        if url is None:
            port = free_port()
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "faktoryd.embedded", "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            url = f"tcp://127.0.0.1:{port}"
            wait_port("127.0.0.1", port, 15.0)
        self.url = url
        self.admin = RawConn(url)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def flush(self) -> None:
        self.admin.request(b"FLUSH")

    def info(self) -> dict[str, Any]:
        return self.admin.info()

    def cpu_seconds(self) -> float | None:
        """CPU time the embedded server's process has used so far (None for an external server)."""
        return cpu_seconds(self.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        self.admin.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (its threads included)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/PID/smaps_rollup."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, command line) for every process."""
    out: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                rest = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out[int(entry)] = (int(rest[1]), rest[0], cmdline)
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first)."""
    table = processes()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, (ppid, state, _) in table.items() if ppid == parent and state != "Z"]
        found.extend(kids)
        frontier.extend(kids)
    return found


def kill_group(proc: subprocess.Popen[Any], signum: int = 9) -> None:
    """SIGKILL a contender's whole session (it was started with start_new_session) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


# ---------------------------------------------------------------------------------------------- statistics


@dataclass
class Series:
    """Repeated measurements of one quantity."""

    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): a value that was actually observed."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


# ---------------------------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    node = "absent"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
