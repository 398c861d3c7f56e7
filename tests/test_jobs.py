"""The Job payload: defaults, validation with the server's messages, timestamps."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from faktoryd import Job
from faktoryd.client import make_job
from faktoryd.jobs import format_time, parse_time


def test_defaults_and_explicit_retry() -> None:
    job = Job("SendEmail", [1, "x"])
    assert len(job.jid) == 24 and int(job.jid, 16) >= 0
    assert json.loads(job.to_json()) == {
        "jid": job.jid,
        "jobtype": "SendEmail",
        "args": [1, "x"],
        "queue": "default",
        "retry": 25,
    }


def test_jids_are_unique() -> None:
    assert len({Job("X").jid for _ in range(1000)}) == 1000


def test_optional_fields_are_sent_when_set() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=timezone(timedelta(hours=2)))
    job = Job("X", [], queue="mail", retry=3, reserve_for=600, at=at, backtrace=10, custom={"k": "v"})
    payload = job.to_dict()
    assert payload["at"] == "2030-01-02T01:04:05.600000Z"
    assert (payload["queue"], payload["retry"], payload["reserve_for"], payload["backtrace"]) == ("mail", 3, 600, 10)
    assert payload["custom"] == {"k": "v"}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"jid": "short"}, ValueError, "jobs must have a reasonable jid parameter"),
        ({"jobtype": ""}, ValueError, "jobs must have a jobtype parameter"),
        ({"reserve_for": 86401}, ValueError, "jobs cannot be reserved for more than one day"),
        ({"queue": "no spaces"}, ValueError, 'cannot get "no spaces" queue: queue names must match'),
        ({"retry": "3"}, TypeError, "retry must be an int"),
        ({"reserve_for": 60.5}, TypeError, "reserve_for must be an int"),
        ({"args": "abc"}, TypeError, "args must be a list"),
        ({"custom": ["x"]}, TypeError, "custom must be a dict"),
        ({"at": datetime(2030, 1, 1)}, ValueError, "has no timezone"),
        ({"at": "tomorrow"}, TypeError, "aware datetime"),
    ],
)
def test_validation_uses_the_servers_messages(kwargs: dict, error: type, message: str) -> None:
    fields = {"jobtype": "X", "args": [], **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(")):
        Job(**fields).to_dict()


def test_unserializable_args_are_named_before_sending() -> None:
    with pytest.raises(TypeError, match=r"\['args'\]\[0\]\['when'\] = datetime"):
        Job("X", [{"when": datetime.now()}]).to_json()


def test_from_server_payload() -> None:
    raw = (
        '{"retry":5,"failure":{"failed_at":"2026-11-28T16:28:41.472241388Z","retry_count":1,"remaining":4},'
        '"jid":"192d07b9ad604e5fb4eca70e","queue":"default","jobtype":"Failing",'
        '"created_at":"2026-11-28T16:28:41.470774517Z","enqueued_at":"2026-11-28T16:28:41.470779957Z",'
        '"at":"2026-11-28T17:28:39Z","args":["x"],"reserve_for":60,"unknown":1}'
    )
    job = Job.from_dict(json.loads(raw))
    assert (job.jobtype, job.args, job.retry, job.reserve_for, job.retry_count) == ("Failing", ["x"], 5, 60, 2)
    assert job.at == datetime(2026, 11, 28, 17, 28, 39, tzinfo=timezone.utc)


def test_time_formats() -> None:
    moment = datetime(2026, 11, 28, 16, 28, 39, 440803, tzinfo=timezone.utc)
    assert format_time(moment) == "2026-11-28T16:28:39.440803Z"
    assert parse_time("2026-11-28T16:28:39.440803652Z") == moment
    assert parse_time("2026-11-28T16:28:39Z") == moment.replace(microsecond=0)
    assert parse_time("2026-11-28T16:28:39.44Z") == moment.replace(microsecond=440000)


def test_make_job_delay_and_at() -> None:
    before = datetime.now(timezone.utc)
    job = make_job("X", [1], delay=60)
    assert job.at is not None and timedelta(seconds=59) < job.at - before < timedelta(seconds=61)
    assert make_job("X", [], delay=timedelta(minutes=2)).at is not None
    with pytest.raises(ValueError, match="either at= or delay="):
        make_job("X", [], delay=1, at=before)
    assert make_job("X", [], jid="fixed-jid-123").jid == "fixed-jid-123"
