"""The daemon's TOML configuration: read it, check every key, resolve paths and the environment.

Every user mistake becomes one :class:`ConfigError` line naming the file, the dotted key, what was expected and what
was found, so ``faktoryd`` can print it and exit 2 instead of showing a traceback. ``config/faktory.toml`` is the
reference of every key; ``docs/configuration.md`` explains them. Environment variables win over the file
(twelve-factor): the URL variable named by ``FAKTORY_PROVIDER`` (``FAKTORY_URL``), and ``FAKTORYD_LOG_LEVEL``.
Secrets (the URL's password, ``password_file``'s contents) never appear in a message or a repr.
"""

from __future__ import annotations

import difflib
import keyword
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, NoReturn

from .settings import DEFAULT_URL, QUEUE_NAME, Settings, parse_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (exercised on Python 3.10 only)
    import tomli as tomllib

CONFIG_ENV = "FAKTORY_CONFIG"
LOG_LEVEL_ENV = "FAKTORYD_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
QUEUE_ORDERS = ("strict", "random", "weighted")
MAX_SECRET_BYTES = 65536

#: Every key the loader accepts, by section. ``[handlers]`` holds job types, so any key is accepted there.
SCHEMA: dict[str, tuple[str, ...]] = {
    "faktory": (
        "url",
        "password_file",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_verify",
        "connect_timeout",
        "read_timeout",
    ),
    "worker": (
        "processes",
        "threads",
        "queues",
        "queue_order",
        "labels",
        "shutdown_timeout",
        "job_timeout",
        "max_jobs_per_child",
        "max_jobs_jitter",
        "max_memory_mb",
        "heartbeat_interval",
        "watchdog_timeout",
        "restart_backoff_max",
    ),
    "app": ("modules", "path", "working_directory"),
    "handlers": (),
    "logging": ("level", "format"),
    "embedded": ("enabled", "host", "port"),
}

_PROVIDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_HANDLER_FORM = '"module:function", e.g. "myapp.jobs:send_email"'
_NO_HANDLERS = (
    "no job handlers: list the modules that register them with @faktoryd.job in [app] modules, "
    'or map job types to "module:function" in [handlers]'
)


class ConfigError(ValueError):
    """A configuration mistake, as a single line: the CLI prints it as is and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


@dataclass(frozen=True)
class FaktoryConfig:
    """Where the server is. ``url`` is the effective one (environment, file, embedded, default: see url_source)."""

    url: str = field(repr=False)
    url_source: str
    password_file: Path | None
    password: str | None = field(repr=False)
    tls_ca_file: Path | None
    tls_cert_file: Path | None
    tls_key_file: Path | None
    tls_verify: bool
    connect_timeout: float
    read_timeout: float
    default_queue: str


@dataclass(frozen=True)
class WorkerConfig:
    """How many workers fetch from which queues, and when the supervisor recycles or kills them."""

    processes: int
    threads: int
    queues: tuple[str, ...]
    weights: dict[str, int] | None
    queue_order: str
    labels: tuple[str, ...]
    shutdown_timeout: float
    job_timeout: float
    max_jobs_per_child: int
    max_jobs_jitter: int
    max_memory_mb: int
    heartbeat_interval: float
    watchdog_timeout: float
    restart_backoff_max: float


@dataclass(frozen=True)
class AppConfig:
    """What to import so the handlers get registered; importing is the supervisor's job, not the loader's."""

    modules: tuple[str, ...]
    path: tuple[Path, ...]
    working_directory: Path | None


@dataclass(frozen=True)
class LoggingConfig:
    level: str
    format: str


@dataclass(frozen=True)
class EmbeddedConfig:
    """The in-memory demo server the supervisor may start; used as the URL only when no URL is configured."""

    enabled: bool
    host: str
    port: int


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. ``path`` is absolute: the daemon may chdir after loading."""

    path: Path
    faktory: FaktoryConfig
    worker: WorkerConfig
    app: AppConfig
    handlers: dict[str, str]
    logging: LoggingConfig
    embedded: EmbeddedConfig

    def settings(self) -> Settings:
        """Connection settings for the workers; password_file wins over a password in the URL."""
        fields = parse_url(self.faktory.url)
        if self.faktory.password is not None:
            fields["password"] = self.faktory.password
        return Settings(
            **fields,
            default_queue=self.faktory.default_queue,
            connect_timeout=self.faktory.connect_timeout,
            read_timeout=self.faktory.read_timeout,
            tls_ca_file=_optional_str(self.faktory.tls_ca_file),
            tls_cert_file=_optional_str(self.faktory.tls_cert_file),
            tls_key_file=_optional_str(self.faktory.tls_key_file),
            tls_verify=self.faktory.tls_verify,
            labels=tuple(dict.fromkeys(("python", *self.worker.labels))),
        )


def config_path_from(cli_value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The config file to load: ``--config`` wins over ``FAKTORY_CONFIG``, the more specific intent."""
    if cli_value:
        return cli_value
    env = os.environ if environ is None else environ
    value = env.get(CONFIG_ENV)
    if value:
        return value
    raise ConfigError(f"no config file given: pass --config PATH or set {CONFIG_ENV}")


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file; any mistake in it raises ConfigError, nothing else."""
    shown = os.fsdecode(path)
    if not shown:
        raise ConfigError(f"no config file given: pass --config PATH or set {CONFIG_ENV}")
    env = os.environ if environ is None else environ
    return _Loader(shown, _read_toml(shown), env).load()


def known_keys() -> list[str]:
    """Every dotted key the loader accepts (``handlers`` for the free-form job table), for docs and tests."""
    return [f"{section}.{key}" if key else section for section, keys in SCHEMA.items() for key in keys or ("",)]


def _read_toml(shown: str) -> dict[str, Any]:
    try:
        with open(shown, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such file; pass --config PATH or set {CONFIG_ENV}") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read it: {_reason(exc)}") from None
    except ValueError:
        raise ConfigError(f"{shown}: cannot read it: the path contains a NUL character") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{shown}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
    except ValueError:  # int() refuses numbers of more than 4300 digits, outside TOMLDecodeError
        raise ConfigError(f"{shown}: not valid TOML: a number has too many digits") from None
    except RecursionError:
        raise ConfigError(f"{shown}: not valid TOML: arrays or tables nested too deeply") from None


class _Loader:
    """Checks one parsed document; each method raises ConfigError naming the dotted key it checks."""

    def __init__(self, shown: str, doc: dict[str, Any], env: Mapping[str, str]) -> None:
        self.shown = shown
        self.doc = doc
        self.env = env
        self.file = Path(os.path.abspath(shown))

    def load(self) -> Config:
        self.reject_unknown_keys()
        embedded = self.embedded()
        config = Config(
            path=self.file,
            faktory=self.faktory(embedded),
            worker=self.worker(),
            app=self.app(),
            handlers=self.handlers(),
            logging=self.logging(),
            embedded=embedded,
        )
        if not config.app.modules and not config.handlers:
            raise ConfigError(f"{self.shown}: {_NO_HANDLERS}")
        return config

    # -- errors

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.shown}: {key}: {message}")

    def expected(self, key: str, expected: str, value: object) -> NoReturn:
        self.fail(key, f"expected {expected}, found {_show(value)}")

    def reject_unknown_keys(self) -> None:
        """Typos first: a misspelt key would otherwise silently keep its default."""
        for name, value in self.doc.items():
            if name not in SCHEMA:
                self.unknown(None, name)
            if isinstance(value, dict) and name != "handlers":
                for key in value:
                    if key not in SCHEMA[name]:
                        self.unknown(name, key)

    def unknown(self, section: str | None, key: str) -> NoReturn:
        dotted = _dotted(section, key) if section else _dotted(key)
        hint = _suggest(section, key)
        self.fail(dotted, f"unknown key (did you mean {hint}?)" if hint else "unknown key")

    # -- sections

    def section(self, name: str) -> dict[str, Any]:
        value = self.doc.get(name, {})
        if not isinstance(value, dict):
            self.expected(name, f"a table ([{name}])", value)
        return value

    def faktory(self, embedded: EmbeddedConfig) -> FaktoryConfig:
        table = self.section("faktory")
        file_url = None
        if "url" in table:
            file_url = self.url("faktory.url", table["url"])
        provider, env_url = self.env_url()
        if env_url:
            url, source = env_url, provider
        elif file_url:
            url, source = file_url, "faktory.url"
        elif embedded.enabled:
            host = f"[{embedded.host}]" if ":" in embedded.host else embedded.host
            url, source = f"tcp://{host}:{embedded.port}", "embedded"
        else:
            url, source = DEFAULT_URL, "default"
        password_file = self.optional_path(table, "faktory", "password_file")
        tls = {
            key: self.optional_path(table, "faktory", key) for key in ("tls_ca_file", "tls_cert_file", "tls_key_file")
        }
        for key, tls_path in tls.items():
            if tls_path is not None:
                self.require_file(f"faktory.{key}", tls_path)
        if tls["tls_key_file"] is not None and tls["tls_cert_file"] is None:
            self.fail(
                "faktory.tls_key_file",
                "expected faktory.tls_cert_file too (it is the certificate's key), found no certificate",
            )
        return FaktoryConfig(
            url=url,
            url_source=source,
            password_file=password_file,
            password=None if password_file is None else self.read_secret("faktory.password_file", password_file),
            tls_ca_file=tls["tls_ca_file"],
            tls_cert_file=tls["tls_cert_file"],
            tls_key_file=tls["tls_key_file"],
            tls_verify=self.boolean("faktory.tls_verify", table.get("tls_verify", True)),
            connect_timeout=self.number(
                "faktory.connect_timeout", table.get("connect_timeout", 5.0), "a number of seconds greater than 0", 0
            ),
            read_timeout=self.number(
                "faktory.read_timeout",
                table.get("read_timeout", 10.0),
                "a number of seconds greater than 2.5 (FETCH blocks 2 s on the server)",
                2.5,
            ),
            default_queue=self.env_queue(),
        )

    def worker(self) -> WorkerConfig:
        table = self.section("worker")
        queues, weights, order = self.queues(table)
        return WorkerConfig(
            processes=self.integer("worker.processes", table.get("processes", _available_cpus()), 1, 1024),
            threads=self.integer("worker.threads", table.get("threads", 5), 1, 1000),
            queues=queues,
            weights=weights,
            queue_order=order,
            labels=self.strings(
                "worker.labels", table.get("labels", []), "a list of label strings", "a non-empty string", bool
            ),
            shutdown_timeout=self.number(
                "worker.shutdown_timeout",
                table.get("shutdown_timeout", 25),
                "a number of seconds greater than 0 and at most 3600",
                0,
                3600,
            ),
            job_timeout=self.number(
                "worker.job_timeout",
                table.get("job_timeout", 0),
                "a number of seconds greater than 0, or 0 for no limit",
                0,
                low_ok=True,
            ),
            max_jobs_per_child=self.integer("worker.max_jobs_per_child", table.get("max_jobs_per_child", 0), 0),
            max_jobs_jitter=self.integer("worker.max_jobs_jitter", table.get("max_jobs_jitter", 0), 0),
            max_memory_mb=self.integer("worker.max_memory_mb", table.get("max_memory_mb", 0), 0),
            heartbeat_interval=self.number(
                "worker.heartbeat_interval",
                table.get("heartbeat_interval", 15),
                "a number of seconds from 5 to 60",
                5,
                60,
                low_ok=True,
            ),
            watchdog_timeout=self.number(
                "worker.watchdog_timeout", table.get("watchdog_timeout", 60), "a number of seconds greater than 0", 0
            ),
            restart_backoff_max=self.number(
                "worker.restart_backoff_max",
                table.get("restart_backoff_max", 30),
                "a number of seconds of at least 1",
                1,
                low_ok=True,
            ),
        )

    def queues(self, table: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, int] | None, str]:
        """A list means strict order by default, a table of weights means weighted order."""
        order = None
        if "queue_order" in table:
            order = self.choice("worker.queue_order", table["queue_order"], QUEUE_ORDERS)
        raw = table.get("queues", ["default"])
        expected = "a non-empty list of queue names, or a table of queue = weight"
        if isinstance(raw, list) and raw:
            names = self.strings(
                "worker.queues", raw, expected, "a queue name matching [a-zA-Z0-9._-]+", QUEUE_NAME.match
            )
            for index, name in enumerate(names):
                if name in names[:index]:
                    self.fail(f"worker.queues[{index}]", f"expected each queue once, found {_show(name)} again")
            order = order or "strict"
            return names, (dict.fromkeys(names, 1) if order == "weighted" else None), order
        if isinstance(raw, dict) and raw:
            weights = {}
            for name, weight in raw.items():
                key = _dotted("worker", "queues", name)
                if not QUEUE_NAME.match(name):
                    self.fail(key, f"expected a queue name matching [a-zA-Z0-9._-]+, found {_show(name)}")
                weights[name] = self.integer(key, weight, 1, 1000)
            if order not in (None, "weighted"):
                self.fail(
                    "worker.queue_order",
                    f'expected "weighted" (worker.queues is a table of weights), found {_show(order)}',
                )
            return tuple(weights), weights, "weighted"
        self.expected("worker.queues", expected, raw)

    def app(self) -> AppConfig:
        table = self.section("app")
        modules = self.strings(
            "app.modules",
            table.get("modules", []),
            "a list of dotted module names",
            "a dotted module name such as myapp.jobs",
            _is_dotted,
        )
        raw_paths = table.get("path", [])
        if not isinstance(raw_paths, list):
            self.expected("app.path", "a list of directories", raw_paths)
        paths = []
        for index, item in enumerate(raw_paths):
            key = f"app.path[{index}]"
            resolved = self.path(key, item)
            if not _exists(resolved):
                self.fail(key, f"{resolved}: no such file or directory")
            paths.append(resolved)
        workdir = self.optional_path(table, "app", "working_directory")
        if workdir is not None and not _is_dir(workdir):
            self.fail("app.working_directory", f"{workdir}: no such directory")
        return AppConfig(modules=modules, path=tuple(paths), working_directory=workdir)

    def handlers(self) -> dict[str, str]:
        handlers = {}
        for jobtype, target in self.section("handlers").items():
            key = _dotted("handlers", jobtype)
            if not jobtype:
                self.fail(key, "expected a job type name, found an empty key")
            if not isinstance(target, str) or not _is_target(target):
                self.expected(key, _HANDLER_FORM, target)
            handlers[jobtype] = target
        return handlers

    def logging(self) -> LoggingConfig:
        table = self.section("logging")
        level = self.choice("logging.level", table.get("level", "INFO"), LOG_LEVELS, fold=True)
        override = self.env.get(LOG_LEVEL_ENV)
        if override:
            if override.upper() not in LOG_LEVELS:
                raise ConfigError(
                    f"environment variable {LOG_LEVEL_ENV}: expected one of {_options(LOG_LEVELS)} (any case), "
                    f"found {_show(override)}"
                )
            level = override.upper()
        return LoggingConfig(
            level=level, format=self.choice("logging.format", table.get("format", "text"), LOG_FORMATS)
        )

    def embedded(self) -> EmbeddedConfig:
        table = self.section("embedded")
        host = table.get("host", "127.0.0.1")
        if not isinstance(host, str) or not _is_host(host):
            self.expected("embedded.host", "a host name or IP address", host)
        return EmbeddedConfig(
            enabled=self.boolean("embedded.enabled", table.get("enabled", False)),
            host=host,
            port=self.integer("embedded.port", table.get("port", 7419), 1, 65535),
        )

    # -- environment

    def env_url(self) -> tuple[str, str | None]:
        """The URL variable's name and value, as env_settings() reads them; the value is checked here."""
        provider = self.env.get("FAKTORY_PROVIDER") or "FAKTORY_URL"
        if not _PROVIDER.match(provider):
            raise ConfigError(
                "environment variable FAKTORY_PROVIDER: expected the name of the variable that holds the Faktory "
                f"URL, e.g. FAKTORY_URL, found {_show(provider)}"
            )
        url = self.env.get(provider) or None
        if url:
            try:
                parse_url(url)
            except ValueError as exc:
                raise ConfigError(f"environment variable {provider}: {exc}") from None
        return provider, url

    def env_queue(self) -> str:
        """FAKTORY_QUEUE, as env_settings() reads it: the queue jobs pushed by handlers go to by default."""
        queue = self.env.get("FAKTORY_QUEUE") or "default"
        if not QUEUE_NAME.match(queue):
            raise ConfigError(
                f"environment variable FAKTORY_QUEUE: expected a queue name matching [a-zA-Z0-9._-]+, "
                f"found {_show(queue)}"
            )
        return queue

    # -- values

    def url(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            self.expected(key, "a Faktory URL string", value)
        try:
            parse_url(value)  # its message masks the password
        except ValueError as exc:
            self.fail(key, str(exc))
        return value

    def boolean(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.expected(key, "true or false", value)
        return value

    def integer(self, key: str, value: object, low: int, high: int | None = None) -> int:
        """Integers only: a bool or a float here is a mistake, not something to round."""
        expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        if type(value) is not int or value < low or (high is not None and value > high):
            self.expected(key, expected, value)
        return value

    def number(
        self,
        key: str,
        value: object,
        expected: str,
        low: float,
        high: float | None = None,
        *,
        low_ok: bool = False,
    ) -> float:
        """A finite int or float above ``low`` (or equal to it when ``low_ok``) and at most ``high``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.expected(key, expected, value)
        try:
            number = float(value)
        except OverflowError:
            self.expected(key, expected, value)
        in_range = (
            math.isfinite(number) and (number > low or (low_ok and number == low)) and (high is None or number <= high)
        )
        if not in_range:
            self.expected(key, expected, value)
        return number

    def choice(self, key: str, value: object, choices: tuple[str, ...], *, fold: bool = False) -> str:
        wanted = value.upper() if fold and isinstance(value, str) else value
        if wanted not in choices:
            self.expected(key, f"one of {_options(choices)}" + (" (any case)" if fold else ""), value)
        return wanted

    def strings(self, key: str, value: object, kind: str, item: str, check: Callable[[str], object]) -> tuple[str, ...]:
        """A list of strings, each passing ``check``; errors name the item as key[index]."""
        if not isinstance(value, list):
            self.expected(key, kind, value)
        for index, entry in enumerate(value):
            if not isinstance(entry, str) or not check(entry):
                self.expected(f"{key}[{index}]", item, entry)
        return tuple(value)

    def optional_path(self, table: dict[str, Any], section: str, name: str) -> Path | None:
        return self.path(f"{section}.{name}", table[name]) if name in table else None

    def path(self, key: str, value: object) -> Path:
        """A path with $VAR/${VAR} expanded, relative to the config file's directory (the daemon may chdir)."""
        if not isinstance(value, str) or not value or "\0" in value:
            self.expected(key, "a non-empty path", value)

        def expand(match: re.Match[str]) -> str:
            name = match["braced"] or match["bare"]
            found = self.env.get(name)
            if not found:
                hint = " (systemd sets it for units with LoadCredential=)" if name == "CREDENTIALS_DIRECTORY" else ""
                self.fail(key, f"environment variable {name} is not set{hint}, found in {_show(value)}")
            return found

        expanded = _VARIABLE.sub(expand, value)
        return Path(os.path.normpath(os.path.join(self.file.parent, expanded)))

    def require_file(self, key: str, path: Path) -> int:
        """The file's mode; a missing file or a directory is a mistake found now, not at the first connection."""
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            self.fail(key, f"{path}: no such file")
        except (OSError, ValueError) as exc:
            self.fail(key, f"{path}: cannot read it: {_reason(exc)}")
        if stat.S_ISDIR(mode):
            self.fail(key, f"{path}: is a directory, not a file")
        return mode

    def read_secret(self, key: str, path: Path) -> str:
        """The password file's stripped contents; errors name the file but never show what is in it."""
        if not stat.S_ISREG(self.require_file(key, path)):
            self.fail(key, f"{path}: not a regular file")
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            self.fail(key, f"{path}: cannot read it: {_reason(exc)}")
        if len(data) > MAX_SECRET_BYTES:
            self.fail(key, f"{path}: larger than {MAX_SECRET_BYTES // 1024} KiB; expected just the password")
        try:
            secret = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.fail(key, f"{path}: not UTF-8 text")
        if not secret:
            self.fail(key, f"{path}: is empty; expected the password")
        return secret


def _available_cpus() -> int:
    """CPUs this process may run on (a container's or unit's cpuset), capped to worker.processes' range."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    return max(1, min(count, 1024))


def _suggest(section: str | None, key: str) -> str | None:
    """The dotted key the user probably meant: a close spelling here, else the same or a close key elsewhere."""
    here = SCHEMA[section] if section else tuple(SCHEMA)
    close = difflib.get_close_matches(key, here, n=1)
    if close:
        return f"{section}.{close[0]}" if section else close[0]
    elsewhere = {leaf: f"{name}.{leaf}" for name, keys in SCHEMA.items() if name != section for leaf in keys}
    close = difflib.get_close_matches(key, elsewhere, n=1)
    return elsewhere[close[0]] if close else None


def _is_dotted(name: str) -> bool:
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in name.split("."))


def _is_target(target: str) -> bool:
    module, sep, attr = target.partition(":")
    return bool(sep) and _is_dotted(module) and _is_dotted(attr)


def _is_host(host: str) -> bool:
    try:
        parse_url(f"tcp://[{host}]" if ":" in host else f"tcp://{host}")
    except ValueError:
        return False
    return not any(ch.isspace() for ch in host)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _optional_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _reason(exc: BaseException) -> str:
    """An OSError's reason in lower case, without the path and errno that the message shows already."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _options(choices: tuple[str, ...]) -> str:
    quoted = [f'"{choice}"' for choice in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _dotted(*parts: str) -> str:
    """A TOML-style dotted key: parts that are not bare keys are quoted, as they would be in the file."""
    return ".".join(part if _BARE_KEY.match(part) else _quote(part) for part in parts)


def _quote(text: str, limit: int = 60) -> str:
    """A string as a one-line TOML-like literal, shortened: found values must not break the message's line."""
    short = text if len(text) <= limit else text[:limit] + "..."
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    body = "".join(escapes.get(ch, ch) if ch.isprintable() or ch in escapes else f"\\u{ord(ch):04x}" for ch in short)
    return f'"{body}"'


def _show(value: object) -> str:
    """What was found, as the user would have written it in TOML (tables and arrays by kind only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 128 else "a huge integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        scheme, sep, rest = value.partition("://")
        if sep and "@" in rest:  # a URL pasted into the wrong key: its password stays hidden there too
            value = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return _quote(value)
    if isinstance(value, dict):
        return "a table" if value else "an empty table"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, datetime):
        return f"a date-time {value.isoformat()}"
    if isinstance(value, date):
        return f"a date {value.isoformat()}"
    if isinstance(value, time):
        return f"a time {value.isoformat()}"
    return type(value).__name__
