"""Queue ordering for FETCH: strict priority, weighted random, or uniformly random, as Ruby and Go offer.

The server pops from the first non-empty queue in the order a FETCH names them, so the order of the names is
the whole policy. Each strategy returns the complete FETCH line; strict order builds it once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from .. import protocol

ORDERS = ("strict", "weighted", "random")


class StrictOrder:
    """Always the same order: a job in the first queue is taken before any in the second, and so on."""

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = list(queues)
        self._line = protocol.fetch(self.queues)

    def __call__(self) -> bytes:
        return self._line


class RandomOrder:
    """A fresh uniform shuffle per FETCH: every queue is served, none has priority."""

    def __init__(self, queues: Sequence[str], rng: random.Random | None = None) -> None:
        self.queues = list(queues)
        self._rng = rng or random.Random()

    def __call__(self) -> bytes:
        order = self.queues[:]
        self._rng.shuffle(order)
        return b"FETCH " + " ".join(order).encode("ascii") + protocol.CRLF


class WeightedOrder:
    """A fresh weighted shuffle per FETCH: a queue of weight 3 comes first three times as often as one of
    weight 1, and every queue is still named, so an empty favourite never blocks the others.

    Weighted sampling without replacement (Efraimidis-Spirakis): sort by ``u ** (1 / weight)``, descending.
    """

    def __init__(self, weights: Mapping[str, float], rng: random.Random | None = None) -> None:
        for name, weight in weights.items():
            if not weight > 0:
                raise ValueError(f"queue {name!r} has weight {weight!r}: weights must be positive numbers")
        self.queues = list(weights)
        protocol.fetch(self.queues)  # validates the names
        self._exponents = [(name, 1.0 / weight) for name, weight in weights.items()]
        self._rng = rng or random.Random()

    def __call__(self) -> bytes:
        rand = self._rng.random
        order = sorted(self._exponents, key=lambda item: rand() ** item[1], reverse=True)
        return b"FETCH " + " ".join(name for name, _ in order).encode("ascii") + protocol.CRLF


def queue_order(
    queues: Sequence[str] | Mapping[str, float], order: str | None, prefix: Callable[[str], str]
) -> StrictOrder | RandomOrder | WeightedOrder:
    """The strategy for ``queues``: a sequence (strict by default) or a ``{queue: weight}`` mapping (weighted
    by default). ``prefix`` maps a queue name to its name on the server (the namespace)."""
    if isinstance(queues, str):
        raise TypeError(f"queues must be a list of names or a {{name: weight}} mapping, not the string {queues!r}")
    if not queues:
        raise ValueError("a worker needs at least one queue to fetch from")
    if order is None:
        order = "weighted" if isinstance(queues, Mapping) else "strict"
    if order not in ORDERS:
        raise ValueError(f"unknown queue order {order!r}: expected one of {', '.join(ORDERS)}")
    if isinstance(queues, Mapping):
        weights = {prefix(name): weight for name, weight in queues.items()}
    else:
        if len(set(queues)) != len(queues):
            raise ValueError(
                f"queue list {list(queues)} names a queue twice: for weights pass a {{name: weight}} mapping"
            )
        weights = {prefix(name): 1.0 for name in queues}
    if order == "weighted":
        return WeightedOrder(weights)
    names = list(weights)
    protocol.fetch(names)
    return StrictOrder(names) if order == "strict" else RandomOrder(names)
