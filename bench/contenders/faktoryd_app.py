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
