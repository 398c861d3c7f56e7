"""The consumer: job handlers, registered with ``@faktoryd.job`` when faktoryd imports this module.

    faktoryd push Hello world      ->  logs "Hello, world!" and the job is ACKed
    faktoryd push Hello BOOM       ->  raises: the job is FAILed and lands in the retry set with its error,
                                       and Faktory runs it again in 15-44 s (then later and later, 25 times)
    faktoryd push Add 2 3          ->  logs "2 + 3 = 5"

``config/demo.toml`` and ``examples/faktory.toml`` list this module in ``[app] modules``; ``[app] path`` puts
this directory on ``sys.path`` first.
"""

from __future__ import annotations

import logging

import faktoryd

log = logging.getLogger("examples.consumer")


class Boom(RuntimeError):
    """What the BOOM job raises; its qualified name, ``consumer.Boom``, is the errtype Faktory records."""


@faktoryd.job("Hello")
def hello(name: str = "world") -> None:
    """Greets ``name``. ``BOOM`` raises instead, to show a failed job, its error and its retry."""
    if name == "BOOM":
        raise Boom("BOOM: this job fails on purpose; find it in the retry set (Faktory web UI: Retries)")
    log.info("Hello, %s!", name)


@faktoryd.job("Add", queue="default", retry=5)
def add(x: float, y: float) -> float:
    """The original client's ``adder``. Options in the decorator are the defaults of ``Add.push(...)``."""
    log.info("%s + %s = %s", x, y, x + y)
    return x + y
