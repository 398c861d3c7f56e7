"""An in-memory Faktory server that behaves like Faktory 1.10.0 on the wire, for tests and the demo.

``EmbeddedServer`` runs in a background thread of the current process; see ``server.py`` for the
controls tests use (time warp, running background tasks now, outages, worker signals).
"""

from __future__ import annotations

from .server import EmbeddedServer

__all__ = ["EmbeddedServer"]
