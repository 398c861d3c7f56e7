"""faktoryd's producer API: ``Client.push`` one job per call, or ``Client.push_bulk`` (PUSHB of 1,000).

python -m bench.contenders.faktoryd_push push|pushb URL QUEUE COUNT   (prints the seconds taken)
"""

from __future__ import annotations

import sys
import time

import faktoryd


def main(argv: list[str]) -> int:
    mode, url, queue, count = argv[0], argv[1], argv[2], int(argv[3])
    with faktoryd.Client(faktoryd.Settings.from_url(url)) as client:
        client.info()  # connect before the clock starts, as the other contenders do
        started = time.perf_counter()
        if mode == "pushb":
            errors = client.push_bulk(faktoryd.Job("noop", [], queue=queue) for _ in range(count))
            if errors:
                raise SystemExit(f"PUSHB rejected {len(errors)} job(s)")
        else:
            push, Job = client.push, faktoryd.Job
            for _ in range(count):
                push(Job("noop", [], queue=queue))
        print(f"{time.perf_counter() - started:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
