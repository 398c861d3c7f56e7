"""Unit tests of the harness's helpers (not part of the project's suite: its testpaths is tests/).

.venv/bin/python -m pytest bench/test_bench.py
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.common import Series, noop_jobs, percentile, queue_state, ratio
from bench.report import fmt, render, spread, table, x
from bench.workloads import Drain, summarize_profile


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_series_and_formatting() -> None:
    series = Series([3.0, 1.0, 2.0])
    assert (series.median, series.low, series.high) == (2.0, 1.0, 3.0)
    assert spread(series) == "2 (1-3)"
    assert spread(Series([1234.5])) == "1,234"
    assert spread(Series()) == "-"
    assert fmt(float("nan")) == "-" and fmt(float("inf")) == "∞"
    assert x(0.954) == "0.95x" and x(float("nan")) == "-"
    assert math.isnan(ratio(1.0, 0.0)) and ratio(3.0, 2.0) == 1.5


def test_table_is_markdown() -> None:
    assert table(["a", "b"], [["1", "2"]]) == ["| a | b |", "| --- | ---: |", "| 1 | 2 |", ""]


def test_jobs_and_queue_state() -> None:
    jobs = noop_jobs(3, "q", prefix="abcd")
    assert [j["jid"] for j in jobs] == ["abcd" + format(i, "016x") for i in range(3)]
    assert all(len(j["jid"]) == 20 and j["queue"] == "q" for j in jobs)
    info = {"faktory": {"queues": {"q": 5}, "sets": {"working": 2}, "total_processed": 9}}
    assert queue_state(info, "q") == (5, 2, 9)
    assert queue_state(info, "other") == (0, 2, 9)


def test_profile_summary(tmp_path: Path) -> None:
    raw = tmp_path / "spy.txt"
    raw.write_text(
        "process 1;thread (1);main (/x/a.py:1);recv (/x/conn.py:9) 3\n"
        "process 1;thread (1);main (/x/a.py:2);parse (/x/proto.py:5) 1\n"
    )
    summary = summarize_profile(raw)
    assert summary["samples"] == 4
    assert summary["self"][0] == ("recv (conn.py)", 0.75)
    assert summary["inclusive"][0] == ("main (a.py)", 1.0)


def test_render_marks_targets() -> None:
    runs = {
        (name, p, t): [Drain(rate=rate, drained=True, server_share=0.5, cpu_per_job_us=50.0)]
        for name, rate in (("raw", 1000.0), ("faktoryd", 990.0), ("faktory", 400.0))
        for p, t in ((1, 1), (2, 1), (4, 1), (1, 4), (2, 4))
    }
    text = render(
        {"command": "python -m bench", "machine": {"cpu": "test"}, "embedded": True},
        {"process": {"count": 10, "cap": 1.0, "repeats": 1, "results": runs}},
    )
    assert "| processing 1x1 vs raw bound | >= 0.95x | 0.99x | met |" in text
    assert "| processing 1x1 vs best Python library | >= 2x | 2.48x | met |" in text
