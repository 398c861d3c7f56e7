"""Settings from URLs and the environment; the password never leaks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faktoryd import Settings, env_settings
from faktoryd.settings import parse_url


def test_defaults() -> None:
    s = env_settings({})
    assert (s.host, s.port, s.password, s.tls, s.namespace, s.default_queue) == (
        "localhost",
        7419,
        None,
        False,
        "",
        "default",
    )
    assert s.read_timeout > 2.5


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://localhost:7419", ("localhost", 7419, None, False, "")),
        ("tcp://faktory", ("faktory", 7419, None, False, "")),
        ("tcp://:s3cret@10.0.0.5:7500", ("10.0.0.5", 7500, "s3cret", False, "")),
        ("tcp+tls://:p%40ss%2Fw%3Ard@host:7419", ("host", 7419, "p@ss/w:rd", True, "")),
        ("tcp://user:pw@host:1/myapp.", ("host", 1, "pw", False, "myapp.")),
        ("tcp://[::1]:7419", ("::1", 7419, None, False, "")),
        ("tcp://:a@b@host", ("host", 7419, "a@b", False, "")),
    ],
)
def test_parse_url(url: str, expected: tuple) -> None:
    s = Settings.from_url(url)
    assert (s.host, s.port, s.password, s.tls, s.namespace) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:7419", "expected tcp://"),
        ("localhost:7419", "expected tcp://"),
        ("tcp://:hunter2@host:port", "port must be a number"),
        ("tcp://:hunter2@host:70000", "port must be a number"),
        ("tcp://:hunter2@host:", "empty port"),
        ("tcp://:hunter2@host:7419/bad space", "namespace"),
        ("tcp://", "expected tcp://"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_url(url)
    assert "hunter2" not in str(info.value)
    assert "tcp://[:password@]host[:port][/namespace]" in str(info.value)


def test_provider_names_the_variable() -> None:
    s = env_settings({"FAKTORY_PROVIDER": "MY_FAKTORY", "MY_FAKTORY": "tcp://:pw@h:9", "FAKTORY_URL": "tcp://x"})
    assert (s.host, s.port, s.password) == ("h", 9, "pw")


def test_bad_provider_and_bad_url_in_environment() -> None:
    with pytest.raises(ValueError, match="FAKTORY_PROVIDER"):
        env_settings({"FAKTORY_PROVIDER": "tcp://:pw@host"})
    with pytest.raises(ValueError, match=r"^FAKTORY_URL: invalid Faktory URL") as info:
        env_settings({"FAKTORY_URL": "tcp://:topsecret@host:x"})
    assert "topsecret" not in str(info.value)


def test_faktory_queue_sets_default_queue() -> None:
    assert env_settings({"FAKTORY_QUEUE": "critical"}).default_queue == "critical"
    with pytest.raises(ValueError, match="queue names must match"):
        env_settings({"FAKTORY_QUEUE": "no spaces"})


def test_password_never_in_repr_or_url() -> None:
    s = Settings.from_url("tcp+tls://:topsecret@host:1/ns")
    assert "topsecret" not in repr(s) and "topsecret" not in str(s)
    assert s.url == "tcp+tls://:***@host:1/ns"


def test_namespace_prefixes_queues() -> None:
    assert Settings.from_url("tcp://h/app-").queue_name("mail") == "app-mail"
    assert Settings().queue_name("mail") == "mail"


@pytest.mark.parametrize("field", [{"port": 0}, {"read_timeout": 2.0}, {"connect_timeout": 0}])
def test_invalid_field_values(field: dict) -> None:
    with pytest.raises(ValueError):
        Settings(**field)


@given(st.text(max_size=60))
def test_url_parser_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_url(text)


@given(
    secret=st.text(alphabet="QXZqxz#%!~", min_size=6, max_size=12),
    rest=st.text(max_size=30),
)
def test_url_errors_never_contain_the_password(secret: str, rest: str) -> None:
    try:
        parse_url(f"tcp://:{secret}@{rest}")
    except ValueError as exc:
        assert secret not in str(exc)


@given(
    password=st.text(min_size=1, max_size=20),
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    port=st.integers(1, 65535),
    tls=st.booleans(),
)
def test_url_round_trip(password: str, host: str, port: int, tls: bool) -> None:
    from urllib.parse import quote

    url = f"tcp{'+tls' if tls else ''}://:{quote(password, safe='')}@{host}:{port}"
    s = Settings.from_url(url)
    assert (s.password, s.host, s.port, s.tls) == (password, host, port, tls)
    assert s.url == f"tcp{'+tls' if tls else ''}://:***@{host}:{port}"
