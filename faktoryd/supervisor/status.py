"""A status file the supervisor rewrites every few seconds, so a health check (Docker's HEALTHCHECK, a
monitoring agent) can ask ``faktoryd status`` whether the daemon and its workers are alive without
talking to it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

WRITE_EVERY = 2.0
STALE_AFTER = 15.0


def status_path(config_path: Path) -> Path:
    """Where the daemon running ``config_path`` keeps its status: one file per config, in the temp dir."""
    digest = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"faktoryd-{digest}.status.json"


def write_status(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically (a reader never sees half a document)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**data, "updated": time.time()}))
    os.replace(tmp, path)


def read_status(path: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one-line reason) for the daemon whose status is in ``path``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no status file at {path}: is faktoryd running with this config?"
    except (OSError, ValueError) as exc:
        return False, f"cannot read the status file {path}: {exc}"
    age = (time.time() if now is None else now) - float(data.get("updated", 0))
    pid = int(data.get("pid", 0))
    if age > STALE_AFTER:
        return False, f"status is {age:.0f} s old: the supervisor (pid {pid}) is not updating it"
    if pid <= 0 or not _alive(pid):
        return False, f"the supervisor (pid {pid}) is not running"
    workers = data.get("workers", [])
    expected = int(data.get("expected", 0))
    ready = [w for w in workers if w.get("ready") and _alive(int(w.get("pid", 0)))]
    summary = f"{data.get('phase')}: {len(ready)}/{expected} worker process(es) ready, {data.get('busy', 0)} busy"
    if data.get("phase") not in ("running", "starting") or len(ready) < expected:
        return False, summary
    return True, summary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
