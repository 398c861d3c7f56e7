"""Telling the outside world how the daemon is: systemd's notify socket and process titles.

sd_notify is one datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract socket when it starts with ``@``), so
no library is needed. Without that variable every call is a no-op, so the daemon runs the same anywhere.
"""

from __future__ import annotations

import logging
import os
import socket

import setproctitle

log = logging.getLogger("faktoryd.supervisor")


class Notifier:
    """sd_notify for the supervisor. Only the main process may notify (``NotifyAccess=main``)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2_000_000 if usec.isdigit() and int(usec) > 0 and mine else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *fields: str) -> None:
        """Send ``KEY=value`` lines; failures are logged once per call and never raised."""
        if not self._address:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self._address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def forget(self) -> None:
        """In a forked child: only the supervisor notifies systemd."""
        self.close()
        self._address = ""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def set_title(title: str) -> None:
    """The process title seen in ps and top: ``faktoryd supervisor ...``, ``faktoryd worker 2: idle``."""
    setproctitle.setproctitle(title)
