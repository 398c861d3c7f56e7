"""The config loader: defaults, every section, environment precedence, secrets, and one-line errors.

Pure unit tests: no server. Messages are checked whole, because their shape (file, dotted key, expected, found) is
what an operator reads when faktoryd exits with status 2.
"""

from __future__ import annotations

import math
import os
import re
import string
import sys
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faktoryd.config as config_module
from faktoryd import Settings
from faktoryd.config import (
    SCHEMA,
    Config,
    ConfigError,
    config_path_from,
    known_keys,
    load_config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "config" / "faktory.toml"
DOCS = ROOT / "docs" / "configuration.md"
APP = '[app]\nmodules = ["myapp.jobs"]\n'
SECRET = "pw-Zq8xK3vR7tY1"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path so messages start with the path as a user would type it: faktory.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str, environ: dict[str, str] | None = None, name: str = "faktory.toml") -> Config:
    Path(name).write_text(text)
    return load_config(name, {} if environ is None else environ)


def error(text: str, environ: dict[str, str] | None = None) -> str:
    """The ConfigError message for a document, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        load(text, environ)
    message = str(info.value)
    assert "\n" not in message
    assert "\r" not in message
    return message


# ----------------------------------------------------------------------------------------------- defaults


def test_defaults(here: Path) -> None:
    config = load(APP)
    assert config.path == here / "faktory.toml"
    f = config.faktory
    assert (f.url, f.url_source, f.password_file, f.password) == ("tcp://localhost:7419", "default", None, None)
    assert (f.tls_ca_file, f.tls_cert_file, f.tls_key_file, f.tls_verify) == (None, None, None, True)
    assert (f.connect_timeout, f.read_timeout, f.default_queue) == (5.0, 10.0, "default")
    w = config.worker
    assert w.processes == max(1, min(len(os.sched_getaffinity(0)), 1024))
    assert (w.threads, w.queues, w.weights, w.queue_order, w.labels) == (5, ("default",), None, "strict", ())
    assert (w.shutdown_timeout, w.job_timeout, w.heartbeat_interval) == (25.0, 0.0, 15.0)
    assert (w.max_jobs_per_child, w.max_jobs_jitter, w.max_memory_mb) == (0, 0, 0)
    assert (w.watchdog_timeout, w.restart_backoff_max) == (60.0, 30.0)
    assert config.app.modules == ("myapp.jobs",)
    assert (config.app.path, config.app.working_directory) == ((), None)
    assert config.handlers == {}
    assert (config.logging.level, config.logging.format) == ("INFO", "text")
    assert (config.embedded.enabled, config.embedded.host, config.embedded.port) == (False, "127.0.0.1", 7419)


def test_default_settings(here: Path) -> None:
    s = load(APP).settings()
    assert isinstance(s, Settings)
    assert (s.host, s.port, s.password, s.tls, s.namespace, s.default_queue) == (
        "localhost",
        7419,
        None,
        False,
        "",
        "default",
    )
    assert s.labels == ("python",)


def test_numbers_are_floats_and_ints_stay_ints(here: Path) -> None:
    w = load(APP + "[worker]\nshutdown_timeout = 10\nmax_memory_mb = 512\n").worker
    assert type(w.shutdown_timeout) is float
    assert type(w.max_memory_mb) is int


# ------------------------------------------------------------------------------------------------ [faktory]


def test_faktory_section(here: Path) -> None:
    (here / "certs").mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        (here / "certs" / name).write_text("-----BEGIN-----\n")
    config = load(
        APP
        + """
[faktory]
url = "tcp+tls://:p%40ss@faktory.internal:7500/app."
tls_ca_file = "certs/ca.pem"
tls_cert_file = "certs/client.pem"
tls_key_file = "certs/client.key"
tls_verify = false
connect_timeout = 2
read_timeout = 2.6
""",
        {"FAKTORY_QUEUE": "mail"},
    )
    assert config.faktory.url_source == "faktory.url"
    assert config.faktory.tls_ca_file == here / "certs" / "ca.pem"
    s = config.settings()
    assert (s.host, s.port, s.password, s.tls, s.namespace) == ("faktory.internal", 7500, "p@ss", True, "app.")
    assert (s.tls_ca_file, s.tls_cert_file, s.tls_key_file) == tuple(
        str(here / "certs" / n) for n in ("ca.pem", "client.pem", "client.key")
    )
    assert (s.tls_verify, s.connect_timeout, s.read_timeout, s.default_queue) == (False, 2.0, 2.6, "mail")


def test_env_url_overrides_file(here: Path) -> None:
    text = APP + '[faktory]\nurl = "tcp://file-host:7419"\n'
    config = load(text, {"FAKTORY_URL": "tcp://env-host:7000"})
    assert (config.faktory.url, config.faktory.url_source) == ("tcp://env-host:7000", "FAKTORY_URL")
    assert config.settings().host == "env-host"
    assert load(text, {"FAKTORY_URL": ""}).settings().host == "file-host"  # empty means unset


def test_faktory_provider_names_the_variable(here: Path) -> None:
    env = {"FAKTORY_PROVIDER": "MY_FAKTORY", "MY_FAKTORY": "tcp://other:1234", "FAKTORY_URL": "tcp://ignored"}
    config = load(APP, env)
    assert (config.faktory.url_source, config.settings().port) == ("MY_FAKTORY", 1234)


def test_bad_environment_url_names_the_variable_not_the_password(here: Path) -> None:
    message = error(APP, {"FAKTORY_URL": f"tcp://:{SECRET}@host:notaport"})
    assert message.startswith("environment variable FAKTORY_URL: invalid Faktory URL 'tcp://***@host:notaport'")
    assert SECRET not in message
    message = error(APP, {"FAKTORY_PROVIDER": "not a name"})
    assert message == (
        "environment variable FAKTORY_PROVIDER: expected the name of the variable that holds the Faktory URL, "
        'e.g. FAKTORY_URL, found "not a name"'
    )
    assert error(APP, {"FAKTORY_QUEUE": "a b"}) == (
        'environment variable FAKTORY_QUEUE: expected a queue name matching [a-zA-Z0-9._-]+, found "a b"'
    )


def test_bad_file_url_never_shows_the_password(here: Path) -> None:
    message = error(APP + f'[faktory]\nurl = "tcp://:{SECRET}@host:99999"\n')
    assert message.startswith("faktory.toml: faktory.url: invalid Faktory URL 'tcp://***@host:99999': port must be")
    assert SECRET not in message
    assert error(APP + "[faktory]\nurl = 7419\n") == (
        "faktory.toml: faktory.url: expected a Faktory URL string, found 7419"
    )


def test_tls_files_must_exist(here: Path) -> None:
    assert error(APP + '[faktory]\ntls_ca_file = "ca.pem"\n') == (
        f"faktory.toml: faktory.tls_ca_file: {here / 'ca.pem'}: no such file"
    )
    assert error(APP + '[faktory]\ntls_ca_file = "."\n') == (
        f"faktory.toml: faktory.tls_ca_file: {here}: is a directory, not a file"
    )
    (here / "client.key").write_text("key")
    assert error(APP + '[faktory]\ntls_key_file = "client.key"\n') == (
        "faktory.toml: faktory.tls_key_file: expected faktory.tls_cert_file too (it is the certificate's key), "
        "found no certificate"
    )


# ------------------------------------------------------------------------------------------ password_file


def test_password_file_overrides_the_url_password(here: Path) -> None:
    (here / "secret").write_text(f"  {SECRET}\n\n")
    config = load(APP + '[faktory]\nurl = "tcp://:fromurl@host"\npassword_file = "secret"\n')
    assert config.faktory.password_file == here / "secret"
    assert config.settings().password == SECRET
    for text in (repr(config), str(config), repr(config.faktory), repr(config.settings())):
        assert SECRET not in text
        assert "fromurl" not in text


def test_password_file_is_relative_to_the_config_file(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (here / "etc").mkdir()
    (here / "etc" / "secret").write_text(SECRET)
    (here / "etc" / "faktory.toml").write_text(APP + '[faktory]\npassword_file = "secret"\n')
    (here / "elsewhere").mkdir()
    monkeypatch.chdir(here / "elsewhere")
    config = load_config("../etc/faktory.toml", {})
    assert config.path == here / "etc" / "faktory.toml"
    assert config.settings().password == SECRET


@pytest.mark.parametrize(
    "form",
    [
        "${CREDENTIALS_DIRECTORY}/faktory-password",
        "$CREDENTIALS_DIRECTORY/faktory-password",
    ],
)
def test_password_file_expands_variables(here: Path, form: str) -> None:
    creds = here / "run" / "credentials" / "faktoryd.service"
    creds.mkdir(parents=True)
    (creds / "faktory-password").write_text(SECRET + "\n")
    config = load(APP + f'[faktory]\npassword_file = "{form}"\n', {"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.faktory.password_file == creds / "faktory-password"
    assert config.settings().password == SECRET


@pytest.mark.parametrize("environ", [{}, {"CREDENTIALS_DIRECTORY": ""}])
def test_password_file_unset_variable(here: Path, environ: dict[str, str]) -> None:
    message = error(APP + '[faktory]\npassword_file = "${CREDENTIALS_DIRECTORY}/faktory-password"\n', environ)
    assert message == (
        "faktory.toml: faktory.password_file: environment variable CREDENTIALS_DIRECTORY is not set "
        '(systemd sets it for units with LoadCredential=), found in "${CREDENTIALS_DIRECTORY}/faktory-password"'
    )


def test_password_file_problems_never_show_the_contents(here: Path) -> None:
    text = APP + '[faktory]\npassword_file = "secret"\n'
    path = here / "secret"
    assert error(text) == f"faktory.toml: faktory.password_file: {path}: no such file"
    path.write_text(" \n\t")
    assert error(text) == f"faktory.toml: faktory.password_file: {path}: is empty; expected the password"
    path.write_bytes(SECRET.encode() + b"\xff")
    assert error(text) == f"faktory.toml: faktory.password_file: {path}: not UTF-8 text"
    path.write_text(SECRET * 5000)
    message = error(text)
    assert message == f"faktory.toml: faktory.password_file: {path}: larger than 64 KiB; expected just the password"
    path.unlink()
    path.mkdir()
    assert error(text) == f"faktory.toml: faktory.password_file: {path}: is a directory, not a file"
    path.rmdir()
    os.mkfifo(path)
    assert error(text) == f"faktory.toml: faktory.password_file: {path}: not a regular file"


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root from reading")
def test_password_file_unreadable(here: Path) -> None:
    path = here / "secret"
    path.write_text(SECRET)
    path.chmod(0)
    message = error(APP + '[faktory]\npassword_file = "secret"\n')
    assert message == f"faktory.toml: faktory.password_file: {path}: cannot read it: permission denied"


# ------------------------------------------------------------------------------------------------- [worker]


def test_worker_section(here: Path) -> None:
    w = load(
        APP
        + """
[worker]
processes = 3
threads = 20
queues = ["critical", "default", "low"]
queue_order = "random"
labels = ["fast", "eu-west"]
shutdown_timeout = 8.5
job_timeout = 300
max_jobs_per_child = 1000
max_jobs_jitter = 50
max_memory_mb = 512
heartbeat_interval = 5
watchdog_timeout = 30
restart_backoff_max = 1
"""
    ).worker
    assert (w.processes, w.threads, w.queues, w.weights, w.queue_order) == (
        3,
        20,
        ("critical", "default", "low"),
        None,
        "random",
    )
    assert (w.labels, w.shutdown_timeout, w.job_timeout) == (("fast", "eu-west"), 8.5, 300.0)
    assert (w.max_jobs_per_child, w.max_jobs_jitter, w.max_memory_mb) == (1000, 50, 512)
    assert (w.heartbeat_interval, w.watchdog_timeout, w.restart_backoff_max) == (5.0, 30.0, 1.0)


def test_labels_go_after_python(here: Path) -> None:
    config = load(APP + '[worker]\nlabels = ["fast", "python", "fast"]\n')
    assert config.settings().labels == ("python", "fast")


def test_weighted_table(here: Path) -> None:
    w = load(APP + "[worker.queues]\ncritical = 6\n'low.priority' = 1\ndefault = 3\n").worker
    assert w.queues == ("critical", "low.priority", "default")
    assert w.weights == {"critical": 6, "low.priority": 1, "default": 3}
    assert w.queue_order == "weighted"


def test_weighted_list_means_equal_weights(here: Path) -> None:
    w = load(APP + '[worker]\nqueues = ["a", "b"]\nqueue_order = "weighted"\n').worker
    assert (w.queues, w.weights, w.queue_order) == (("a", "b"), {"a": 1, "b": 1}, "weighted")


@pytest.mark.parametrize(
    ("worker", "message"),
    [
        ("processes = -1", "worker.processes: expected an integer from 1 to 1024, found -1"),
        ("processes = 1025", "worker.processes: expected an integer from 1 to 1024, found 1025"),
        ("processes = true", "worker.processes: expected an integer from 1 to 1024, found true"),
        ("processes = 2.0", "worker.processes: expected an integer from 1 to 1024, found 2.0"),
        ('processes = "4"', 'worker.processes: expected an integer from 1 to 1024, found "4"'),
        ("processes = [4]", "worker.processes: expected an integer from 1 to 1024, found an array"),
        (
            "processes = 1979-05-27T07:32:00",
            "worker.processes: expected an integer from 1 to 1024, found a date-time 1979-05-27T07:32:00",
        ),
        (
            "processes = 0x" + "f" * 100,
            "worker.processes: expected an integer from 1 to 1024, found a huge integer",
        ),
        ("threads = 0", "worker.threads: expected an integer from 1 to 1000, found 0"),
        ("threads = 1001", "worker.threads: expected an integer from 1 to 1000, found 1001"),
        (
            "queues = []",
            "worker.queues: expected a non-empty list of queue names, or a table of queue = weight, "
            "found an empty array",
        ),
        (
            "queues = {}",
            "worker.queues: expected a non-empty list of queue names, or a table of queue = weight, "
            "found an empty table",
        ),
        (
            'queues = "default"',
            'worker.queues: expected a non-empty list of queue names, or a table of queue = weight, found "default"',
        ),
        (
            'queues = ["ok", "not ok"]',
            'worker.queues[1]: expected a queue name matching [a-zA-Z0-9._-]+, found "not ok"',
        ),
        ('queues = ["a", 1]', "worker.queues[1]: expected a queue name matching [a-zA-Z0-9._-]+, found 1"),
        ('queues = ["a", "b", "a"]', 'worker.queues[2]: expected each queue once, found "a" again'),
        (
            'queues = { "not ok" = 1 }',
            'worker.queues."not ok": expected a queue name matching [a-zA-Z0-9._-]+, found "not ok"',
        ),
        ("queues = { a = 0 }", "worker.queues.a: expected an integer from 1 to 1000, found 0"),
        ("queues = { a = 1.5 }", "worker.queues.a: expected an integer from 1 to 1000, found 1.5"),
        ("queues = { 'a.b' = 1001 }", 'worker.queues."a.b": expected an integer from 1 to 1000, found 1001'),
        ('queue_order = "fifo"', 'worker.queue_order: expected one of "strict", "random" or "weighted", found "fifo"'),
        (
            'queues = { a = 1 }\nqueue_order = "strict"',
            'worker.queue_order: expected "weighted" (worker.queues is a table of weights), found "strict"',
        ),
        (
            'queues = { a = 1 }\nqueue_order = "random"',
            'worker.queue_order: expected "weighted" (worker.queues is a table of weights), found "random"',
        ),
        ('labels = "fast"', 'worker.labels: expected a list of label strings, found "fast"'),
        ('labels = ["ok", ""]', 'worker.labels[1]: expected a non-empty string, found ""'),
        (
            "shutdown_timeout = 0",
            "worker.shutdown_timeout: expected a number of seconds greater than 0 and at most 3600, found 0",
        ),
        (
            "shutdown_timeout = 3600.5",
            "worker.shutdown_timeout: expected a number of seconds greater than 0 and at most 3600, found 3600.5",
        ),
        (
            "shutdown_timeout = nan",
            "worker.shutdown_timeout: expected a number of seconds greater than 0 and at most 3600, found nan",
        ),
        (
            "shutdown_timeout = false",
            "worker.shutdown_timeout: expected a number of seconds greater than 0 and at most 3600, found false",
        ),
        (
            "job_timeout = -1",
            "worker.job_timeout: expected a number of seconds greater than 0, or 0 for no limit, found -1",
        ),
        (
            "job_timeout = inf",
            "worker.job_timeout: expected a number of seconds greater than 0, or 0 for no limit, found inf",
        ),
        (
            "job_timeout = " + "9" * 400,
            "worker.job_timeout: expected a number of seconds greater than 0, or 0 for no limit, found a huge integer",
        ),
        ("max_jobs_per_child = -1", "worker.max_jobs_per_child: expected an integer >= 0, found -1"),
        ("max_jobs_jitter = 0.5", "worker.max_jobs_jitter: expected an integer >= 0, found 0.5"),
        ("max_memory_mb = -inf", "worker.max_memory_mb: expected an integer >= 0, found -inf"),
        ("heartbeat_interval = 4.9", "worker.heartbeat_interval: expected a number of seconds from 5 to 60, found 4.9"),
        ("heartbeat_interval = 61", "worker.heartbeat_interval: expected a number of seconds from 5 to 60, found 61"),
        ("watchdog_timeout = 0", "worker.watchdog_timeout: expected a number of seconds greater than 0, found 0"),
        (
            "restart_backoff_max = 0.5",
            "worker.restart_backoff_max: expected a number of seconds of at least 1, found 0.5",
        ),
    ],
)
def test_worker_errors(here: Path, worker: str, message: str) -> None:
    assert error(APP + f"[worker]\n{worker}\n") == f"faktory.toml: {message}"


@pytest.mark.parametrize(
    "worker",
    [
        "processes = 1",
        "processes = 1024",
        "threads = 1000",
        "shutdown_timeout = 3600",
        "shutdown_timeout = 0.1",
        "job_timeout = 0",
        "job_timeout = 0.5",
        "heartbeat_interval = 5",
        "heartbeat_interval = 60",
        "restart_backoff_max = 1",
        "queues = { a = 1000 }",
    ],
)
def test_worker_bounds_are_inclusive_where_documented(here: Path, worker: str) -> None:
    load(APP + f"[worker]\n{worker}\n")


def test_read_timeout_must_exceed_fetch_block(here: Path) -> None:
    assert error(APP + "[faktory]\nread_timeout = 2.5\n") == (
        "faktory.toml: faktory.read_timeout: expected a number of seconds greater than 2.5 (FETCH blocks 2 s on "
        "the server), found 2.5"
    )
    assert error(APP + "[faktory]\nconnect_timeout = 0\n") == (
        "faktory.toml: faktory.connect_timeout: expected a number of seconds greater than 0, found 0"
    )


# ---------------------------------------------------------------------------------------------------- [app]


def test_app_section(here: Path) -> None:
    (here / "src").mkdir()
    (here / "lib.zip").write_bytes(b"")
    config = load(
        '[app]\nmodules = ["myapp.jobs", "reports"]\npath = ["src", "lib.zip", "/"]\nworking_directory = "src"\n'
    )
    assert config.app.modules == ("myapp.jobs", "reports")
    assert config.app.path == (here / "src", here / "lib.zip", Path("/"))
    assert config.app.working_directory == here / "src"


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ('modules = "myapp"', 'app.modules: expected a list of dotted module names, found "myapp"'),
        ('modules = ["a..b"]', 'app.modules[0]: expected a dotted module name such as myapp.jobs, found "a..b"'),
        ('modules = ["ok", "1abc"]', 'app.modules[1]: expected a dotted module name such as myapp.jobs, found "1abc"'),
        (
            'modules = ["my.class"]',
            'app.modules[0]: expected a dotted module name such as myapp.jobs, found "my.class"',
        ),
        (
            'modules = ["myapp.jobs:run"]',
            'app.modules[0]: expected a dotted module name such as myapp.jobs, found "myapp.jobs:run"',
        ),
        ('path = "src"', 'app.path: expected a list of directories, found "src"'),
        ('path = [""]', 'app.path[0]: expected a non-empty path, found ""'),
        ("path = [1]", "app.path[0]: expected a non-empty path, found 1"),
        ("working_directory = true", "app.working_directory: expected a non-empty path, found true"),
    ],
)
def test_app_errors(here: Path, app: str, message: str) -> None:
    assert error(f'[handlers]\nX = "a:b"\n[app]\n{app}\n') == f"faktory.toml: {message}"


def test_app_directories_must_exist(here: Path) -> None:
    assert error(APP + 'path = ["src"]\n') == f"faktory.toml: app.path[0]: {here / 'src'}: no such file or directory"
    (here / "file").write_text("")
    for value in ("nowhere", "file"):
        assert error(APP + f'working_directory = "{value}"\n') == (
            f"faktory.toml: app.working_directory: {here / value}: no such directory"
        )


# ----------------------------------------------------------------------------------------------- [handlers]


def test_handlers_alone_are_enough(here: Path) -> None:
    config = load('[handlers]\nSendEmail = "myapp.jobs:send_email"\n"report.daily" = "myapp.jobs:Reports.daily"\n')
    assert config.handlers == {"SendEmail": "myapp.jobs:send_email", "report.daily": "myapp.jobs:Reports.daily"}
    assert config.app.modules == ()


@pytest.mark.parametrize(
    ("handlers", "message"),
    [
        (
            'SendEmail = "myapp.jobs"',
            'handlers.SendEmail: expected "module:function", e.g. "myapp.jobs:send_email", found "myapp.jobs"',
        ),
        (
            'SendEmail = "myapp.jobs:"',
            'handlers.SendEmail: expected "module:function", e.g. "myapp.jobs:send_email", found "myapp.jobs:"',
        ),
        (
            'SendEmail = "a:b:c"',
            'handlers.SendEmail: expected "module:function", e.g. "myapp.jobs:send_email", found "a:b:c"',
        ),
        (
            '"send.email" = 3',
            'handlers."send.email": expected "module:function", e.g. "myapp.jobs:send_email", found 3',
        ),
        ('"" = "a:b"', 'handlers."": expected a job type name, found an empty key'),
        (
            "[handlers.Send]\nx = 1",
            'handlers.Send: expected "module:function", e.g. "myapp.jobs:send_email", found a table',
        ),
    ],
)
def test_handler_errors(here: Path, handlers: str, message: str) -> None:
    assert error(f"[handlers]\n{handlers}\n") == f"faktory.toml: {message}"


@pytest.mark.parametrize("text", ["", "\n# nothing here\n", APP.replace('["myapp.jobs"]', "[]"), "[handlers]\n"])
def test_no_handlers_is_an_error(here: Path, text: str) -> None:
    assert error(text) == (
        "faktory.toml: no job handlers: list the modules that register them with @faktoryd.job in [app] modules, "
        'or map job types to "module:function" in [handlers]'
    )


# ------------------------------------------------------------------------------------------------ [logging]


def test_logging_section(here: Path) -> None:
    config = load(APP + '[logging]\nlevel = "debug"\nformat = "json"\n')
    assert (config.logging.level, config.logging.format) == ("DEBUG", "json")


def test_log_level_environment_overrides_file(here: Path) -> None:
    text = APP + '[logging]\nlevel = "debug"\n'
    assert load(text, {"FAKTORYD_LOG_LEVEL": "warning"}).logging.level == "WARNING"
    assert load(text, {"FAKTORYD_LOG_LEVEL": ""}).logging.level == "DEBUG"
    assert error(text, {"FAKTORYD_LOG_LEVEL": "verbose"}) == (
        'environment variable FAKTORYD_LOG_LEVEL: expected one of "DEBUG", "INFO", "WARNING", "ERROR" or '
        '"CRITICAL" (any case), found "verbose"'
    )


@pytest.mark.parametrize(
    ("logging", "message"),
    [
        (
            'level = "verbose"',
            'logging.level: expected one of "DEBUG", "INFO", "WARNING", "ERROR" or "CRITICAL" '
            '(any case), found "verbose"',
        ),
        (
            "level = 10",
            'logging.level: expected one of "DEBUG", "INFO", "WARNING", "ERROR" or "CRITICAL" (any case), found 10',
        ),
        ('format = "xml"', 'logging.format: expected one of "text" or "json", found "xml"'),
        ('format = "JSON"', 'logging.format: expected one of "text" or "json", found "JSON"'),
    ],
)
def test_logging_errors(here: Path, logging: str, message: str) -> None:
    assert error(APP + f"[logging]\n{logging}\n") == f"faktory.toml: {message}"


# ----------------------------------------------------------------------------------------------- [embedded]


def test_embedded_is_the_url_only_when_none_is_configured(here: Path) -> None:
    text = APP + '[embedded]\nenabled = true\nhost = "127.0.0.2"\nport = 7500\n'
    config = load(text)
    assert (config.faktory.url, config.faktory.url_source) == ("tcp://127.0.0.2:7500", "embedded")
    assert (config.settings().host, config.settings().port) == ("127.0.0.2", 7500)
    assert load(text + '[faktory]\nurl = "tcp://real:7419"\n').faktory.url_source == "faktory.url"
    assert load(text, {"FAKTORY_URL": "tcp://env:7419"}).faktory.url_source == "FAKTORY_URL"
    assert load(text.replace("true", "false")).faktory.url_source == "default"


def test_embedded_ipv6_host(here: Path) -> None:
    config = load(APP + '[embedded]\nenabled = true\nhost = "::1"\n')
    assert config.faktory.url == "tcp://[::1]:7419"
    assert config.settings().host == "::1"


@pytest.mark.parametrize(
    ("embedded", "message"),
    [
        ('enabled = "yes"', 'embedded.enabled: expected true or false, found "yes"'),
        ("enabled = 1", "embedded.enabled: expected true or false, found 1"),
        ('host = ""', 'embedded.host: expected a host name or IP address, found ""'),
        ('host = "a b"', 'embedded.host: expected a host name or IP address, found "a b"'),
        ('host = "tcp://x"', 'embedded.host: expected a host name or IP address, found "tcp://x"'),
        (f'host = "tcp://:{SECRET}@h"', 'embedded.host: expected a host name or IP address, found "tcp://***@h"'),
        ("port = 0", "embedded.port: expected an integer from 1 to 65535, found 0"),
        ("port = 65536", "embedded.port: expected an integer from 1 to 65535, found 65536"),
    ],
)
def test_embedded_errors(here: Path, embedded: str, message: str) -> None:
    assert error(APP + f"[embedded]\n{embedded}\n") == f"faktory.toml: {message}"


# --------------------------------------------------------------------------------- unknown keys and shapes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[worker]\nproceses = 4", "worker.proceses: unknown key (did you mean worker.processes?)"),
        ("[wroker]\nprocesses = 4", "wroker: unknown key (did you mean worker?)"),
        ('url = "tcp://localhost"', "url: unknown key (did you mean faktory.url?)"),
        ('[worker]\nlevel = "DEBUG"', "worker.level: unknown key (did you mean logging.level?)"),
        ('[faktory]\npassword = "hunter2"', "faktory.password: unknown key (did you mean faktory.password_file?)"),
        ('[app]\nmodules = ["x"]\nmodule = []', "app.module: unknown key (did you mean app.modules?)"),
        ("[worker]\nzzzz = 1", "worker.zzzz: unknown key"),
        ('[worker]\n"odd key" = 1', 'worker."odd key": unknown key'),
        ("[handler]\nX = 'a:b'", "handler: unknown key (did you mean handlers?)"),
        ("worker = 5", "worker: expected a table ([worker]), found 5"),
        ("handlers = []", "handlers: expected a table ([handlers]), found an empty array"),
    ],
)
def test_unknown_keys_and_wrong_shapes(here: Path, text: str, message: str) -> None:
    assert error(text + "\n" + ("" if "[app]" in text else APP)) == f"faktory.toml: {message}"


def test_unknown_key_is_reported_before_a_bad_value(here: Path) -> None:
    """A typo explains the other mistakes more often than not, so it comes first."""
    assert error(APP + "[worker]\nprocesses = -1\nthreds = 2\n") == (
        "faktory.toml: worker.threds: unknown key (did you mean worker.threads?)"
    )


def test_found_strings_stay_on_one_line(here: Path) -> None:
    message = error(APP + '[logging]\nformat = "a\\nb\\u2028c\\u0000"\n')
    assert message == 'faktory.toml: logging.format: expected one of "text" or "json", found "a\\nb\\u2028c\\u0000"'
    assert len(error(APP + f'[logging]\nformat = "{"x" * 500}"\n')) < 200


# -------------------------------------------------------------------------------------------- file problems


def test_missing_file(here: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("faktory.toml", {})
    assert str(info.value) == "faktory.toml: no such file; pass --config PATH or set FAKTORY_CONFIG"


def test_path_as_given_in_messages(here: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Path("./conf/../nope.toml"), {})
    assert str(info.value).startswith("conf/../nope.toml: no such file")


def test_directory(here: Path) -> None:
    (here / "conf.d").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config("conf.d", {})
    assert str(info.value) == "conf.d: is a directory, not a TOML file"


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root from reading")
def test_unreadable_file(here: Path) -> None:
    Path("faktory.toml").write_text(APP)
    Path("faktory.toml").chmod(0)
    with pytest.raises(ConfigError) as info:
        load_config("faktory.toml", {})
    assert str(info.value) == "faktory.toml: cannot read it: permission denied"


def test_unreadable_file_message(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same case as test_unreadable_file, by simulation, so it is covered when the tests run as root."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    Path("faktory.toml").write_text(APP)
    monkeypatch.setattr(config_module, "open", refuse, raising=False)
    with pytest.raises(ConfigError) as info:
        load_config("faktory.toml", {})
    assert str(info.value) == "faktory.toml: cannot read it: permission denied"


def test_other_os_errors(here: Path) -> None:
    for path, reason in (("x" * 5000, "file name too long"), ("a\0b", "the path contains a NUL character")):
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert str(info.value) == f"{path}: cannot read it: {reason}"


def test_not_utf8(here: Path) -> None:
    Path("faktory.toml").write_bytes(APP.encode() + b'[logging]\nlevel = "\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config("faktory.toml", {})
    assert str(info.value) == "faktory.toml: not UTF-8 text (byte 0xe9 on line 4)"


def test_byte_order_mark_is_accepted(here: Path) -> None:
    Path("faktory.toml").write_bytes(b"\xef\xbb\xbf" + APP.encode())
    assert load_config("faktory.toml", {}).app.modules == ("myapp.jobs",)


@pytest.mark.parametrize("text", ["[worker\nprocesses = 4", "[worker]\nprocesses = 4\nprocesses = 5", 'a = "x'])
def test_not_toml(here: Path, text: str) -> None:
    """The parser's own message (it varies between tomllib and tomli versions) after the file name."""
    with pytest.raises(tomllib.TOMLDecodeError) as parser:
        tomllib.loads(text)
    assert error(text) == f"faktory.toml: not valid TOML: {parser.value}"
    assert re.search(r"\(at (line \d+, column \d+|end of document)\)$", error(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = " + "1" * 5000, "not valid TOML: a number has too many digits"),
        ("a = " + "[" * 100_000, "not valid TOML: arrays or tables nested too deeply"),
    ],
)
def test_toml_the_parser_chokes_on(here: Path, text: str, message: str) -> None:
    assert error(text) == f"faktory.toml: {message}"


# ------------------------------------------------------------------------------------------ config_path_from


def test_config_path_from() -> None:
    assert config_path_from("cli.toml", {"FAKTORY_CONFIG": "env.toml"}) == "cli.toml"
    assert config_path_from(None, {"FAKTORY_CONFIG": "env.toml"}) == "env.toml"
    assert config_path_from("", {"FAKTORY_CONFIG": "env.toml"}) == "env.toml"
    for environ in ({}, {"FAKTORY_CONFIG": ""}):
        with pytest.raises(ConfigError) as info:
            config_path_from(None, environ)
        assert str(info.value) == "no config file given: pass --config PATH or set FAKTORY_CONFIG"
    with pytest.raises(ConfigError, match="no config file given"):
        load_config("", {})


# ----------------------------------------------------------------------------------- the reference and docs


def reference_keys(text: str) -> tuple[set[str], set[str]]:
    """The dotted keys the reference sets, and those it shows commented out as `# key = value`."""
    active: set[str] = set()
    commented: set[str] = set()
    section = ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\[([a-z_]+)\]", line):
            section = header[1]
            active.add(section)
        elif key := re.match(r"([a-z_]+) = ", line):
            active.add(f"{section}.{key[1]}")
        elif key := re.match(r"# ([a-z_]+) = ", line):
            commented.add(f"{section}.{key[1]}")
    return active, commented


def with_stub_handler(text: str) -> str:
    """The reference with one handler, since a config with none is rejected. [handlers] is its last table."""
    assert [line for line in text.splitlines() if line.startswith("[")][-1] == "[handlers]"
    return text + 'Stub = "tests.stub:run"\n'


def test_reference_lists_every_key_the_loader_accepts() -> None:
    active, commented = reference_keys(REFERENCE.read_text())
    assert active | commented == set(known_keys()) | set(SCHEMA)


def test_reference_values_are_the_defaults(here: Path) -> None:
    reference = load(with_stub_handler(REFERENCE.read_text()), name="reference.toml")
    minimal = load('[handlers]\nStub = "tests.stub:run"\n', name="minimal.toml")
    for section in ("faktory", "worker", "app", "handlers", "logging", "embedded"):
        assert getattr(reference, section) == getattr(minimal, section), section


def test_reference_commented_examples_parse(here: Path) -> None:
    """Uncommenting any documented example (with the files it names present) still loads."""
    text = REFERENCE.read_text()
    active, _ = reference_keys(text)
    section = ""
    lines = []
    for line in text.splitlines():
        if header := re.fullmatch(r"\[([a-z_]+)\]", line):
            section = header[1]
        key = re.match(r"# ([a-z_]+) = ", line)
        lines.append(line[2:] if key and f"{section}.{key[1]}" not in active else line)
    for name in ("ca.pem", "client.pem", "client.key", "faktory-password"):
        (here / name).write_text("x")
    config = load(
        with_stub_handler("\n".join(lines) + "\n"), {"CREDENTIALS_DIRECTORY": str(here)}, name="uncommented.toml"
    )
    assert config.worker.processes == 4
    assert config.faktory.url_source == "faktory.url"
    assert config.faktory.password == "x"
    assert config.app.working_directory == here


def test_docs_list_every_key() -> None:
    docs = DOCS.read_text()
    missing = [key for key in known_keys() if f"`{key}`" not in docs]
    assert not missing, f"docs/configuration.md does not document {missing}"


# ----------------------------------------------------------------------------------------- property tests


def toml_string(text: str) -> str:
    escaped = "".join(
        {"\\": "\\\\", '"': '\\"'}.get(ch, ch) if ch >= " " and ch != "\x7f" else f"\\u{ord(ch):04x}" for ch in text
    )
    return f'"{escaped}"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    assert isinstance(value, datetime | date | time)
    return value.isoformat()


def toml_document(doc: dict[str, Any]) -> str:
    """TOML for a dict: top-level values first, then one [table] per nested dict."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


LEAF_KEYS = sorted({key for keys in SCHEMA.values() for key in keys})
INTERESTING = [
    "default",
    "myapp.jobs",
    "myapp.jobs:run",
    "tcp://localhost:7419",
    "tcp+tls://h",
    "INFO",
    "json",
    "weighted",
    "strict",
    "random",
    "${CREDENTIALS_DIRECTORY}/faktory-password",
    "$HOME",
    ".",
    "/",
    "secret",
    "::1",
    "",
]
keys = st.one_of(st.sampled_from(LEAF_KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=70_000),
    st.floats(),
    st.sampled_from(INTERESTING),
    st.text(max_size=20),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=10,
)
# Mostly documents whose keys are right and whose values are not (so every validator is reached), some anything.
well_keyed = st.fixed_dictionaries(
    {},
    optional={
        name: st.dictionaries(st.sampled_from(names) if names else keys, values, max_size=len(names) or 3)
        for name, names in SCHEMA.items()
    },
)
anything = st.dictionaries(
    st.one_of(st.sampled_from(list(SCHEMA)), keys),
    st.one_of(st.dictionaries(keys, values, max_size=6), values),
    max_size=7,
)
documents = st.one_of(well_keyed, well_keyed, well_keyed, anything)
SECRET_URLS = [f"tcp://:{SECRET}@host:7419", f"tcp://:{SECRET}@host:x", f"tcp://:{SECRET}@", f"tcp://u:{SECRET}@h/a b"]
environments = st.fixed_dictionaries(
    {},
    optional={
        "FAKTORY_URL": st.sampled_from(INTERESTING + SECRET_URLS) | st.text(max_size=20),
        "FAKTORY_PROVIDER": st.sampled_from(["FAKTORY_URL", "OTHER", "bad name", ""]),
        "FAKTORYD_LOG_LEVEL": st.sampled_from(["debug", "INFO", "loud", ""]),
        "FAKTORY_QUEUE": st.sampled_from(["default", "a b", ""]),
        "CREDENTIALS_DIRECTORY": st.sampled_from(["", ".", "/nonexistent"]),
    },
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_config_or_config_error(path: Path, environ: dict[str, str]) -> None:
    """The property: a Config, or a one-line ConfigError that never shows the secret."""
    try:
        config = load_config(path, environ)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert SECRET not in message
    else:
        assert isinstance(config.settings(), Settings)
        assert SECRET not in repr(config)


@PROPERTY
@given(doc=documents, environ=environments, stub=st.booleans(), url=st.none() | st.sampled_from(SECRET_URLS))
def test_any_document_gives_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any], environ: dict[str, str], stub: bool, url: str | None
) -> None:
    """Random keys and values, in and out of the schema; the secret appears only where a URL belongs."""
    if stub and "handlers" not in doc:
        doc["handlers"] = {"Stub": "tests.stub:run"}
    if url is not None and isinstance(doc.get("faktory", {}), dict):
        doc["faktory"] = {**doc.get("faktory", {}), "url": url}
    text = toml_document(doc)
    tomllib.loads(text)  # the generator itself writes valid TOML
    path = tmp_path_factory.getbasetemp() / "property.toml"
    path.write_text(text)
    only_config_or_config_error(path, environ)


@PROPERTY
@given(data=st.binary(max_size=300) | st.text(alphabet=string.printable, max_size=300).map(str.encode))
def test_any_bytes_give_a_config_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "bytes.toml"
    path.write_bytes(data)
    only_config_or_config_error(path, {})
