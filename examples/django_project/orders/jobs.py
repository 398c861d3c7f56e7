"""The orders app's jobs. faktoryd imports this module (``orders.jobs`` in faktory.toml); a view pushes jobs
with the same functions:

    from orders.jobs import send_receipt
    send_receipt.push(order.id, order.quantity, order.unit_price)     # returns the jid at once

and a shell with ``faktoryd push SendReceipt 42 3 9.99``.
"""

import logging

import faktoryd
from orders.pricing import total

log = logging.getLogger(__name__)


@faktoryd.job("SendReceipt", queue="critical", retry=10)
def send_receipt(order_id: int, quantity: int, unit_price: float) -> None:
    log.info("receipt for order %s: %.2f", order_id, total(quantity, unit_price))


@faktoryd.job("NightlyCleanup", queue="default", timeout=3600)
def nightly_cleanup() -> None:
    log.info("cleaning up old orders")
