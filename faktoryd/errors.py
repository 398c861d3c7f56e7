"""The exceptions faktoryd raises.

Every error a user can cause says what went wrong and how to fix it. None of them ever carries a password:
messages are built from host, port and server replies only.
"""

from __future__ import annotations


class FaktoryError(Exception):
    """Base class of every faktoryd error."""


class ProtocolError(FaktoryError):
    """The peer sent bytes that are not the Faktory protocol (or the connection is out of step)."""


class FaktoryConnectionError(FaktoryError):
    """The server could not be reached, or the connection broke or timed out mid-command."""


class ServerError(FaktoryError):
    """The server answered a command with an error line (``-ERR message`` or ``-CODE message``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}" if code != "ERR" else message)
        self.code = code
        self.message = message


class AuthenticationError(ServerError):
    """The server refused the password (or wants one and none was configured)."""
