"""Handlers: the @job decorator, enqueue helpers (over a real socket), "module:function" loading, context."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from worker_apps.support import fetch_raw, sets, settings_for, take_from_set

import faktoryd
from faktoryd import Client, HandlerLoadError, Registry
from faktoryd.jobs import parse_time


def test_bare_decorator_registers_under_the_function_name():
    registry = Registry()

    @registry.job
    def resize(width, height):
        return width * height

    assert "resize" in registry and registry.get("resize") is resize
    assert resize(3, 4) == 12  # still callable directly
    assert resize.__name__ == "resize" and resize.jobtype == "resize"
    assert resize.timeout is None and resize.retry == 25 and not resize.is_async


def test_decorator_with_jobtype_and_options():
    registry = Registry()

    @registry.job("SendEmail", queue="mail", retry=3, reserve_for=600, timeout=30)
    async def send(address):
        return address

    handler = registry.get("SendEmail")
    assert handler is send and "send" not in registry
    assert (handler.queue, handler.retry, handler.reserve_for, handler.timeout) == ("mail", 3, 600, 30)
    assert handler.is_async
    assert asyncio.run(send("a@b")) == "a@b"


def test_options_only_decorator_keeps_the_name():
    registry = Registry()

    @registry.job(queue="low")
    def cleanup():
        pass

    assert registry.get("cleanup").queue == "low"


def test_default_registry_is_what_faktoryd_job_fills():
    @faktoryd.job("tests.registry.DefaultOne")
    def default_one():
        pass

    assert faktoryd.default_registry.get("tests.registry.DefaultOne") is default_one


def test_conflicting_registration_is_refused_but_reimport_replaces():
    registry = Registry()

    def a():
        pass

    def b():
        pass

    registry.register(a, "T")
    registry.register(a, "T")
    with pytest.raises(ValueError, match="already handled by"):
        registry.register(b, "T")


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_timeout(bad):
    with pytest.raises(ValueError, match="timeout"):
        Registry().job(timeout=bad)(lambda: None)


def test_decorator_rejects_non_string_jobtype():
    with pytest.raises(TypeError, match="jobtype string"):
        Registry().job(42)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------- enqueueing


def test_push_helpers(server):
    client = Client(settings_for(server))
    registry = Registry(client=client)

    @registry.job("Report", queue="reports", retry=3, reserve_for=120)
    def report(name, n):
        pass

    jid = report.push("daily", 2)
    job = fetch_raw(server, "reports")
    assert job["jid"] == jid and job["jobtype"] == "Report" and job["args"] == ["daily", 2]
    assert job["retry"] == 3 and job["reserve_for"] == 120

    jid = report.options(queue="urgent", retry=0, timeout=5, custom={"trace": "t1"}).push("x", 1)
    job = fetch_raw(server, "urgent")
    assert job["jid"] == jid and job["retry"] == 0 and job["reserve_for"] == 120
    assert job["custom"] == {"trace": "t1", "timeout": 5}

    later = report.push_in(timedelta(hours=1), "later", 3)
    at = datetime.now(timezone.utc) + timedelta(hours=2)
    exact = report.push_at(at, "exact", 4)
    assert sets(client)["scheduled"] == 2
    scheduled = take_from_set(server, client, "scheduled", exact, "reports")
    assert abs(parse_time(scheduled["at"]) - at) < timedelta(seconds=1)
    scheduled = take_from_set(server, client, "scheduled", later, "reports")
    assert parse_time(scheduled["at"]) > datetime.now(timezone.utc) + timedelta(minutes=59)
    client.close()


def test_push_uses_the_default_queue_of_the_client(server):
    client = Client(settings_for(server, default_queue="dq"))
    registry = Registry(client=client)
    jid = registry.register(lambda: None, "Anon").push()
    assert fetch_raw(server, "dq")["jid"] == jid
    client.close()


# ---------------------------------------------------------------------------------------------- specs


def test_from_specs_loads_functions_and_decorated_handlers(tmp_path, monkeypatch):
    (tmp_path / "spec_app.py").write_text(
        "import faktoryd\n"
        "reg = faktoryd.Registry()\n"
        "def plain(x): return x\n"
        "class Jobs:\n"
        "    @staticmethod\n"
        "    def nested(): return 'n'\n"
        "@reg.job('Decorated', queue='q1', timeout=9)\n"
        "def decorated(): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry.from_specs(
        ["spec_app:plain", "Nested=spec_app:Jobs.nested", "spec_app:decorated", " Other = spec_app:plain "]
    )
    assert sorted(registry) == ["Decorated", "Nested", "Other", "plain"]
    assert registry.get("plain").fn(5) == 5
    assert registry.get("Nested").fn() == "n"
    assert registry.get("Decorated").queue == "q1" and registry.get("Decorated").timeout == 9


def test_from_specs_reports_every_bad_spec(tmp_path, monkeypatch):
    (tmp_path / "spec_bad.py").write_text("value = 3\ndef ok(): pass\n")
    (tmp_path / "spec_broken.py").write_text("raise RuntimeError('import-time failure')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HandlerLoadError) as info:
        Registry.from_specs(
            [
                "no_colon",
                "spec_missing_module_xyz:f",
                "spec_bad:nope",
                "spec_bad:value",
                "spec_broken:f",
                "=spec_bad:ok",
                "spec_bad:ok",
                "ok=spec_bad:ok",
            ]
        )
    problems = info.value.problems
    assert len(problems) == 7, problems
    assert "'no_colon'" in problems[0] and "module:function" in problems[0]
    assert "cannot import module 'spec_missing_module_xyz'" in problems[1]
    assert "module 'spec_bad' has no attribute 'nope'" in problems[2]
    assert "spec_bad:value is a int, not a callable" in problems[3]
    assert "RuntimeError: import-time failure" in problems[4]
    assert "JobType=module:function" in problems[5]
    assert "already registered by 'spec_bad:ok'" in problems[6]
    assert str(info.value).count("\n") == 7


# ---------------------------------------------------------------------------------------------- context


def test_context_outside_a_job_is_a_clear_error():
    with pytest.raises(LookupError, match="only works inside a job handler"):
        faktoryd.current_job()
