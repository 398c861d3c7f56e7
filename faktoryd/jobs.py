"""The job payload: defaults, client-side validation with the server's own messages, JSON in and out."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .protocol import dumps
from .settings import QUEUE_NAME

DEFAULT_RETRY = 25
MAX_RESERVE_FOR = 86400
_FRACTION = re.compile(r"\.(\d+)")


def new_jid() -> str:
    """24 random hex characters, like the Ruby worker's jids."""
    return os.urandom(12).hex()


def format_time(moment: datetime) -> str:
    """An aware datetime as RFC 3339 in UTC with a ``Z``, the form the server parses."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"job time {moment.isoformat()} has no timezone: pass an aware datetime, "
            "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse the server's RFC 3339 timestamps (``Z`` suffix, 0 to 9 fraction digits) on any Python >= 3.10."""
    match = _FRACTION.search(text)
    if match:
        text = f"{text[: match.start()]}.{(match[1] + '000000')[:6]}{text[match.end() :]}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Job:
    """A unit of work: a jobtype (the handler's name) and its JSON arguments.

    ``retry`` is always sent explicitly: the real server lets any explicit retry overwrite its default for
    later jobs that omit it. ``at`` schedules the job; it must be an aware datetime.
    Fields the server sets (``created_at``, ``enqueued_at``, ``failure``) come back on fetched jobs.
    """

    jobtype: str
    args: list[Any] = field(default_factory=list)
    jid: str = field(default_factory=new_jid)
    queue: str = "default"
    retry: int = DEFAULT_RETRY
    reserve_for: int | None = None
    at: datetime | None = None
    backtrace: int | None = None
    custom: dict[str, Any] | None = None
    created_at: str | None = None
    enqueued_at: str | None = None
    failure: dict[str, Any] | None = None

    def validate(self) -> None:
        """Reject what the server would reject, with its message, before anything is sent."""
        if not isinstance(self.jid, str) or len(self.jid.encode("utf-8")) < 8:
            raise ValueError("jobs must have a reasonable jid parameter (a string of at least 8 bytes)")
        if not isinstance(self.jobtype, str) or not self.jobtype:
            raise ValueError("jobs must have a jobtype parameter")
        if not isinstance(self.args, list | tuple):
            raise TypeError(f"job args must be a list, not {type(self.args).__name__}")
        if not isinstance(self.queue, str) or not QUEUE_NAME.match(self.queue):
            raise ValueError(
                f'cannot get "{self.queue}" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z'
            )
        if type(self.retry) is not int:
            raise TypeError(f"job retry must be an int, not {self.retry!r}")
        if self.reserve_for is not None:
            if type(self.reserve_for) is not int:
                raise TypeError(f"job reserve_for must be an int number of seconds, not {self.reserve_for!r}")
            if self.reserve_for > MAX_RESERVE_FOR:
                raise ValueError("jobs cannot be reserved for more than one day")
        if self.backtrace is not None and type(self.backtrace) is not int:
            raise TypeError(f"job backtrace must be an int, not {self.backtrace!r}")
        if self.custom is not None and not isinstance(self.custom, dict):
            raise TypeError(f"job custom must be a dict, not {type(self.custom).__name__}")
        if self.at is not None:
            if not isinstance(self.at, datetime):
                raise TypeError(f"job at must be an aware datetime, not {self.at!r}")
            format_time(self.at)

    def to_dict(self) -> dict[str, Any]:
        """The validated wire payload (only the fields that are set; ``retry`` always)."""
        self.validate()
        payload: dict[str, Any] = {
            "jid": self.jid,
            "jobtype": self.jobtype,
            "args": list(self.args),
            "queue": self.queue,
            "retry": self.retry,
        }
        if self.reserve_for is not None:
            payload["reserve_for"] = self.reserve_for
        if self.at is not None:
            payload["at"] = format_time(self.at)
        if self.backtrace is not None:
            payload["backtrace"] = self.backtrace
        if self.custom:
            payload["custom"] = self.custom
        if self.created_at is not None:
            payload["created_at"] = self.created_at
        return payload

    def to_json(self) -> str:
        """Compact JSON; an argument JSON cannot carry raises TypeError naming it and where it is."""
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A job as the server returns it. Unknown keys are ignored; ``at`` is parsed back to a datetime."""
        at = data.get("at")
        retry = data.get("retry")
        return cls(
            jobtype=data["jobtype"],
            args=data["args"] if isinstance(data.get("args"), list) else [],
            jid=data["jid"],
            queue=data.get("queue") or "default",
            retry=DEFAULT_RETRY if retry is None else retry,
            reserve_for=data.get("reserve_for"),
            at=parse_time(at) if at else None,
            backtrace=data.get("backtrace"),
            custom=data.get("custom"),
            created_at=data.get("created_at"),
            enqueued_at=data.get("enqueued_at"),
            failure=data.get("failure"),
        )

    @property
    def retry_count(self) -> int:
        """How many times this job has failed before (0 on its first run)."""
        if not self.failure:
            return 0
        return int(self.failure.get("retry_count", 0)) + 1
