"""PyPI ``pyfaktory`` driven through its public API (Client, Consumer, Producer).

    python -m bench.contenders.pyfaktory_peer work URL QUEUE PROCESSES THREADS
    python -m bench.contenders.pyfaktory_peer push|pushb URL QUEUE COUNT   (prints the seconds taken)

Its Consumer runs each job in a pebble process pool and sleeps 0.1 s after every FETCH that finds the pool
full or the queue empty, which caps a slot near 10 jobs/s.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from pyfaktory import Client, Consumer, Job, Producer

from bench.contenders import probe


def noop(*args: object) -> None:
    if args:
        probe.started(args[0])


def nap(seconds: float) -> None:
    time.sleep(seconds)


def work(url: str, queue: str, processes: int, threads: int) -> None:
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    logging.basicConfig(level=logging.WARNING)
    client = Client(faktory_url=url, role="consumer", worker_id=os.urandom(8).hex())
    client.connect()
    if probe.enabled():
        pushed: dict[str, object] = {}
        fetch, ack = client._fetch, client._ack

        def probed_fetch(queues: list[str]) -> object:
            job = fetch(queues)
            if job and job.get("args"):
                pushed[job["jid"]] = job["args"][0]
            return job

        def probed_ack(jid: str) -> bool:
            result = ack(jid)
            probe.acked(pushed.pop(jid, None))
            return result

        client._fetch, client._ack = probed_fetch, probed_ack  # type: ignore[method-assign]
    consumer = Consumer(client=client, queues=[queue], concurrency=threads, priority="strict")
    consumer.register("noop", noop)
    consumer.register("nap", nap)
    consumer.run()


def push(url: str, queue: str, count: int, bulk: bool) -> float:
    with Client(faktory_url=url, role="producer") as client:
        producer = Producer(client=client)
        started = time.perf_counter()
        if bulk:
            for start in range(0, count, 1000):
                jobs = [Job(jobtype="noop", args=[], queue=queue) for _ in range(start, min(count, start + 1000))]
                if producer.push_bulk(jobs):
                    raise SystemExit("PUSHB rejected jobs")
        else:
            for _ in range(count):
                if not producer.push(Job(jobtype="noop", args=[], queue=queue)):
                    raise SystemExit("PUSH refused")
        return time.perf_counter() - started


def main(argv: list[str]) -> int:
    mode, url, queue = argv[0], argv[1], argv[2]
    if mode == "work":
        work(url, queue, int(argv[3]), int(argv[4]))
        return 0
    print(f"{push(url, queue, int(argv[3]), mode == 'pushb'):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
