"""faktoryd: a Python client, worker and supervised multiprocess worker daemon for Faktory."""

from ._version import __version__
from .client import Client
from .connection import Connection
from .errors import (
    AuthenticationError,
    FaktoryConnectionError,
    FaktoryError,
    ProtocolError,
    ServerError,
)
from .jobs import Job
from .settings import Settings, env_settings

__all__ = [
    "AuthenticationError",
    "Client",
    "Connection",
    "FaktoryConnectionError",
    "FaktoryError",
    "Job",
    "ProtocolError",
    "ServerError",
    "Settings",
    "__version__",
    "env_settings",
]
