"""Property tests (hypothesis) for the parsers: the wire protocol, Faktory URLs, the config loader, and the
embedded server's line handler.

Each parser raises only its documented error on any input (``ProtocolError``, ``ValueError``, ``ConfigError``),
and what one side encodes the other decodes to the same value. The example-based and simpler property tests
are in test_protocol.py, test_settings.py and test_config.py; these generate the content itself (any bytes in a
bulk, any JSON payload, any valid config) rather than choosing from fixed examples.
"""

from __future__ import annotations

import contextlib
import json
import keyword
import logging
import socket
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faktoryd import Settings, env_settings
from faktoryd import protocol as p
from faktoryd.config import SCHEMA, ConfigError, load_config
from faktoryd.embedded import EmbeddedServer
from faktoryd.embedded.commands import END, Dispatcher, Pending, RuntimeStats
from faktoryd.embedded.store import Store
from faktoryd.errors import ProtocolError
from faktoryd.protocol import NEED_DATA, ErrorReply, ReplyParser
from faktoryd.settings import parse_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHORT = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------- wire replies

line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)
error_code = st.text(st.characters(blacklist_characters=" \r\n", blacklist_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def replies(draw: st.DrawFn) -> tuple[bytes, p.Reply]:
    """Any reply the server may send, as (bytes on the wire, what the parser must return)."""
    kind = draw(st.sampled_from(["simple", "error", "bulk", "null", "integer"]))
    if kind == "simple":
        text = draw(line_text)
        return b"+" + text.encode() + b"\r\n", text
    if kind == "error":
        code, message = draw(error_code), draw(line_text)
        return f"-{code} {message}\r\n".encode(), ErrorReply(code, message)
    if kind == "bulk":
        data = draw(st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"$-1\r\n", b"+OK\r\n\r\n"]))
        return b"$%d\r\n%s\r\n" % (len(data), data), data
    if kind == "null":
        return b"$-1\r\n", None
    number = draw(st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1))
    return b":%d\r\n" % number, number


def feed_in_chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    last = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        yield data[last:cut]
        last = cut
    yield data[last:]


@FUZZ
@given(st.lists(replies(), min_size=1, max_size=10), st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_generated_replies_round_trip_under_any_fragmentation(
    items: list[tuple[bytes, p.Reply]], cuts: list[int]
) -> None:
    data = b"".join(raw for raw, _ in items)
    parser = ReplyParser()
    got: list[p.Reply] = []
    for chunk in feed_in_chunks(data, cuts):
        parser.feed(chunk)
        while (reply := parser.next_reply()) is not NEED_DATA:
            got.append(reply)  # type: ignore[arg-type]
    assert got == [value for _, value in items]
    assert parser.pending == 0


@FUZZ
@given(
    st.lists(replies(), max_size=4),
    st.binary(min_size=1, max_size=200),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_garbage_after_valid_replies_only_raises_protocol_error(
    items: list[tuple[bytes, p.Reply]], garbage: bytes, cuts: list[int]
) -> None:
    """Valid replies come out first, in order; what follows them parses, waits for more, or is a ProtocolError."""
    data = b"".join(raw for raw, _ in items) + garbage
    parser = ReplyParser()
    got: list[p.Reply] = []
    try:
        for chunk in feed_in_chunks(data, cuts):
            parser.feed(chunk)
            for _ in range(len(data) + 1):
                reply = parser.next_reply()
                if reply is NEED_DATA:
                    break
                got.append(reply)  # type: ignore[arg-type]
    except ProtocolError:
        pass
    expected = [value for _, value in items]
    assert got[: len(expected)] == expected[: len(got)]
    if len(got) < len(expected):  # only a ProtocolError in the valid part would explain it: there is none
        raise AssertionError(f"valid replies lost: {got} vs {expected}")


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_any_chunks_of_bytes_give_replies_need_data_or_protocol_error(chunks: list[bytes]) -> None:
    parser = ReplyParser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for _ in range(sum(map(len, chunks)) + 1):
                if parser.next_reply() is NEED_DATA:
                    break
    except ProtocolError as exc:
        assert str(exc)


# ---------------------------------------------------------------------------------------------- commands

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
verbs = st.sampled_from(["PUSH", "PUSHB", "ACK", "FAIL", "BEAT", "HELLO", "MUTATE", "INFO"])


@FUZZ
@given(verbs, json_values)
def test_any_json_payload_is_one_ascii_line_that_decodes_back(verb: str, payload: Any) -> None:
    line = p.command(verb, payload)
    assert line.isascii() and line.endswith(b"\r\n") and line.count(b"\n") == 1 and line.count(b"\r") == 1
    head, _, rest = line[:-2].partition(b" ")
    assert head == verb.encode()
    if payload is None:
        assert rest == b""
    else:
        assert json.loads(rest) == payload


@FUZZ
@given(st.dictionaries(st.sampled_from(["cmd", "target", "filter"]), json_values, max_size=3))
def test_mutate_lines_have_one_space_and_decode_back(operation: dict[str, Any]) -> None:
    """The server splits MUTATE on every space: the only space is the one after the verb."""
    line = p.mutate(operation)
    assert line.count(b" ") == 1 and line.count(b"\n") == 1
    assert json.loads(line[len(b"MUTATE ") : -2]) == operation


unencodable = st.sampled_from([{1, 2}, object(), float("nan"), float("inf"), b"bytes", {(1, 2): 3}, 1j])


@FUZZ
@given(json_values, unencodable, st.integers(min_value=0, max_value=3))
def test_unencodable_values_are_a_type_error_naming_where(payload: Any, bad: Any, depth: int) -> None:
    nested: Any = bad
    for _ in range(depth):
        nested = {"k": [nested]}
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        p.command("PUSH", {"ok": payload, "bad": nested})


@FUZZ
@given(st.lists(st.text(max_size=10), max_size=5))
def test_fetch_lines_name_exactly_the_queues_or_raise_value_error(queues: list[str]) -> None:
    try:
        line = p.fetch(queues)
    except ValueError as exc:
        assert "queue" in str(exc)
        return
    assert line.endswith(b"\r\n") and line.count(b"\n") == 1
    assert line[:-2].decode().split(" ")[1:] == queues


@FUZZ
@given(
    st.one_of(
        st.text(max_size=60),
        st.binary(max_size=30),
        st.none(),
        st.integers(),
        st.builds(ErrorReply, st.text(), st.text()),
    )
)
def test_greeting_and_beat_parsers_raise_only_protocol_error(reply: Any) -> None:
    for parse in (p.parse_greeting, p.parse_beat):
        with contextlib.suppress(ProtocolError):
            parse(reply)


@FUZZ
@given(
    version=st.integers(min_value=0, max_value=255),
    salt=st.none() | st.from_regex(r"[0-9a-f]{1,16}", fullmatch=True),
    iterations=st.integers(min_value=1, max_value=9000),
    password=st.text(max_size=20),
    wid=st.none() | st.from_regex(r"[0-9a-z]{1,16}", fullmatch=True),
)
def test_greeting_round_trip_and_hello_carries_the_hash(
    version: int, salt: str | None, iterations: int, password: str, wid: str | None
) -> None:
    fields: dict[str, Any] = {"v": version}
    if salt is not None:
        fields |= {"i": iterations, "s": salt}
    greeting = p.parse_greeting("HI " + json.dumps(fields, separators=(",", ":")))
    assert greeting == p.Greeting(version, salt, iterations if salt is not None else 1)
    line = p.hello(greeting, password=password, wid=wid, hostname="h", pid=1, labels=["a b"])
    assert line.isascii() and line.count(b"\n") == 1 and line.startswith(b"HELLO {")
    hello = json.loads(line[6:])
    assert hello["v"] == 2 and hello.get("wid") == (wid or None)
    if salt is not None:
        assert hello["pwdhash"] == p.password_hash(password, salt, iterations)
    else:
        assert "pwdhash" not in hello


@FUZZ
@given(st.sampled_from(["quiet", "terminate"]), st.booleans())
def test_beat_state_round_trip(state: str, as_bulk: bool) -> None:
    raw = json.dumps({"state": state}, separators=(",", ":"))
    assert p.parse_beat(raw.encode() if as_bulk else raw) == state


# ---------------------------------------------------------------------------------------------- URLs

SECRET = "Sw0rdf1sh-QXZ"
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)
namespaces = st.from_regex(r"[a-zA-Z0-9._-]{1,12}", fullmatch=True)


@FUZZ
@given(
    tls=st.booleans(),
    password=st.none() | st.text(min_size=1, max_size=20),
    user=st.sampled_from(["", "u", "user"]),
    host=hosts,
    port=st.none() | st.integers(1, 65535),
    namespace=st.none() | namespaces,
)
def test_url_round_trip_with_every_part(
    *, tls: bool, password: str | None, user: str, host: str, port: int | None, namespace: str | None
) -> None:
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else ""
    url = f"tcp{'+tls' if tls else ''}://{auth}{host}{f':{port}' if port else ''}{f'/{namespace}' if namespace else ''}"
    settings_ = Settings.from_url(url)
    assert (settings_.tls, settings_.password, settings_.host, settings_.port, settings_.namespace) == (
        tls,
        password,
        host.strip("[]"),
        port or 7419,
        namespace or "",
    )
    shown = settings_.url  # the masked form parses back to the same place
    again = parse_url(shown)
    assert (again["tls"], again["host"], again["port"], again["namespace"]) == (
        tls,
        host.strip("[]"),
        port or 7419,
        namespace or "",
    )
    assert again["password"] == ("***" if password else None)


url_tails = st.text(alphabet=string.printable + "é☃[]@:/%", max_size=40)


@FUZZ
@given(st.sampled_from(["tcp://", "tcp+tls://", "tcp://:" + SECRET + "@", "tcp+tls://x:" + SECRET + "@"]), url_tails)
def test_url_like_text_gives_settings_or_a_value_error_without_the_password(head: str, tail: str) -> None:
    try:
        settings_ = Settings.from_url(head + tail)
    except ValueError as exc:
        assert SECRET not in str(exc)
        assert "tcp://[:password@]host[:port][/namespace]" in str(exc) or "read_timeout" in str(exc)
    else:
        assert SECRET not in repr(settings_) and SECRET not in settings_.url


environments = st.fixed_dictionaries(
    {},
    optional={
        "FAKTORY_PROVIDER": st.sampled_from(["", "FAKTORY_URL", "OTHER_URL", "bad name", "1X"]) | st.text(max_size=8),
        "FAKTORY_URL": st.sampled_from([f"tcp://:{SECRET}@h:1", "tcp://h", "nonsense"]) | url_tails,
        "OTHER_URL": st.sampled_from([f"tcp+tls://:{SECRET}@[::1]:9/ns", "tcp://h:0"]) | url_tails,
        "FAKTORY_QUEUE": st.sampled_from(["", "critical", "no spaces", "é"]),
    },
)


@FUZZ
@given(environments)
def test_env_settings_give_settings_or_a_value_error_without_the_password(environ: dict[str, str]) -> None:
    try:
        settings_ = env_settings(environ)
    except ValueError as exc:
        assert SECRET not in str(exc)
    else:
        assert SECRET not in repr(settings_)
        provider = environ.get("FAKTORY_PROVIDER") or "FAKTORY_URL"
        if environ.get(provider):
            assert Settings.from_url(environ[provider]).host == settings_.host


# ---------------------------------------------------------------------------------------------- config round trip

queue_names = st.from_regex(r"[a-zA-Z0-9._-]{1,10}", fullmatch=True)
identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda name: not keyword.iskeyword(name))
handler_targets = st.builds(
    lambda module, attr: ".".join(module) + ":" + attr, st.lists(identifiers, min_size=1, max_size=3), identifiers
)
plain_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """A valid config document (every key optional, every value in its documented range)."""
    worker = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "processes": st.integers(1, 1024),
                "threads": st.integers(1, 1000),
                "queues": st.lists(queue_names, min_size=1, max_size=5, unique=True),
                "labels": st.lists(plain_text, max_size=4),
                "shutdown_timeout": st.floats(min_value=0.001, max_value=3600) | st.integers(1, 3600),
                "job_timeout": st.floats(min_value=0, max_value=1e6) | st.integers(0, 10**6),
                "max_jobs_per_child": st.integers(0, 10**9),
                "max_jobs_jitter": st.integers(0, 10**6),
                "max_memory_mb": st.integers(0, 10**6),
                "heartbeat_interval": st.floats(min_value=5, max_value=60) | st.integers(5, 60),
                "watchdog_timeout": st.floats(min_value=0.001, max_value=1e6),
                "restart_backoff_max": st.floats(min_value=1, max_value=1e4),
            },
        )
    )
    if "queues" in worker and draw(st.booleans()):
        worker["queue_order"] = draw(st.sampled_from(["strict", "random", "weighted"]))
    faktory = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "url": st.builds(
                    lambda tls, host, port: f"tcp{'+tls' if tls else ''}://{host}:{port}",
                    st.booleans(),
                    hosts,
                    st.integers(1, 65535),
                ),
                "connect_timeout": st.floats(min_value=0.01, max_value=600),
                "read_timeout": st.floats(min_value=2.51, max_value=600),
                "tls_verify": st.booleans(),
            },
        )
    )
    logging_ = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "level": st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]).flatmap(
                    lambda level: st.sampled_from([level, level.lower(), level.title()])
                ),
                "format": st.sampled_from(["text", "json"]),
            },
        )
    )
    embedded = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "host": st.sampled_from(["127.0.0.1", "::1", "localhost"]),
                "port": st.integers(1, 65535),
            },
        )
    )
    handlers = draw(st.dictionaries(plain_text, handler_targets, min_size=1, max_size=4))
    doc: dict[str, dict[str, Any]] = {"handlers": handlers}
    for name, table in (("worker", worker), ("faktory", faktory), ("logging", logging_), ("embedded", embedded)):
        if table:
            doc[name] = table
    return doc


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON's escapes are TOML's (no control characters are drawn)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def toml_document(doc: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{toml_string(key)} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@CONFIG
@given(valid_configs())
def test_valid_config_round_trips_through_the_loader(config_dir: Path, doc: dict[str, dict[str, Any]]) -> None:
    text = toml_document(doc)
    assert tomllib.loads(text) == doc  # the generator writes what it means
    path = config_dir / "valid.toml"
    path.write_text(text)
    config = load_config(path, {})
    worker = doc.get("worker", {})
    for key in ("processes", "threads", "max_jobs_per_child", "max_jobs_jitter", "max_memory_mb"):
        if key in worker:
            assert getattr(config.worker, key) == worker[key]
    for key in ("shutdown_timeout", "job_timeout", "heartbeat_interval", "watchdog_timeout", "restart_backoff_max"):
        if key in worker:
            assert getattr(config.worker, key) == float(worker[key])
            assert isinstance(getattr(config.worker, key), float)
    if "queues" in worker:
        assert config.worker.queues == tuple(worker["queues"])
        assert config.worker.queue_order == worker.get("queue_order", "strict")
    if "labels" in worker:
        assert config.worker.labels == tuple(worker["labels"])
        assert config.settings().labels == tuple(dict.fromkeys(("python", *worker["labels"])))
    assert config.handlers == doc["handlers"]
    faktory = doc.get("faktory", {})
    if "url" in faktory:
        assert config.faktory.url_source == "faktory.url"
        expected = Settings.from_url(faktory["url"])
        assert (config.settings().host, config.settings().port, config.settings().tls) == (
            expected.host,
            expected.port,
            expected.tls,
        )
    for key in ("connect_timeout", "read_timeout", "tls_verify"):
        if key in faktory:
            assert getattr(config.faktory, key) == faktory[key]
    logging_ = doc.get("logging", {})
    if "level" in logging_:
        assert config.logging.level == logging_["level"].upper()
    if "format" in logging_:
        assert config.logging.format == logging_["format"]
    embedded = doc.get("embedded", {})
    for key, value in embedded.items():
        assert getattr(config.embedded, key) == value


toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | plain_text
    | st.sampled_from(["", "0", "1.5", "tcp://h", "INFO", "strict", "weighted", "x:y"])
)
toml_values = toml_scalars | st.lists(toml_scalars, max_size=4)


@CONFIG
@given(valid_configs(), st.sampled_from(SCHEMA["worker"] + SCHEMA["faktory"] + SCHEMA["logging"]), toml_values)
def test_one_changed_value_gives_a_config_or_a_config_error_naming_its_key(
    config_dir: Path, doc: dict[str, dict[str, Any]], key: str, value: Any
) -> None:
    """Replace one value of a valid document by anything: a Config, or one ConfigError line naming that key."""
    section = next(name for name in ("worker", "faktory", "logging") if key in SCHEMA[name])
    doc.setdefault(section, {})[key] = value
    path = config_dir / "one-changed.toml"
    path.write_text(toml_document(doc))
    try:
        load_config(path, {})
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert f"{section}.{key}" in message, message


# ---------------------------------------------------------------------------------------------- the server's lines

wire_verbs = st.sampled_from(
    [
        *(b"PUSH", b"PUSHB", b"FETCH", b"ACK", b"FAIL", b"BEAT", b"INFO", b"FLUSH", b"MUTATE", b"QUEUE", b"BATCH"),
        *(b"TRACK", b"push", b"HELLO", b"", b"END\x00", b"\xff"),
    ]
)
json_bytes = json_values.map(lambda v: json.dumps(v, separators=(",", ":")).encode())
job_like = st.fixed_dictionaries(
    {},
    optional={
        "jid": st.text(max_size=12) | st.integers(),
        "jobtype": st.text(max_size=6) | st.none(),
        "args": json_values,
        "queue": st.sampled_from(["default", "fuzz", "bad queue", ""]) | st.text(max_size=5),
        "retry": st.integers(-2, 3) | st.floats() | st.none(),
        "reserve_for": st.integers(-5, 100000) | st.text(max_size=3),
        "at": st.sampled_from(["", "2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "nope"]),
        "custom": json_values,
        "failure": json_values,
        "wid": st.text(max_size=6),
        "current_state": st.sampled_from(["quiet", "terminate", "x", ""]),
        "cmd": st.sampled_from(["kill", "discard", "requeue", "clear", "x"]),
        "target": st.sampled_from(["retries", "dead", "scheduled", "working"]),
        "filter": json_values,
    },
).map(lambda d: json.dumps(d, separators=(",", ":")).encode())
payloads = st.one_of(json_bytes, job_like, job_like.map(lambda b: b"[" + b + b"]"), st.binary(max_size=40))
queue_lines = st.tuples(
    st.sampled_from([b"PAUSE", b"resume", b"REMOVE", b"LATENCY", b"X"]),
    st.lists(st.sampled_from([b"*", b"fuzz", b"default", b""]), max_size=3),
).map(lambda t: b" ".join([b"QUEUE", t[0], *t[1]]))
command_lines = st.one_of(
    st.tuples(wire_verbs, payloads).map(lambda vp: vp[0] + b" " + vp[1]),
    wire_verbs,
    queue_lines,
    st.binary(max_size=60),
).map(lambda line: line.replace(b"\n", b" ").replace(b"\r", b" "))
"""Lines as the server reads them: any bytes but the line ending (a lone CR would be one too for LF clients)."""


def frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Split RESP replies by framing only (an error line may echo a payload that is not UTF-8, as Faktory's
    does); returns (complete replies, the incomplete rest). Malformed framing fails the test."""
    out = []
    while data:
        assert data[:1] in (b"+", b"-", b"$", b":"), data[:80]
        end = data.find(b"\r\n")
        if end < 0:
            break
        if data[:1] == b"$":
            size = int(data[1:end])
            if size == -1:
                out.append(data[: end + 2])
                data = data[end + 2 :]
                continue
            assert size >= 0
            stop = end + 2 + size + 2
            if len(data) < stop:
                break
            assert data[stop - 2 : stop] == b"\r\n", data[:80]
            out.append(data[:stop])
            data = data[stop:]
        else:
            assert b"\n" not in data[:end] and b"\r" not in data[:end], data[:80]
            out.append(data[: end + 2])
            data = data[end + 2 :]
    return out, data


class Session:
    def __init__(self, wid: str = "") -> None:
        self.wid = wid
        self.worker = None


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def dispatcher() -> Dispatcher:
    store = Store(lambda: 1_700_000_000 * 10**9)
    return Dispatcher(store, RuntimeStats(0), fetch_timeout=0.01)


BARE_VERB_PANICS = (
    b"PUSH",
    b"PUSHB",
    b"ACK",
    b"FAIL",
    b"BEAT",
    b"QUEUE",
    b"QUEUE PAUSE",
    b"QUEUE RESUME",
    b"QUEUE REMOVE",
)


@FUZZ
@given(st.lists(command_lines, min_size=1, max_size=10))
def test_dispatcher_answers_every_line_with_one_well_formed_reply(dispatcher: Dispatcher, lines: list[bytes]) -> None:
    """Every line gets one RESP reply (or END, or a FETCH that waits); nothing escapes as an unexpected exception
    (the server would log it and answer ``internal error``, which Faktory does only for bare verbs)."""
    records = Records()
    logger = logging.getLogger("faktoryd.embedded")
    logger.addHandler(records)
    try:
        for line in lines:
            reply = dispatcher.dispatch(Session(), line)
            if reply is END or isinstance(reply, Pending):
                continue
            assert isinstance(reply, bytes)
            replies_, rest = frames(reply)
            assert len(replies_) == 1 and rest == b"", reply
            if reply == b"-ERR internal error\r\n":
                assert line.upper() in BARE_VERB_PANICS or line in BARE_VERB_PANICS, line
    finally:
        logger.removeHandler(records)
    unexpected = [m for m in records.messages if "internal error serving" in m]
    assert not unexpected, unexpected[0]


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer(fetch_timeout=0.02) as server:
        yield server


def converse(server: EmbeddedServer, lines: list[bytes], ending: bytes) -> list[bytes]:
    """HELLO, the lines and INFO in one write; the replies until INFO's (or until the server closes)."""
    expected = 2 + len(lines) + 1  # greeting, HELLO's +OK, one per line, INFO
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        hello = b'HELLO {"v":2,"wid":"fuzz-worker"}'
        sock.sendall(b"".join(line + ending for line in [hello, *lines, b"INFO"]))
        data, replies_ = b"", []
        while len(replies_) < expected:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            replies_, _ = frames(data)
        return replies_


@SHORT
@given(st.lists(command_lines, max_size=8), st.sampled_from([b"\r\n", b"\n"]))
def test_embedded_server_keeps_serving_any_lines(
    fuzz_server: EmbeddedServer, lines: list[bytes], ending: bytes
) -> None:
    """Random commands pipelined on one connection: the server answers each, in order, and INFO last (unless
    an END closed the connection first), and it keeps serving new connections."""
    ends = any(line == b"END" or line.startswith(b"END ") for line in lines)
    replies_ = converse(fuzz_server, lines, ending)
    assert replies_[:2] == [b'+HI {"v":2}\r\n', b"+OK\r\n"]
    if not ends:
        assert len(replies_) == len(lines) + 3, (lines, replies_)
        info = json.loads(replies_[-1].split(b"\r\n", 1)[1][:-2])
        assert info["server"]["faktory_version"]
    assert fuzz_server.info()["server"]["faktory_version"]
    fresh = converse(fuzz_server, [], b"\r\n")
    assert len(fresh) == 3 and fresh[-1].startswith(b"$")
