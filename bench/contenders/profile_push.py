"""cProfile of faktoryd's ``Client.push_bulk`` and of the raw PUSHB loop (20,000 jobs each), as JSON:
where the producer's own CPU goes and how long it waits for the server.

    python -m bench.contenders.profile_push URL QUEUE COUNT
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import time

import faktoryd
from bench.contenders import raw


def main(argv: list[str]) -> int:
    url, queue, count = argv[0], argv[1], int(argv[2])
    out: dict[str, object] = {}
    with faktoryd.Client(faktoryd.Settings.from_url(url)) as client:
        client.info()
        started = time.perf_counter()
        client.push_bulk(faktoryd.Job("noop", [], queue=queue) for _ in range(count))
        out["push_bulk_s"] = time.perf_counter() - started
        out["raw_pushb_s"] = raw.push(url, queue, count, bulk=True)
        profiler = cProfile.Profile()
        profiler.enable()
        client.push_bulk(faktoryd.Job("noop", [], queue=queue) for _ in range(count))
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = file.rsplit("/", 1)[-1]
        rows.append((tottime, f"{name} ({where}:{line})" if line else name, calls))
    rows.sort(reverse=True)
    out["profile_total_s"] = total
    out["top"] = [(name, calls, tottime) for tottime, name, calls in rows[:10]]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
