"""faktoryd: a Python client, worker and supervised multiprocess worker daemon for Faktory."""

from ._version import __version__
from .client import Client
from .connection import Connection
from .context import JobContext, current_context, current_job
from .errors import (
    AuthenticationError,
    FaktoryConnectionError,
    FaktoryError,
    ProtocolError,
    ServerError,
)
from .jobs import Job
from .registry import Handler, HandlerLoadError, Registry, default_registry, job
from .settings import Settings, env_settings
from .worker import JobTimeout, Worker, WorkerHalt, run_worker

__all__ = [
    "AuthenticationError",
    "Client",
    "Connection",
    "FaktoryConnectionError",
    "FaktoryError",
    "Handler",
    "HandlerLoadError",
    "Job",
    "JobContext",
    "JobTimeout",
    "ProtocolError",
    "Registry",
    "ServerError",
    "Settings",
    "Worker",
    "WorkerHalt",
    "__version__",
    "current_context",
    "current_job",
    "default_registry",
    "env_settings",
    "job",
    "run_worker",
]
