"""The worker's pure parts, without a server: lifecycle, queue orders, backoff, errtypes, FAIL payloads, limits."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import pytest

from faktoryd import Job, JobTimeout, Settings, WorkerHalt
from faktoryd.worker import fetch
from faktoryd.worker.backoff import Backoff, Outage
from faktoryd.worker.errors import Shutdown, UnknownJobType, errtype_of
from faktoryd.worker.lifecycle import TRANSITIONS, Event, Lifecycle, State
from faktoryd.worker.middleware import chain
from faktoryd.worker.report import MAX_BACKTRACE, fail_for
from faktoryd.worker.worker import Worker

# ---------------------------------------------------------------------------------------------- lifecycle


def test_lifecycle_only_moves_forward():
    changes = []
    life = Lifecycle(on_change=lambda: changes.append(life.state))
    assert life.fetching and life.beat_state is None
    assert life.quiet() is True
    assert not life.fetching and life.beat_state == "quiet"
    assert life.quiet() is False
    assert life.reason is None
    assert life.terminate(5.0, "signal") is True
    assert life.state is State.TERMINATING and life.beat_state == "terminate" and life.reason == "signal"
    assert life.quiet() is False and life.state is State.TERMINATING
    assert life.stopped() is True
    assert life.terminate(1.0, "halt") is False and life.state is State.STOPPED and life.reason == "signal"
    assert changes == [State.QUIET, State.TERMINATING, State.STOPPED]


def test_lifecycle_transitions_are_data():
    assert (State.QUIET, Event.QUIET) not in TRANSITIONS
    assert all(new is not State.RUNNING for new in TRANSITIONS.values())


def test_second_terminate_only_brings_the_deadline_closer():
    life = Lifecycle()
    life.terminate(10.0, "terminate")
    first = life.deadline
    assert first is not None and 9 < life.remaining() <= 10
    assert life.terminate(20.0, "signal") is False and life.deadline == first
    life.terminate(0.0, "signal")
    assert life.deadline is not None and life.deadline < first and life.remaining() <= 0
    assert life.reason == "terminate"
    with pytest.raises(ValueError, match="unknown stop reason"):
        life.terminate(1.0, "bored")


def test_wait_while_wakes_on_change():
    life = Lifecycle()
    life.quiet()
    threading.Timer(0.05, life.terminate, args=(1.0, "stop")).start()
    started = time.monotonic()
    assert life.wait_while(State.QUIET, timeout=5) is State.TERMINATING
    assert time.monotonic() - started < 2
    assert life.wait_while(State.TERMINATING, timeout=0.01) is State.TERMINATING


# ---------------------------------------------------------------------------------------------- queue orders


def test_strict_order_line_is_built_once():
    order = fetch.queue_order(["critical", "default", "low"], None, lambda q: q)
    assert isinstance(order, fetch.StrictOrder)
    assert order() == b"FETCH critical default low\r\n"
    assert order() is order()


def test_namespace_prefix_applies():
    settings = Settings(namespace="ns-")
    order = fetch.queue_order(["a", "b"], "strict", settings.queue_name)
    assert order() == b"FETCH ns-a ns-b\r\n"


def test_random_order_serves_every_queue_first():
    order = fetch.queue_order(["a", "b", "c"], "random", lambda q: q)
    firsts = Counter(order().split()[1] for _ in range(600))
    assert set(firsts) == {b"a", b"b", b"c"}
    assert min(firsts.values()) > 120


def test_weighted_order_follows_weights():
    order = fetch.WeightedOrder({"a": 6, "b": 3, "c": 1}, rng=random.Random(7))
    lines = [order() for _ in range(5000)]
    assert all(sorted(line.split()[1:]) == [b"a", b"b", b"c"] for line in lines)
    firsts = Counter(line.split()[1] for line in lines)
    assert firsts[b"a"] > firsts[b"b"] > firsts[b"c"] > 0
    assert 0.5 < firsts[b"a"] / 5000 < 0.7


def test_mapping_means_weighted():
    assert isinstance(fetch.queue_order({"a": 2, "b": 1}, None, lambda q: q), fetch.WeightedOrder)


@pytest.mark.parametrize(
    ("queues", "order", "message"),
    [
        ([], None, "at least one queue"),
        ("default", None, "not the string"),
        (["a", "a"], None, "names a queue twice"),
        (["a"], "fifo", "unknown queue order"),
        ({"a": 0}, None, "weights must be positive"),
        (["bad name"], None, "invalid queue name"),
    ],
)
def test_bad_queue_specs(queues, order, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fetch.queue_order(queues, order, lambda q: q)


# ---------------------------------------------------------------------------------------------- backoff


def test_backoff_grows_with_jitter_and_caps():
    backoff = Backoff(rng=lambda: 1.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    for _ in range(20):
        assert backoff.next() <= 30.0
    assert backoff.next() == 30.0
    backoff.reset()
    assert backoff.next() == 0.5
    low = Backoff(rng=lambda: 0.0)
    assert low.next() == 0.25


def test_outage_logs_once_and_recovery_once(caplog):
    outage = Outage("tcp://x:1")
    with caplog.at_level("DEBUG", logger="faktoryd.worker"):
        outage.down("a", OSError("refused"))
        outage.down("b", OSError("refused"))
        outage.down("a", OSError("refused"))
        outage.up("a")
        outage.up("b")
        outage.up("b")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "lost the Faktory server" in warnings[0] and "reconnected" in warnings[1]


def test_outage_noticed_late_by_an_idle_connection_is_not_a_new_one(caplog):
    outage = Outage("tcp://x:1")
    opened = time.monotonic()
    with caplog.at_level("DEBUG", logger="faktoryd.worker"):
        outage.down("processor", OSError("reset"), opened)
        outage.up("processor")
        outage.down("heartbeat", OSError("reset"), opened)  # its connection predates the outage
        outage.up("heartbeat")
        outage.down("processor", OSError("reset again"), time.monotonic())  # a new connection failing: new outage
        outage.up("processor")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w.split(" ")[0] for w in warnings] == ["lost", "reconnected", "lost", "reconnected"]


# ---------------------------------------------------------------------------------------------- errors, FAIL


class Custom(Exception):
    class Inner(Exception):
        pass


def test_errtypes():
    assert errtype_of(ValueError("x")) == "ValueError"
    assert errtype_of(Custom()) == f"{__name__}.Custom"
    assert errtype_of(Custom.Inner()) == f"{__name__}.Custom.Inner"
    assert errtype_of(JobTimeout()) == "faktoryd.JobTimeout"
    assert errtype_of(Shutdown()) == "Faktory::Shutdown"
    assert errtype_of(WorkerHalt()) == "faktoryd.WorkerHalt"
    assert errtype_of(UnknownJobType("x")) == "faktoryd.UnknownJobType"


def _deep(n: int) -> None:
    if n == 0:
        raise RuntimeError("é" * 3000)
    _deeper(n - 1)


def _deeper(n: int) -> None:
    _deep(n)


def test_fail_payload_is_cut_to_server_limits():
    try:
        _deep(80)
    except RuntimeError as exc:
        line = fail_for("jid12345", exc)
    assert line.startswith(b"FAIL ") and line.endswith(b"\r\n")
    payload = json.loads(line[5:])
    assert payload["jid"] == "jid12345" and payload["errtype"] == "RuntimeError"
    assert payload["message"] == "é" * 1000
    assert len(payload["backtrace"]) == MAX_BACKTRACE
    assert "_deep" in payload["backtrace"][-1] and "raise RuntimeError" in payload["backtrace"][-1]


def test_unprintable_exception_message():
    class Bad(Exception):
        def __str__(self):
            raise RuntimeError("no")

    payload = json.loads(fail_for("jid12345", Bad())[5:])
    assert payload["message"] == "<unprintable Bad>"


# ---------------------------------------------------------------------------------------------- middleware


def test_middleware_chain_order_and_short_circuit():
    seen = []

    def outer(job, call_next):
        seen.append("outer>")
        result = call_next()
        seen.append("<outer")
        return result

    def inner(job, call_next):
        seen.append(f"inner {job.jid}")
        return call_next() * 2

    run = chain([outer, inner], lambda job: job.args[0])
    assert run(Job("T", [21], jid="abcdefgh")) == 42
    assert seen == ["outer>", "inner abcdefgh", "<outer"]
    assert chain([lambda job, call_next: "skipped"], lambda job: 1)(Job("T")) == "skipped"
    handler = lambda job: 1  # noqa: E731
    assert chain([], handler) is handler


# ---------------------------------------------------------------------------------------------- time limits


@pytest.mark.parametrize(
    ("reserve_for", "custom", "handler", "default", "expected"),
    [
        (None, None, None, None, 1800 - 90),
        (0, None, None, None, 1800 - 90),
        (30, None, None, None, 50),
        (60, None, None, None, 50),
        (600, None, None, None, 570),
        (600, None, 5, None, 5),
        (600, None, None, 7, 7),
        (600, {"timeout": 3}, 5, 7, 3),
        (600, {"timeout": 5000}, None, None, 570),
        (600, {"timeout": "x"}, 5, None, 5),
        (600, {"timeout": True}, None, 7, 7),
        (100000, None, None, None, 86400 - 4320),
    ],
)
def test_time_limit(reserve_for, custom, handler, default, expected):
    worker = Worker(Settings(), handlers=lambda job: None, job_timeout=default)
    job = Job("T", reserve_for=reserve_for, custom=custom)
    assert worker._runtime.time_limit(job, handler) == pytest.approx(expected)


def test_worker_rejects_bad_options():
    with pytest.raises(ValueError, match="threads"):
        Worker(Settings(), threads=0)
    with pytest.raises(ValueError, match="job_timeout"):
        Worker(Settings(), job_timeout=0)
    with pytest.raises(TypeError, match="handlers must be"):
        Worker(Settings(), handlers=42)  # type: ignore[arg-type]


def test_wid_is_random_per_worker_unless_given():
    a, b = Worker(Settings()), Worker(Settings())
    assert a.wid != b.wid and len(a.wid) == 16
    assert Worker(Settings(), wid="fixed-wid").wid == "fixed-wid"
