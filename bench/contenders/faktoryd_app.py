"""The app the faktoryd daemon runs in the benchmarks (``[app] modules = ["bench.contenders.faktoryd_app"]``)."""

from __future__ import annotations

import time

import faktoryd
from bench.contenders import probe


@faktoryd.job
def noop(*args: object) -> None:
    """A no-op job; its first argument, when given, is the push time for the latency probe."""
    if args:
        probe.started(args[0])


@faktoryd.job
def nap(seconds: float) -> None:
    time.sleep(seconds)


if probe.enabled():
    # The daemon tells its supervisor "D jid" once the server accepted a job's ACK: that is the moment the
    # latency workload wants, so the probe rides on it (benchmark-only instrumentation, never in production).
    from faktoryd.supervisor import child as _child

    _done = _child.Reporter.done

    def _probed_done(self: _child.Reporter, job: faktoryd.Job) -> None:
        _done(self, job)
        if job.args:
            probe.acked(job.args[0])

    _child.Reporter.done = _probed_done  # type: ignore[method-assign]


_MUTE = set(filter(None, __import__("os").environ.get("BENCH_MUTE", "").split(",")))
if _MUTE:
    # Experiment only (the "where the daemon's time goes" table): switch off per-job work of the daemon's
    # child so its cost can be measured. "titles": no process-title updates; "channel": no "S"/"D" lines to
    # the supervisor (which then could not FAIL the jobs of a crashed child).
    from faktoryd.supervisor import child as _child_mod

    if "titles" in _MUTE:
        _child_mod.Reporter.title = lambda self, *args: None  # type: ignore[method-assign]
    if "channel" in _MUTE:
        _child_mod.Reporter.started = lambda self, job: None  # type: ignore[method-assign]
        _child_mod.Reporter.done = lambda self, job: None  # type: ignore[method-assign]
