"""Logging for the daemon: one line per event on stderr, as text for people or JSON for log shippers."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

TEXT_FORMAT: Final = "%(asctime)s.%(msecs)03dZ %(levelname)s [%(process)d] %(name)s: %(message)s"
TEXT_DATE: Final = "%Y-%m-%dT%H:%M:%S"
# Attributes that handlers and the worker attach with ``extra=`` and that JSON lines carry as fields.
EXTRA_FIELDS: Final = ("jid", "jobtype", "queue", "duration", "wid", "child", "errtype")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, pid, logger, message, the known extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route every logger to stderr with the chosen format, replacing earlier handlers (a forked child
    inherits its parent's, which is what we want, but a reload may change the format)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(TEXT_FORMAT, TEXT_DATE)
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
