"""A producer: push jobs from any Python process with ``faktoryd.Client``.

    python examples/producer.py                 # the server from FAKTORY_URL, else tcp://localhost:7419
    python examples/producer.py --every 1       # keep pushing, one Add per second, until Ctrl-C

From a shell, the same without Python: ``faktoryd push Hello world``.
"""

from __future__ import annotations

import argparse
import logging
import random
import time

import faktoryd

log = logging.getLogger("examples.producer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, metavar="SECONDS", help="keep pushing an Add job this often")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    with faktoryd.Client() as client:  # settings from FAKTORY_PROVIDER / FAKTORY_URL
        log.info("pushing to %s", client.settings.url)
        log.info("Hello world: jid %s", client.perform("Hello", "world"))
        log.info("Hello BOOM (fails, then retries): jid %s", client.perform("Hello", "BOOM"))
        log.info("FetchAll (async handler): jid %s", client.perform("FetchAll", 3))
        log.info("Report (current job): jid %s", client.perform("Report", "daily", custom={"tenant": "acme"}))
        log.info("Hello in 5 s (scheduled): jid %s", client.perform("Hello", "later", delay=5))
        errors = client.push_bulk(faktoryd.Job("Add", [n, n]) for n in range(10))
        log.info("10 Add jobs in one PUSHB, %d rejected", len(errors))
        while args.every:
            time.sleep(args.every)
            client.perform("Add", random.randint(0, 1000), random.randint(0, 1000))


if __name__ == "__main__":
    main()
