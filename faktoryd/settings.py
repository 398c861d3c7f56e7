"""Where the Faktory server is and how to talk to it: URL, environment, timeouts, TLS.

``FAKTORY_PROVIDER`` names the environment variable holding the URL (``FAKTORY_URL`` by default), as the
reference clients do. The URL form is ``tcp://[:password@]host[:port][/namespace]`` (``tcp+tls://`` for TLS).
The password never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

DEFAULT_URL = "tcp://localhost:7419"
DEFAULT_PORT = 7419
URL_FORM = "tcp://[:password@]host[:port][/namespace] or tcp+tls://..."

_PROVIDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
QUEUE_NAME = re.compile(r"[a-zA-Z0-9._-]+\Z")
_URL = re.compile(
    r"(?P<scheme>tcp|tcp\+tls)://"
    r"(?:(?P<user>[^:@/]*):(?P<password>.*)@)?"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:/@\[\]]+)"
    r"(?::(?P<port>[^/]*))?"
    r"(?:/(?P<namespace>.*))?\Z"
)


@dataclass(frozen=True)
class Settings:
    """Connection settings shared by the client, the worker and the daemon.

    ``read_timeout`` bounds every reply; it must stay well above FETCH's 2 s server-side block.
    """

    host: str = "localhost"
    port: int = DEFAULT_PORT
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    namespace: str = ""
    default_queue: str = "default"
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify: bool = True
    labels: tuple[str, ...] = ("python",)
    hostname: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"invalid Faktory port {self.port!r}: expected an integer from 1 to 65535")
        if self.namespace and not QUEUE_NAME.match(self.namespace):
            raise ValueError(
                f"invalid Faktory namespace {self.namespace!r}: it prefixes queue names, "
                "so it may only contain letters, digits, '.', '_' and '-'"
            )
        if not QUEUE_NAME.match(self.default_queue):
            raise ValueError(
                f"invalid default queue {self.default_queue!r}: queue names must match [a-zA-Z0-9._-]+"
            )
        if self.read_timeout <= 2.5:
            raise ValueError(
                f"read_timeout {self.read_timeout} is too short: FETCH blocks up to 2 s on the server, "
                "so use at least 3 seconds (default 10)"
            )
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {self.connect_timeout}")
        object.__setattr__(self, "labels", tuple(self.labels))

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Settings:
        """Settings from a ``tcp://`` or ``tcp+tls://`` URL; keyword arguments set the other fields."""
        return cls(**{**parse_url(url), **overrides})

    @property
    def url(self) -> str:
        """The server's URL with the password masked, for logs and messages."""
        scheme = "tcp+tls" if self.tls else "tcp"
        auth = ":***@" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        ns = f"/{self.namespace}" if self.namespace else ""
        return f"{scheme}://{auth}{host}:{self.port}{ns}"

    def queue_name(self, queue: str) -> str:
        """The queue name on the server: the namespace, if any, is a plain prefix (as in the Haskell client)."""
        return self.namespace + queue

    def with_options(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_url(url: str) -> dict[str, Any]:
    """Split a Faktory URL into Settings fields. Raises ValueError that never contains the password."""
    if not isinstance(url, str):
        raise ValueError(f"the Faktory URL must be a string, expected {URL_FORM}")
    match = _URL.match(url.strip())
    if not match:
        raise ValueError(f"invalid Faktory URL {_redact(url)!r}: expected {URL_FORM}")
    port_text = match["port"]
    if port_text is None or port_text == "":
        if port_text == "":
            raise ValueError(f"invalid Faktory URL {_redact(url)!r}: empty port; expected {URL_FORM}")
        port = DEFAULT_PORT
    elif port_text.isdigit() and 0 < int(port_text) < 65536:
        port = int(port_text)
    else:
        raise ValueError(
            f"invalid Faktory URL {_redact(url)!r}: port must be a number from 1 to 65535; expected {URL_FORM}"
        )
    namespace = match["namespace"] or ""
    if namespace and not QUEUE_NAME.match(namespace):
        raise ValueError(
            f"invalid Faktory URL {_redact(url)!r}: the namespace prefixes queue names, so it may only "
            f"contain letters, digits, '.', '_' and '-'; expected {URL_FORM}"
        )
    password = match["password"]
    return {
        "host": match["host"].strip("[]"),
        "port": port,
        "password": unquote(password) if password else None,
        "tls": match["scheme"] == "tcp+tls",
        "namespace": namespace,
    }


def _redact(url: str) -> str:
    """The URL with anything between '://' and the last '@' masked: it may hold a password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def env_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment: ``FAKTORY_PROVIDER``, the URL variable it names, ``FAKTORY_QUEUE``."""
    env = os.environ if environ is None else environ
    provider = env.get("FAKTORY_PROVIDER") or "FAKTORY_URL"
    if not _PROVIDER.match(provider):
        raise ValueError(
            f"invalid FAKTORY_PROVIDER {provider!r}: it must name the environment variable that holds "
            "the Faktory URL, e.g. FAKTORY_PROVIDER=FAKTORY_URL"
        )
    url = env.get(provider) or DEFAULT_URL
    try:
        fields = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"{provider}: {exc}") from None
    queue = env.get("FAKTORY_QUEUE")
    if queue:
        fields["default_queue"] = queue
    return Settings(**{**fields, **overrides})
