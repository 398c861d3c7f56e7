"""PyPI ``faktory`` (faktory_worker_python) driven through its public API.

    python -m bench.contenders.faktory_peer work URL QUEUE PROCESSES THREADS
    python -m bench.contenders.faktory_peer push URL QUEUE COUNT      (prints the seconds taken)

Its Worker runs one connection per process: FETCH, submit to a thread pool (``use_threads=True``), ACK on a
later turn of its loop, and ``time.sleep(0.25)`` whenever all ``concurrency`` slots are busy. It has no bulk
push.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from faktory import Client, Worker

from bench.contenders import probe


def noop(*args: object) -> None:
    if args:
        probe.started(args[0])


def nap(seconds: float) -> None:
    time.sleep(seconds)


class ProbedWorker(Worker):
    def _process(self, jid: str, job: str, args: list[object]) -> None:
        self._bench_args = getattr(self, "_bench_args", {})
        self._bench_args[jid] = args[0] if args else None
        super()._process(jid, job, args)

    def _ack(self, jid: str) -> None:
        super()._ack(jid)
        probe.acked(self._bench_args.pop(jid, None))


def work(url: str, queue: str, processes: int, threads: int) -> None:
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    logging.basicConfig(level=logging.WARNING)
    worker = ProbedWorker(faktory=url, queues=[queue], concurrency=threads, use_threads=True)
    worker.register("noop", noop)
    worker.register("nap", nap)
    worker.run()


def push(url: str, queue: str, count: int) -> float:
    with Client(url) as client:
        started = time.perf_counter()
        for _ in range(count):
            if not client.queue("noop", args=[], queue=queue, retry=25):
                raise SystemExit("PUSH refused")
        return time.perf_counter() - started


def main(argv: list[str]) -> int:
    mode, url, queue = argv[0], argv[1], argv[2]
    if mode == "work":
        work(url, queue, int(argv[3]), int(argv[4]))
        return 0
    print(f"{push(url, queue, int(argv[3])):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
