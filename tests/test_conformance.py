"""Wire-protocol conformance: raw bytes over real TCP sockets, checked against a real Faktory 1.10.0.

The expected replies come from ``/work/shared/faktory-1.10.0-transcript.txt`` (the bytes a real 1.10.0 server sent)
and, where the transcript is silent, from ``PROTOCOL.md`` (the server source). Exact bytes are compared wherever the
transcript shows exact bytes; where values vary (timestamps, jids, sizes) the reply is matched against a template that
fixes every other byte, and the varying values are checked for form and range.

Runs against the embedded server by default, and unchanged against a real server when ``FAKTORY_URL`` is set (the
``server`` fixture FLUSHes it first). Tests only rely on state they create: queue names carry a random suffix because a
real server remembers queue names across FLUSH, and every job sends ``retry`` explicitly because a real server lets an
explicit ``retry`` overwrite its global default (PROTOCOL.md 4.3). The package's own client is not used here.
"""

from __future__ import annotations

import calendar
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import wait_for
from rawclient import RawConnection, bulk_json, bulk_payload, dumps, password_hash

pytestmark = pytest.mark.timeout(30)

OK = b"+OK\r\n"
NIL = b"$-1\r\n"
INTERNAL = b"-ERR internal error\r\n"
GREETING = b'+HI {"v":2}\r\n'

# A server timestamp: RFC3339Nano in UTC, fraction of 1-9 digits with trailing zeros trimmed (no dot if zero).
TS_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,8}[1-9])?Z"
NUM_RE = r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?"
CLOCK_SKEW = 5.0  # seconds of slack when comparing server timestamps with the local clock

JOB_KEY_ORDER = [
    "retry", "failure", "custom", "jid", "queue", "jobtype", "created_at", "enqueued_at", "at", "args",
    "reserve_for", "backtrace",
]  # fmt: skip
FAILURE_KEY_ORDER = ["failed_at", "next_at", "message", "errtype", "backtrace", "retry_count", "remaining"]


# ---------------------------------------------------------------------------------------------------- helpers


def uid() -> str:
    return uuid.uuid4().hex[:12]


def new_jid() -> str:
    return uuid.uuid4().hex[:24]


def qname(prefix: str = "conf") -> str:
    """A queue name no other test (nor an earlier run against a real server) has used."""
    return f"{prefix}-{uid()}"


def ts(value: str) -> float:
    """Unix seconds of a server timestamp (RFC3339Nano, UTC)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", value)
    assert m, f"not an RFC3339Nano UTC timestamp: {value!r}"
    whole = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return whole + int((m.group(2) or "0").ljust(9, "0")) / 1e9


def assert_recent(value: str, *, before: float, after: float) -> None:
    """The server timestamp lies in [before, after] of the local wall clock, give or take CLOCK_SKEW."""
    t = ts(value)
    assert before - CLOCK_SKEW <= t <= after + CLOCK_SKEW, f"{value} not within [{before}, {after}]"


_PLACEHOLDER = re.compile(r"<(\w+)>")


def match_template(payload: bytes, template: str) -> dict[str, str]:
    """Match ``payload`` byte for byte against ``template``, where ``<name>`` stands for a varying value.

    ``<x_at>`` matches a server timestamp, any other ``<name>`` a JSON number. A name used twice must have the same
    value both times. Returns the captured values.
    """
    pattern, pos, seen = "", 0, set()
    for m in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[pos : m.start()])
        name = m.group(1)
        if name in seen:
            pattern += f"(?P={name})"
        else:
            seen.add(name)
            pattern += f"(?P<{name}>{TS_RE if name.endswith('_at') else NUM_RE})"
        pos = m.end()
    pattern += re.escape(template[pos:])
    m = re.fullmatch(pattern.encode("utf-8"), payload)
    assert m, f"reply does not have the transcript's form\n   got: {payload!r}\nwanted: {template.encode()!r}"
    return {k: v.decode() for k, v in m.groupdict().items()}


def expect_bulk(reply: bytes, template: str) -> dict[str, str]:
    """A bulk reply whose payload matches ``template`` (see :func:`match_template`) and whose length header is right."""
    return match_template(bulk_payload(reply), template)


def keys_in_order(obj: dict[str, Any], order: list[str]) -> None:
    """Every key of ``obj`` is known, and the keys appear in the given struct order."""
    keys = list(obj)
    assert set(keys) <= set(order), f"unexpected keys {set(keys) - set(order)}"
    assert keys == [k for k in order if k in obj], f"key order {keys}, expected a subsequence of {order}"


def job_line(verb: str = "PUSH", **job: Any) -> str:
    return f"{verb} {dumps(job)}"


def push(conn: RawConnection, **job: Any) -> None:
    reply = conn.request(job_line(**job))
    assert reply == OK, f"PUSH {job} -> {reply!r}"


def fetch(conn: RawConnection, *queues: str, timeout: float | None = None) -> bytes:
    """FETCH and return the exact reply."""
    return conn.request("FETCH " + " ".join(queues), timeout=timeout)


def fetch_job(conn: RawConnection, *queues: str) -> dict[str, Any]:
    """FETCH that must return a job; the job is returned decoded (key order preserved)."""
    reply = fetch(conn, *queues)
    assert reply.startswith(b"$") and reply != NIL, f"FETCH {queues} -> {reply!r}"
    job = bulk_json(reply)
    keys_in_order(job, JOB_KEY_ORDER)
    return job


def info(conn: RawConnection) -> dict[str, Any]:
    reply = conn.request("INFO")
    return bulk_json(reply)


def requeue(conn: RawConnection, target: str, jid: str) -> None:
    reply = conn.request(f'MUTATE {{"cmd":"requeue","target":"{target}","filter":{{"jids":["{jid}"]}}}}')
    assert reply == OK, reply


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


Dial = Callable[..., RawConnection]


@pytest.fixture
def dial() -> Iterator[Dial]:
    """``dial(srv, handshake=True, wid=None, password=None)``: a RawConnection, closed at teardown."""
    opened: list[RawConnection] = []

    def _dial(
        srv: Any, *, handshake: bool = True, wid: str | None = None, password: str | None = None
    ) -> RawConnection:
        conn = RawConnection(srv.host, srv.port, timeout=5.0)
        opened.append(conn)
        if handshake:
            conn.handshake(wid=wid, password=password if password is not None else getattr(srv, "password", None))
        return conn

    yield _dial
    for conn in opened:
        conn.close()


@pytest.fixture
def conn(server: Any, dial: Dial) -> RawConnection:
    """A producer connection (HELLO without wid) to the server under test."""
    return dial(server)


@pytest.fixture
def no_password(server: Any) -> None:
    if getattr(server, "password", None):
        pytest.skip("the server at FAKTORY_URL requires a password; these tests need one without")


# ---------------------------------------------------------------------------------------------------- 1. handshake


@pytest.mark.usefixtures("no_password")
def test_greeting_and_producer_hello(server, dial):
    c = dial(server, handshake=False)
    assert c.read_greeting() == GREETING
    assert c.request(b'HELLO {"v":2}') == OK
    assert c.request("INFO").startswith(b"$")


@pytest.mark.usefixtures("no_password")
def test_worker_hello_and_second_hello_is_unknown_command(server, dial):
    c = dial(server, handshake=False)
    assert c.read_greeting() == GREETING
    hello = {"hostname": "transcript-host", "pid": 14403, "labels": ["python", "transcript"], "v": 2}
    assert c.request("HELLO " + dumps({**hello, "wid": f"wid-{uid()}"})) == OK
    assert c.request(b'HELLO {"v":2}') == b"-ERR unknown command HELLO\r\n"
    assert c.request("INFO").startswith(b"$"), "an unknown command must leave the connection open"


@pytest.mark.usefixtures("no_password")
def test_hello_v1_with_unknown_fields_is_accepted(server, dial):
    c = dial(server, handshake=False)
    assert c.read_greeting() == GREETING
    assert c.request(b'HELLO {"v":1,"whatever":true}') == OK
    c.send(b"END\r\n")
    assert c.closed(timeout=2.0)
    assert c.pending == b""


@pytest.mark.usefixtures("no_password")
def test_pwdhash_is_ignored_without_password(server, dial):
    c = dial(server, handshake=False)
    c.read_greeting()
    assert c.request(b'HELLO {"v":2,"pwdhash":"not-a-hash"}') == OK


@pytest.mark.usefixtures("no_password")
@pytest.mark.parametrize(
    "line",
    [
        b"PUSH {}\r\n",  # transcript 14a
        b'hello {"v":2}\r\n',
        b'HELLO  {"v":2}\r\n',
        b"HELLO\r\n",
        b"INFO\r\n",
        b"\r\n",
    ],
    ids=["PUSH", "lowercase-hello", "two-spaces", "bare-HELLO", "INFO", "empty-line"],
)
def test_bad_preamble_closes_silently(server, dial, line):
    c = dial(server, handshake=False)
    assert c.read_greeting() == GREETING
    c.send(line)
    assert c.closed(timeout=1.0), "the server must close at once, not wait for the 2 s handshake deadline"
    assert c.pending == b"", "no reply may be sent to a bad preamble"


@pytest.mark.usefixtures("no_password")
@pytest.mark.parametrize(
    "line",
    [
        b"HELLO {bad json\r\n",  # transcript 14b
        b'HELLO {"v":"2"}\r\n',
        b'HELLO {"v":300}\r\n',
        b'HELLO {"pid":"1"}\r\n',
        b'HELLO {"labels":"x"}\r\n',
        b'HELLO {"wid":5}\r\n',
        b'HELLO {"v":2}x\r\n',
        b"HELLO {\r\n",
    ],
    ids=["bad-json", "v-string", "v-overflow", "pid-string", "labels-string", "wid-number", "trailing", "truncated"],
)
def test_bad_hello_json_closes_silently(server, dial, line):
    c = dial(server, handshake=False)
    assert c.read_greeting() == GREETING
    c.send(line)
    assert c.closed(timeout=1.0), "the server must close at once, not wait for the 2 s handshake deadline"
    assert c.pending == b""


def test_no_hello_is_closed_after_2s(server, dial):
    """Transcript 14c: the 2 s handshake deadline; also for a HELLO line that never ends."""
    t0 = time.monotonic()
    silent = dial(server, handshake=False)
    partial = dial(server, handshake=False)
    silent.read_greeting()
    partial.read_greeting()
    partial.send(b'HELLO {"v":2}')  # no line terminator
    assert silent.closed(timeout=4.0)
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 3.5, f"closed after {elapsed:.3f}s, expected about 2 s"
    assert silent.pending == b""
    assert partial.closed(timeout=1.5), "an unterminated HELLO line must hit the same 2 s deadline"
    assert time.monotonic() - t0 >= 1.5
    assert partial.pending == b""


@pytest.mark.usefixtures("no_password")
def test_bare_lf_line_endings_are_accepted(server, dial):
    """Transcript 14e: HELLO, INFO and END terminated by a bare LF."""
    c = dial(server, handshake=False)
    assert c.read_greeting() == GREETING
    assert c.request(b'HELLO {"v":2}\n') == OK
    assert bulk_json(c.request(b"INFO\n"))["server"]["description"] == "Faktory"
    q, jid = qname(), new_jid()
    assert c.request(job_line(jid=jid, jobtype="LF", args=[], queue=q, retry=1).encode() + b"\n") == OK
    assert fetch_job(c, q)["jid"] == jid
    assert c.request(f'ACK {{"jid":"{jid}"}}\n'.encode()) == OK
    c.send(b"END\n")
    assert c.closed(timeout=2.0)
    assert c.pending == b""


# ---------------------------------------------------------------------------------------------------- 2. password


def test_password_hash_vectors():
    """PROTOCOL.md 2.2 test vectors for the helper the password tests use."""
    assert password_hash("foobar", "55104dc76695721d", 1545) == (
        "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
    )
    assert password_hash("password", "123456789abc", 1735) == (
        "e841e9ac451ce2f737d82f1655808c5a502be91dc8a9e01ad6a1f75497912ed6"
    )
    assert password_hash("password", "123456789abc", 1) == (
        "e520a40093baf412564462381f193e2a15c5e50ca5833df79699b13b3d62f38d"
    )


_HI_PASSWORD = re.compile(rb'\+HI \{"v":2,"i":([1-9][0-9]*),"s":"([0-9a-f]{1,16})"\}\r\n')


def _salt_and_iterations(conn: RawConnection) -> tuple[str, int]:
    greeting = conn.read_greeting()
    m = _HI_PASSWORD.fullmatch(greeting)
    assert m, f'greeting {greeting!r} is not +HI {{"v":2,"i":N,"s":"hex"}}'
    return m.group(2).decode(), int(m.group(1))


def test_password_greeting_form(password_server, dial):
    salts = set()
    for _ in range(3):
        c = dial(password_server, handshake=False)
        salt, iterations = _salt_and_iterations(c)
        assert 4000 <= iterations <= 8095
        assert salt == "0" or not salt.startswith("0"), f"salt {salt!r} has a leading zero"
        salts.add(salt)
        c.close()
    assert len(salts) == 3, "the salt must be random per connection"


def test_password_correct_hash_is_accepted(password_server, dial):
    c = dial(password_server, handshake=False)
    salt, iterations = _salt_and_iterations(c)
    hello = {
        "hostname": "transcript-host", "pid": 14403, "labels": ["python", "transcript"], "v": 2,
        "wid": f"wid-pw-{uid()}", "pwdhash": password_hash("s3cret", salt, iterations),
    }  # fmt: skip
    assert c.request("HELLO " + dumps(hello)) == OK
    assert bulk_json(c.request("INFO"))["server"]["faktory_version"] == "1.10.0"


@pytest.mark.parametrize(
    "make_hello",
    [
        pytest.param(lambda s, i: {"v": 2, "pwdhash": password_hash("wrong", s, i)}, id="wrong-password"),
        pytest.param(lambda s, i: {"v": 2}, id="missing-pwdhash"),
        pytest.param(lambda s, i: {"v": 2, "pwdhash": password_hash("s3cret", s, i).upper()}, id="uppercase-hex"),
        pytest.param(lambda s, i: {"v": 2, "pwdhash": password_hash("s3cret", s, 1)}, id="v2-single-iteration"),
        pytest.param(lambda s, i: {"v": 1, "pwdhash": password_hash("s3cret", s, i)}, id="v1-iterated"),
    ],
)
def test_password_rejected(password_server, dial, make_hello):
    c = dial(password_server, handshake=False)
    salt, iterations = _salt_and_iterations(c)
    assert c.request("HELLO " + dumps(make_hello(salt, iterations))) == b"-ERR Invalid password\r\n"
    assert c.closed(timeout=1.0), "the server must close after -ERR Invalid password"
    assert c.pending == b""


@pytest.mark.parametrize("version", [1, 0, None], ids=["v1", "v0", "v-missing"])
def test_password_old_protocol_uses_single_iteration(password_server, dial, version):
    """Transcript 15: a v:1 client's pwdhash is sha256(password+salt), whatever the greeting's i."""
    c = dial(password_server, handshake=False)
    salt, _ = _salt_and_iterations(c)
    hello: dict[str, Any] = {"pwdhash": password_hash("s3cret", salt, 1)}
    if version is not None:
        hello["v"] = version
    assert c.request("HELLO " + dumps(hello)) == OK
    c.send(b"END\r\n")
    assert c.closed(timeout=2.0)


# ---------------------------------------------------------------------------------------------------- 3. PUSH


PUSH_ERRORS = [
    # transcript section 4, byte for byte
    (b'PUSH {"jid":"da06b0322bf94bc79aceaa04","args":[1]}', b"-ERR jobs must have a jobtype parameter\r\n"),
    (b'PUSH {"jid":"2373082899d84e2db2740893","jobtype":"","args":[1]}',
     b"-ERR jobs must have a jobtype parameter\r\n"),
    (b'PUSH {"jid":"1026bd80aeae42508c15fc56","jobtype":"SomeJob"}', b"-ERR jobs must have an args parameter\r\n"),
    (b'PUSH {"jid":"e0be55b102354de79a66ac25","jobtype":"SomeJob","args":null}',
     b"-ERR jobs must have an args parameter\r\n"),
    (b'PUSH {"jid":"short","jobtype":"SomeJob","args":[]}', b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (b'PUSH {"jobtype":"SomeJob","args":[]}', b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (b'PUSH {"jid":"a4832d6bdd9c41bf8278973a","jobtype":"SomeJob","args":[],"reserve_for":86401}',
     b"-ERR jobs cannot be reserved for more than one day\r\n"),
    (b'PUSH {"jid":"3c72075a516346e1b571cc1f","jobtype":"SomeJob","args":[],"at":"tomorrow"}',
     b"-ERR invalid timestamp for 'at': \"tomorrow\": parsing time \"tomorrow\" as "
     b"\"2006-01-02T15:04:05.999999999Z07:00\": cannot parse \"tomorrow\" as \"2006\"\r\n"),
    (b'PUSH {"jid":"39fac2969a7b47bda05a8445","jobtype":"SomeJob","args":{"not":"a list"}}',
     b"-ERR invalid JSON: json: cannot unmarshal object into Go struct field Job.args of type []interface {}\r\n"),
    (b"PUSH {not json", b"-ERR invalid JSON: invalid character 'n' looking for beginning of object key string\r\n"),
    # PROTOCOL.md 4.3 / 5.3: validation order, byte length of jid, texts quoted from the server source
    (b'PUSH {"jid":"short"}', b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (b'PUSH {"jid":"abcdefg","jobtype":"SomeJob","args":[]}', b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (b'PUSH {"jid":"\\u00e9\\u00e9\\u00e9","jobtype":"SomeJob","args":[]}',
     b"-ERR jobs must have a reasonable jid parameter\r\n"),
    (b'PUSH {"jid":"a4832d6bdd9c41bf8278973b","jobtype":"SomeJob","args":[],"at":"2024-01-01T00:00:00"}',
     b"-ERR invalid timestamp for 'at': \"2024-01-01T00:00:00\": parsing time \"2024-01-01T00:00:00\" as "
     b"\"2006-01-02T15:04:05.999999999Z07:00\": cannot parse \"\" as \"Z07:00\"\r\n"),
    (b'PUSH {"jid":"a4832d6bdd9c41bf8278973c","jobtype":"SomeJob","args":[],"reserve_for":60.5}',
     b"-ERR invalid JSON: json: cannot unmarshal number 60.5 into Go struct field Job.reserve_for of type int\r\n"),
    (b"PUSH ", b"-ERR invalid JSON: unexpected end of JSON input\r\n"),
    (b'PUSH {"jid":"a4832d6bdd9c41bf8278973d","jobtype":"SomeJob","args":[],"queue":"bad/queue","retry":1}',
     b'-ERR cannot get "bad/queue" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z\r\n'),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), PUSH_ERRORS, ids=range(len(PUSH_ERRORS)))
def test_push_error_texts(conn, line, expected):
    assert conn.request(line) == expected
    state = info(conn)  # the connection stays usable, and nothing was enqueued
    assert state["faktory"]["total_enqueued"] == 0
    assert state["faktory"]["sets"]["scheduled"] == 0


def test_push_jid_length_is_counted_in_bytes(conn):
    """PROTOCOL.md 4.3: 'shorter than 8 *bytes*': four 2-byte characters are enough."""
    q = qname()
    assert conn.request(b'PUSH {"jid":"\\u00e9\\u00e9\\u00e9\\u00e9","jobtype":"J","args":[],"retry":1,"queue":"'
                        + q.encode() + b'"}') == OK  # fmt: skip
    assert fetch_job(conn, q)["jid"] == "\u00e9\u00e9\u00e9\u00e9"


def test_push_same_jid_twice_makes_two_entries(conn):
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Dup", args=[1], queue=q, retry=1)
    push(conn, jid=jid, jobtype="Dup", args=[2], queue=q, retry=1)
    assert info(conn)["faktory"]["queues"][q] == 2
    assert fetch_job(conn, q)["args"] == [1]
    assert fetch_job(conn, q)["args"] == [2]


# ---------------------------------------------------------------------------------------------------- 4. FETCH


def test_fetch_reply_shape_and_server_added_fields(conn):
    """Transcript 3 and 6: the two pushed jobs come back with retry/queue/created_at/enqueued_at in struct order."""
    jid1, jid2 = new_jid(), new_jid()
    before = time.time()
    push_line = (
        f'PUSH {{"jid":"{jid1}","jobtype":"SomeJob","args":[1,"two",{{"three":3}}],"queue":"default","retry":25}}'
    )
    assert conn.request(push_line) == OK
    assert conn.request(
        f'PUSH {{"jid":"{jid2}","jobtype":"FullJob","args":[],"custom":{{"trace":"abc"}},"reserve_for":60,'
        f'"retry":3,"backtrace":5,"created_at":"2020-01-01T00:00:00.000000Z"}}'
    ) == OK  # fmt: skip

    first = expect_bulk(
        fetch(conn, "critical", "default"),
        f'{{"retry":25,"jid":"{jid1}","queue":"default","jobtype":"SomeJob","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":[1,"two",{{"three":3}}]}}',
    )
    assert conn.request(f'ACK {{"jid":"{jid1}"}}') == OK
    after = time.time()
    assert_recent(first["created_at"], before=before, after=after)
    assert_recent(first["enqueued_at"], before=before, after=after)
    assert ts(first["created_at"]) <= ts(first["enqueued_at"])

    second = expect_bulk(
        fetch(conn, "default"),
        f'{{"retry":3,"custom":{{"trace":"abc"}},"jid":"{jid2}","queue":"default","jobtype":"FullJob",'
        f'"created_at":"2020-01-01T00:00:00.000000Z","enqueued_at":"<enqueued_at>","args":[],'
        f'"reserve_for":60,"backtrace":5}}',
    )  # created_at is kept exactly as supplied, not normalised
    assert_recent(second["enqueued_at"], before=before, after=time.time())
    assert conn.request(f'ACK {{"jid":"{jid2}"}}') == OK


def test_fetch_every_field_in_struct_order(conn):
    """PROTOCOL.md 5.5: full key order, failure key order, sorted custom keys; unknown keys and empty custom dropped."""
    q, jid, jid2 = qname(), new_jid(), new_jid()
    job = {
        "args": [1], "backtrace": 10, "reserve_for": 600, "at": "2020-01-02T00:00:00Z",
        "created_at": "2020-01-01T00:00:00.000000Z", "jobtype": "Full", "queue": q, "jid": jid,
        "custom": {"b": "x", "a": 1},
        "failure": {"remaining": 2, "retry_count": 1, "errtype": "E", "message": "m",
                    "failed_at": "2020-01-01T00:00:00Z"},
        "retry": 3, "priority": 9, "bid": "b-123",
    }  # fmt: skip
    push(conn, **job)
    push(conn, jid=jid2, jobtype="Min", args=[], queue=q, retry=0, custom={})
    expect_bulk(
        fetch(conn, q),
        f'{{"retry":3,"failure":{{"failed_at":"2020-01-01T00:00:00Z","message":"m","errtype":"E","retry_count":1,'
        f'"remaining":2}},"custom":{{"a":1,"b":"x"}},"jid":"{jid}","queue":"{q}","jobtype":"Full",'
        f'"created_at":"2020-01-01T00:00:00.000000Z","enqueued_at":"<enqueued_at>","at":"2020-01-02T00:00:00Z",'
        f'"args":[1],"reserve_for":600,"backtrace":10}}',
    )
    expect_bulk(
        fetch(conn, q),
        f'{{"retry":0,"jid":"{jid2}","queue":"{q}","jobtype":"Min","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":[]}}',
    )


def test_fetch_go_json_encoding_of_strings(conn):
    """PROTOCOL.md 5.6: <, > and & and U+2028 escaped, other non-ASCII raw UTF-8; $n counts bytes."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Esc", args=["<a&b>", "\u00e9\u20ac", "\u2028", 'q"\\'], queue=q, retry=1)
    payload = bulk_payload(fetch(conn, q))
    assert b'"args":["\\u003ca\\u0026b\\u003e","\xc3\xa9\xe2\x82\xac","\\u2028","q\\"\\\\"]' in payload


def test_default_retry_is_25(conn):
    """The documented default. A first job with an explicit retry of 25 neutralises a real server's global-default
    bug (PROTOCOL.md 4.3) whatever earlier clients sent; jobs without retry, by PUSH and PUSHB, then get 25."""
    q = qname()
    jids = [new_jid() for _ in range(3)]
    push(conn, jid=jids[0], jobtype="Reset", args=[], retry=25, queue=q)
    push(conn, jid=jids[1], jobtype="NoRetryGiven", args=[], queue=q)
    assert conn.request(
        "PUSHB " + dumps([{"jid": jids[2], "jobtype": "NoRetryGiven", "args": [], "queue": q}])
    ) == b"$2\r\n{}\r\n"  # fmt: skip
    for jid in jids:
        job = fetch_job(conn, q)
        assert (job["jid"], job["retry"]) == (jid, 25)


def test_fetch_without_queue_is_an_error(conn):
    assert conn.request("FETCH") == b"-ERR must call fetch with at least one queue\r\n"


def test_fetch_empty_queue_blocks_2s_then_nil(conn):
    """Transcript 7: about 2 s, then $-1; the connection is usable afterwards."""
    q = qname()
    t0 = time.monotonic()
    assert fetch(conn, q, timeout=5.0) == NIL
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 3.5, f"empty FETCH returned after {elapsed:.3f}s, expected about 2 s"
    push(conn, jid=new_jid(), jobtype="After", args=[], queue=q, retry=1)
    assert fetch_job(conn, q)["jobtype"] == "After"


def test_fetch_returns_a_job_pushed_while_blocked(server, dial):
    waiter, pusher = dial(server), dial(server)
    q, jid = qname(), new_jid()
    t0 = time.monotonic()
    waiter.send(f"FETCH {q}\r\n".encode())
    info(pusher)  # a round trip on another connection, so the FETCH is most likely blocked by now (no sleep)
    push(pusher, jid=jid, jobtype="Wake", args=[], queue=q, retry=1)
    job = bulk_json(waiter.read_reply(timeout=5.0))
    assert job["jid"] == jid
    assert time.monotonic() - t0 < 1.5, "a blocked FETCH must return as soon as a job arrives"


def test_fetch_strict_order_across_queues_fifo_within(conn):
    qa, qb, qc = qname("a"), qname("b"), qname("c")
    a1, b1, b2, c1 = (new_jid() for _ in range(4))
    push(conn, jid=a1, jobtype="J", args=[], queue=qa, retry=1)
    push(conn, jid=b1, jobtype="J", args=[], queue=qb, retry=1)
    push(conn, jid=b2, jobtype="J", args=[], queue=qb, retry=1)
    push(conn, jid=c1, jobtype="J", args=[], queue=qc, retry=1)
    got = [fetch_job(conn, qc, qb, qa)["jid"] for _ in range(4)]
    assert got == [c1, b1, b2, a1]


def test_fetch_reserves_and_ack_from_any_connection(server, dial):
    worker, other = dial(server, wid=f"wid-{uid()}"), dial(server)
    q, jid = qname(), new_jid()
    push(other, jid=jid, jobtype="Res", args=[], queue=q, retry=1)
    assert fetch_job(worker, q)["jid"] == jid
    state = info(other)["faktory"]
    assert (state["sets"]["working"], state["queues"][q], state["total_processed"]) == (1, 0, 0)
    assert other.request(f'ACK {{"jid":"{jid}"}}') == OK
    state = info(other)["faktory"]
    assert (state["sets"]["working"], state["total_processed"], state["total_failures"]) == (0, 1, 0)


def test_pipelined_commands_are_answered_in_order(conn):
    q, jid = qname(), new_jid()
    conn.send(
        job_line(jid=jid, jobtype="Pipe", args=[], queue=q, retry=1).encode() + b"\r\n"
        + f"FETCH {q}\r\nACK {{\"jid\":\"{jid}\"}}\r\nBOGUS\r\n".encode()
    )  # fmt: skip
    assert conn.read_reply() == OK
    assert bulk_json(conn.read_reply())["jid"] == jid
    assert conn.read_reply() == OK
    assert conn.read_reply() == b"-ERR unknown command BOGUS\r\n"


def test_long_lines_and_large_bulk_replies(conn):
    q, jid = qname(), new_jid()
    big = "x" * 300_000
    push(conn, jid=jid, jobtype="Big", args=[big], queue=q, retry=1)
    job = fetch_job(conn, q)
    assert job["args"] == [big]


# ---------------------------------------------------------------------------------------------------- 5. ACK


def test_ack_variants(conn):
    """Transcript 8, plus PROTOCOL.md 4.6 (values must be strings, key exactly 'jid')."""
    assert conn.request(b'ACK {"jid":"no-such-jid-123"}') == OK
    assert conn.request(b"ACK {}") == b"-ERR invalid ACK {}\r\n"
    assert conn.request(b"ACK not-json") == b"-ERR invalid ACK not-json\r\n"
    assert conn.request(b'ACK {"jid":"abcdefgh1","n":1}') == b'-ERR invalid ACK {"jid":"abcdefgh1","n":1}\r\n'
    assert conn.request(b"ACK null") == b"-ERR invalid ACK null\r\n"
    assert conn.request(b'ACK {"JID":"abcdefgh1"}') == b'-ERR invalid ACK {"JID":"abcdefgh1"}\r\n'
    state = info(conn)["faktory"]
    assert (state["total_processed"], state["total_failures"]) == (0, 0), "an unknown jid is not 'processed'"


# ---------------------------------------------------------------------------------------------------- 6. FAIL


def test_fail_failure_fields_retry_and_backoff(conn):
    """Transcript 9: FAIL -> retries set; MUTATE requeue + FETCH shows the failure object."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Failing", args=["x"], retry=5, queue=q)
    original = expect_bulk(
        fetch(conn, q),
        f'{{"retry":5,"jid":"{jid}","queue":"{q}","jobtype":"Failing","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":["x"]}}',
    )

    before = time.time()
    assert conn.request(
        f'FAIL {{"jid":"{jid}","errtype":"RuntimeError","message":"it broke",'
        f'"backtrace":["a.py:1 in f","b.py:2 in g"]}}'
    ) == OK  # fmt: skip
    after = time.time()
    state = info(conn)["faktory"]
    assert state["sets"] == {"dead": 0, "retries": 1, "scheduled": 0, "working": 0}
    assert (state["total_failures"], state["total_processed"]) == (1, 1)

    requeue(conn, "retries", jid)
    assert info(conn)["faktory"]["sets"]["retries"] == 0
    first = expect_bulk(
        fetch(conn, q),
        f'{{"retry":5,"failure":{{"failed_at":"<failed_at>","next_at":"<next_at>","message":"it broke",'
        f'"errtype":"RuntimeError","backtrace":["a.py:1 in f","b.py:2 in g"],"retry_count":0,"remaining":5}},'
        f'"jid":"{jid}","queue":"{q}","jobtype":"Failing","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":["x"]}}',
    )
    # MUTATE requeue pushes the stored payload: created_at and enqueued_at are unchanged
    assert (first["created_at"], first["enqueued_at"]) == (original["created_at"], original["enqueued_at"])
    assert_recent(first["failed_at"], before=before, after=after)
    delay = ts(first["next_at"]) - ts(first["failed_at"])
    assert 15 - 0.5 <= delay <= 44 + 0.5, f"first retry delay {delay:.3f}s outside 15-44 s"

    # second FAIL with empty strings: "unknown", no backtrace, retry_count 1, remaining 4, failed_at kept
    before = time.time()
    assert conn.request(f'FAIL {{"jid":"{jid}","errtype":"","message":"","backtrace":[]}}') == OK
    after = time.time()
    requeue(conn, "retries", jid)
    second = expect_bulk(
        fetch(conn, q),
        f'{{"retry":5,"failure":{{"failed_at":"{first["failed_at"]}","next_at":"<next_at>","message":"unknown",'
        f'"errtype":"unknown","retry_count":1,"remaining":4}},"jid":"{jid}","queue":"{q}","jobtype":"Failing",'
        f'"created_at":"{original["created_at"]}","enqueued_at":"{original["enqueued_at"]}","args":["x"]}}',
    )
    assert before + 16 - CLOCK_SKEW <= ts(second["next_at"]) <= after + 74 + CLOCK_SKEW

    # minimal FAIL: +OK; third failure -> retry_count 2, remaining 3, delay 31-118 s
    before = time.time()
    assert conn.request(f'FAIL {{"jid":"{jid}"}}') == OK
    after = time.time()
    requeue(conn, "retries", jid)
    third = expect_bulk(
        fetch(conn, q),
        f'{{"retry":5,"failure":{{"failed_at":"{first["failed_at"]}","next_at":"<next_at>","message":"unknown",'
        f'"errtype":"unknown","retry_count":2,"remaining":3}},"jid":"{jid}","queue":"{q}","jobtype":"Failing",'
        f'"created_at":"{original["created_at"]}","enqueued_at":"{original["enqueued_at"]}","args":["x"]}}',
    )
    assert before + 31 - CLOCK_SKEW <= ts(third["next_at"]) <= after + 118 + CLOCK_SKEW
    assert conn.request(f'ACK {{"jid":"{jid}"}}') == OK
    state = info(conn)["faktory"]
    assert (state["total_failures"], state["total_processed"]) == (3, 4)


def test_fail_normalises_errtype_message_backtrace(conn):
    """PROTOCOL.md 4.7 cleanse: errtype <= 100 bytes, message <= 1000 bytes, backtrace <= 50 lines; trimmed."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Long", args=[], retry=3, queue=q)
    fetch_job(conn, q)
    backtrace = [f"line {i}" for i in range(60)]
    fail = {"jid": jid, "errtype": "E" * 150, "message": "m" * 1500, "backtrace": backtrace}
    assert conn.request("FAIL " + dumps(fail)) == OK
    requeue(conn, "retries", jid)
    failure = fetch_job(conn, q)["failure"]
    keys_in_order(failure, FAILURE_KEY_ORDER)
    assert failure["errtype"] == "E" * 100
    assert failure["message"] == "m" * 1000
    assert failure["backtrace"] == backtrace[:50]

    assert conn.request("FAIL " + dumps({"jid": jid, "errtype": "  Err \t", "message": "\n msg  "})) == OK
    requeue(conn, "retries", jid)
    failure = fetch_job(conn, q)["failure"]
    assert (failure["errtype"], failure["message"], "backtrace" in failure) == ("Err", "msg", False)


def test_fail_errors(conn):
    """Transcript 9 (unknown jid, missing jid, bad JSON) and PROTOCOL.md 4.7 (type errors, null, after ACK)."""
    assert conn.request(b'FAIL {"jid":"no-such-jid-456","errtype":"E","message":"m"}') == (
        b"-ERR Job not found no-such-jid-456\r\n"
    )
    assert conn.request(b'FAIL {"errtype":"E","message":"m"}') == b"-ERR missing JID\r\n"
    assert conn.request(b"FAIL not-json") == b"-ERR invalid FAIL not-json\r\n"
    assert conn.request(b'FAIL {"jid":"abcdefgh1","backtrace":"x"}') == (
        b'-ERR invalid FAIL {"jid":"abcdefgh1","backtrace":"x"}\r\n'
    )
    assert conn.request(b"FAIL null") == b"-ERR missing JID\r\n"
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Done", args=[], retry=1, queue=q)
    fetch_job(conn, q)
    assert conn.request(f'ACK {{"jid":"{jid}"}}') == OK
    assert conn.request(f'FAIL {{"jid":"{jid}"}}') == f"-ERR Job not found {jid}\r\n".encode()
    state = info(conn)["faktory"]
    assert (state["total_failures"], state["total_processed"]) == (0, 1)


def test_retry_zero_is_discarded_and_negative_goes_dead(conn):
    """Transcript 9's INFO counts: after failing a retry:0 job and a retry:-1 job, dead is 1, and the later MUTATE
    'discard dead *NoRetry*' does not lower it, so the dead one is the retry:-1 job; retry:0 is discarded."""
    q, zero, negative = qname(), new_jid(), new_jid()
    push(conn, jid=zero, jobtype="NoRetry", args=[], retry=0, queue=q)
    assert fetch_job(conn, q)["retry"] == 0
    assert conn.request(f'FAIL {{"jid":"{zero}","errtype":"E","message":"fatal"}}') == OK
    state = info(conn)["faktory"]
    assert state["sets"] == {"dead": 0, "retries": 0, "scheduled": 0, "working": 0}, "retry 0 is discarded"
    assert state["total_failures"] == 1

    push(conn, jid=negative, jobtype="Discard", args=[], retry=-1, queue=q)
    assert fetch_job(conn, q)["retry"] == -1
    assert conn.request(f'FAIL {{"jid":"{negative}","errtype":"E","message":"gone"}}') == OK
    state = info(conn)["faktory"]
    assert state["sets"] == {"dead": 1, "retries": 0, "scheduled": 0, "working": 0}, "retry -1 goes to dead"
    assert (state["total_failures"], state["total_processed"]) == (2, 2)

    requeue(conn, "dead", negative)
    expect_bulk(
        fetch(conn, q),
        f'{{"retry":-1,"failure":{{"failed_at":"<failed_at>","message":"gone","errtype":"E","retry_count":0,'
        f'"remaining":-1}},"jid":"{negative}","queue":"{q}","jobtype":"Discard","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":[]}}',
    )


def test_retries_exhausted_goes_dead(conn):
    """PROTOCOL.md 6.1: retry N runs at most N+1 times; next_at goes stale, not cleared."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Twice", args=[], retry=1, queue=q)
    fetch_job(conn, q)
    assert conn.request(f'FAIL {{"jid":"{jid}","errtype":"E","message":"one"}}') == OK
    assert info(conn)["faktory"]["sets"]["retries"] == 1
    requeue(conn, "retries", jid)
    first = fetch_job(conn, q)["failure"]
    assert conn.request(f'FAIL {{"jid":"{jid}","errtype":"E","message":"two"}}') == OK
    assert info(conn)["faktory"]["sets"] == {"dead": 1, "retries": 0, "scheduled": 0, "working": 0}
    requeue(conn, "dead", jid)
    failure = fetch_job(conn, q)["failure"]
    assert failure == {
        "failed_at": first["failed_at"], "next_at": first["next_at"], "message": "two", "errtype": "E",
        "retry_count": 1, "remaining": 0,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- 7. BEAT


def test_beat_replies_and_errors(server, dial):
    """Transcript 12: +OK, rss_kb, unknown worker, invalid BEAT, a producer's empty wid."""
    wid = f"wid-{uid()}"
    worker, producer = dial(server, wid=wid), dial(server)
    assert worker.request(f'BEAT {{"wid":"{wid}"}}') == OK
    assert worker.request(f'BEAT {{"wid":"{wid}","rss_kb":54176}}') == OK
    assert worker.request(f'BEAT {{"wid":"{wid}","current_state":""}}') == OK
    assert worker.request(b'BEAT {"wid":"unknown-wid"}') == b"-ERR unknown worker unknown-wid\r\n"
    assert worker.request(b"BEAT not-json") == b"-ERR invalid BEAT not-json\r\n"
    bad_rss = f'BEAT {{"wid":"{wid}","rss_kb":1.5}}'.encode()
    assert worker.request(bad_rss) == b"-ERR invalid BEAT " + bad_rss[5:] + b"\r\n"
    bad_rss = f'BEAT {{"wid":"{wid}","rss_kb":"1"}}'.encode()
    assert worker.request(bad_rss) == b"-ERR invalid BEAT " + bad_rss[5:] + b"\r\n"
    assert producer.request(b'BEAT {"wid":""}') == b"-ERR unknown worker \r\n"
    assert producer.request(f'BEAT {{"wid":"{wid}"}}') == OK, "BEAT is accepted from any connection"


QUIET = b'$17\r\n{"state":"quiet"}\r\n'
TERMINATE = b'$21\r\n{"state":"terminate"}\r\n'


def test_beat_current_state_is_sticky_and_forward_only(server, dial):
    """Transcript 12, worker-initiated: quiet, then 'running' is ignored, then terminate is final."""
    wid = f"wid-{uid()}"
    worker = dial(server, wid=wid)
    assert worker.request(f'BEAT {{"wid":"{wid}","current_state":"quiet","rss_kb":1000}}') == QUIET
    assert worker.request(f'BEAT {{"wid":"{wid}","current_state":"running"}}') == QUIET
    assert worker.request(f'BEAT {{"wid":"{wid}"}}') == QUIET
    assert worker.request(f'BEAT {{"wid":"{wid}","current_state":"terminate"}}') == TERMINATE
    assert worker.request(f'BEAT {{"wid":"{wid}","current_state":"quiet"}}') == TERMINATE
    assert worker.request(f'BEAT {{"wid":"{wid}","current_state":"bogus"}}') == TERMINATE
    assert worker.request(f'BEAT {{"wid":"{wid}"}}') == TERMINATE


def test_beat_state_set_from_another_connection_and_quiet_gates_fetch(server, dial):
    """PROTOCOL.md 4.8 item 3 (the wire stand-in for the web UI used in transcript 12): any connection may quiet a
    worker; the worker's BEAT then answers quiet and its FETCH sleeps 2 s and returns $-1 although a job is queued."""
    wid = f"wid-{uid()}"
    worker, admin = dial(server, wid=wid), dial(server)
    assert worker.request(f'BEAT {{"wid":"{wid}"}}') == OK
    assert admin.request(f'BEAT {{"wid":"{wid}","current_state":"quiet"}}') == QUIET
    assert worker.request(f'BEAT {{"wid":"{wid}"}}') == QUIET
    q, jid = qname(), new_jid()
    push(admin, jid=jid, jobtype="WhileQuiet", args=[], queue=q, retry=1)
    t0 = time.monotonic()
    assert fetch(worker, q, timeout=5.0) == NIL
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 3.5, f"quiet FETCH returned after {elapsed:.3f}s, expected about 2 s"
    assert fetch_job(admin, q)["jid"] == jid, "a producer connection is always running and may FETCH"
    assert admin.request(f'BEAT {{"wid":"{wid}","current_state":"terminate"}}') == TERMINATE
    assert worker.request(f'BEAT {{"wid":"{wid}"}}') == TERMINATE


def test_worker_is_forgotten_when_its_last_connection_closes(server, dial):
    """PROTOCOL.md 10.2: the entry lives while any connection of the wid is open; a new HELLO starts it running."""
    wid = f"wid-{uid()}"
    first, second, admin = dial(server, wid=wid), dial(server, wid=wid), dial(server)
    assert admin.request(f'BEAT {{"wid":"{wid}","current_state":"quiet"}}') == QUIET
    first.send(b"END\r\n")
    assert first.closed(timeout=2.0)
    assert admin.request(f'BEAT {{"wid":"{wid}"}}') == QUIET, "one connection of the wid is still open"
    second.close()
    gone = f"-ERR unknown worker {wid}\r\n".encode()
    wait_for(lambda: admin.request(f'BEAT {{"wid":"{wid}"}}') == gone, timeout=5.0, what="worker entry removed")
    again = dial(server, wid=wid)
    assert again.request(f'BEAT {{"wid":"{wid}"}}') == OK, "quiet is forgotten after a full reconnect"


# ---------------------------------------------------------------------------------------------------- 8. PUSHB


def test_pushb_results(conn):
    """Transcript 10: {} when all succeed, a sorted jid->error map otherwise; valid jobs are pushed regardless."""
    q = qname()
    ok1, ok2, ok3 = "672f92cde8fd4eb892ac07cb", "ce76637d93d24dd49106e2ea", "0244cf1556f247f8a552524a"
    good = [
        {"jid": ok1, "jobtype": "Bulk", "args": [1], "queue": q, "retry": 25},
        {"jid": ok2, "jobtype": "Bulk", "args": [2], "queue": q, "retry": 25},
    ]
    assert conn.request("PUSHB " + dumps(good)) == b"$2\r\n{}\r\n"
    mixed = (
        f'PUSHB [{{"jid":"{ok3}","jobtype":"Bulk","args":[3],"queue":"{q}","retry":25}},'
        '{"jid":"bad","jobtype":"Bulk","args":[]},{"jid":"4c6eeb81046e44fb85452fc4","args":[]},'
        '{"jid":"nojobargs1x","jobtype":"Bulk"}]'
    )
    assert conn.request(mixed) == (
        b'$164\r\n{"4c6eeb81046e44fb85452fc4":"jobs must have a jobtype parameter",'
        b'"bad":"jobs must have a reasonable jid parameter","nojobargs1x":"jobs must have an args parameter"}\r\n'
    )
    assert conn.request(b"PUSHB []") == b"$2\r\n{}\r\n"
    assert conn.request(b"PUSHB not-json") == (
        b"-ERR invalid JSON: invalid character 'o' in literal null (expecting 'u')\r\n"
    )
    assert info(conn)["faktory"]["queues"][q] == 3

    first = expect_bulk(
        fetch(conn, q),
        f'{{"retry":25,"jid":"{ok1}","queue":"{q}","jobtype":"Bulk","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":[1]}}',
    )
    expect_bulk(  # one created_at shared by the whole batch
        fetch(conn, q),
        f'{{"retry":25,"jid":"{ok2}","queue":"{q}","jobtype":"Bulk","created_at":"{first["created_at"]}",'
        f'"enqueued_at":"<enqueued_at>","args":[2]}}',
    )
    expect_bulk(
        fetch(conn, q),
        f'{{"retry":25,"jid":"{ok3}","queue":"{q}","jobtype":"Bulk","created_at":"<created_at>",'
        f'"enqueued_at":"<enqueued_at>","args":[3]}}',
    )


def test_pushb_error_details(conn):
    """PROTOCOL.md 4.4: not an array, an empty jid key, Go string escaping in the result map."""
    assert conn.request(b'PUSHB {"jid":"abcdefgh1"}') == (
        b"-ERR invalid JSON: json: cannot unmarshal object into Go value of type []client.Job\r\n"
    )
    reply = conn.request(
        b'PUSHB [{"jid":"","jobtype":"x","args":[]},{"jid":"abcdefgh1","jobtype":"x","args":[],"at":"tomorrow"}]'
    )
    assert bulk_json(reply) == {
        "": "jobs must have a reasonable jid parameter",
        "abcdefgh1": "invalid timestamp for 'at': \"tomorrow\": parsing time \"tomorrow\" as "
        "\"2006-01-02T15:04:05.999999999Z07:00\": cannot parse \"tomorrow\" as \"2006\"",
    }
    assert bulk_payload(reply).startswith(b'{"":"jobs must have a reasonable jid parameter","abcdefgh1":')


# ---------------------------------------------------------------------------------------------------- 9. QUEUE


def test_queue_pause_resume_and_latency(conn):
    """Transcript 11: a paused queue is skipped by FETCH; LATENCY is sorted {name: seconds}; RESUME restores it."""
    paused, other = qname("p"), qname("o")
    pjid, ojid = new_jid(), new_jid()
    push(conn, jid=pjid, jobtype="Q", args=[], queue=paused, retry=1)
    pushed = time.monotonic()
    push(conn, jid=ojid, jobtype="Q", args=[], queue=other, retry=1)
    assert conn.request(f"QUEUE PAUSE {paused}") == OK
    t0 = time.monotonic()
    assert fetch_job(conn, paused, other)["jid"] == ojid, "the paused queue must be skipped"
    assert time.monotonic() - t0 < 1.5

    reply = conn.request(f"QUEUE LATENCY {paused} {other}")
    names = sorted([paused, other])
    placeholders = {paused: "<latency>", other: "0"}
    values = expect_bulk(reply, "{" + ",".join(f'"{n}":{placeholders[n]}' for n in names) + "}")
    assert 0 <= float(values["latency"]) <= time.monotonic() - pushed + 1.0

    assert conn.request(b"QUEUE LATENCY *") == b"-ERR QUEUE LATENCY does not support wildcards\r\n"
    assert conn.request(f"QUEUE RESUME {paused}") == OK
    assert fetch_job(conn, paused)["jid"] == pjid

    # the subcommand is case-insensitive
    again = new_jid()
    push(conn, jid=again, jobtype="Q", args=[], queue=paused, retry=1)
    push(conn, jid=ojid, jobtype="Q", args=[], queue=other, retry=1)
    assert conn.request(f"QUEUE pause {paused}") == OK
    assert fetch_job(conn, paused, other)["jid"] == ojid
    assert conn.request(f"QUEUE resume {paused}") == OK
    assert fetch_job(conn, paused, other)["jid"] == again


def test_queue_pause_all_blocks_fetch_then_resume_all(conn):
    """Transcript 11: FETCH with only paused queues waits about 2 s and returns $-1."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Q", args=[], queue=q, retry=1)
    assert conn.request(b"QUEUE PAUSE *") == OK
    t0 = time.monotonic()
    assert fetch(conn, q, timeout=5.0) == NIL
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 3.5, f"FETCH of paused queues returned after {elapsed:.3f}s, expected about 2 s"
    assert info(conn)["faktory"]["queues"][q] == 1
    assert conn.request(b"QUEUE RESUME *") == OK
    assert fetch_job(conn, q)["jid"] == jid


def test_queue_remove(conn):
    q = qname()
    push(conn, jid=new_jid(), jobtype="Q", args=[], queue=q, retry=1)
    push(conn, jid=new_jid(), jobtype="Q", args=[], queue=q, retry=1)
    assert info(conn)["faktory"]["queues"][q] == 2
    assert conn.request(f"QUEUE REMOVE {q}") == OK
    state = info(conn)["faktory"]
    assert q not in state["queues"], "REMOVE forgets the queue name"
    assert state["total_enqueued"] == 0, "REMOVE deletes the queue's jobs"
    assert conn.request(f"QUEUE REMOVE no-such-queue-{uid()}") == OK


def test_queue_errors_and_unknown_names(conn):
    assert conn.request(b"QUEUE FROB pq") == b"-ERR no such QUEUE subcommand: FROB\r\n"
    assert conn.request(b"QUEUE frob pq") == b"-ERR no such QUEUE subcommand: FROB\r\n"
    assert conn.request(b"QUEUE") == INTERNAL
    assert conn.request(b"QUEUE PAUSE") == INTERNAL
    assert conn.request(b"queue pause pq") == b"-ERR unknown command queue\r\n"
    # pausing a queue that has never held a job does nothing
    q, jid = qname(), new_jid()
    assert conn.request(f"QUEUE PAUSE {q}") == OK
    push(conn, jid=jid, jobtype="Q", args=[], queue=q, retry=1)
    t0 = time.monotonic()
    assert fetch_job(conn, q)["jid"] == jid
    assert time.monotonic() - t0 < 1.5


# ---------------------------------------------------------------------------------------------------- 10. MUTATE


def _dead_job(conn: RawConnection, q: str, jobtype: str) -> str:
    jid = new_jid()
    push(conn, jid=jid, jobtype=jobtype, args=[], retry=-1, queue=q)
    fetch_job(conn, q)
    assert conn.request(f'FAIL {{"jid":"{jid}","errtype":"E","message":"dead"}}') == OK
    return jid


def test_mutate_kill_discard_clear(conn):
    """Transcript 9's MUTATE block: kill a retry into dead, discard a dead job by glob, clear scheduled."""
    q, tag = qname(), uid()
    failing = new_jid()
    push(conn, jid=failing, jobtype=f"Failing{tag}", args=["x"], retry=5, queue=q)
    fetch_job(conn, q)
    assert conn.request(f'FAIL {{"jid":"{failing}","errtype":"RuntimeError","message":"it broke"}}') == OK
    _dead_job(conn, q, f"NoRetry{tag}")
    push(conn, jid=new_jid(), jobtype="Later", args=[], retry=1, queue=q, at="2099-01-01T00:00:00Z")
    assert info(conn)["faktory"]["sets"] == {"dead": 1, "retries": 1, "scheduled": 1, "working": 0}

    assert conn.request(f'MUTATE {{"cmd":"kill","target":"retries","filter":{{"jobtype":"Failing{tag}"}}}}') == OK
    assert info(conn)["faktory"]["sets"] == {"dead": 2, "retries": 0, "scheduled": 1, "working": 0}
    assert conn.request(f'MUTATE {{"cmd":"discard","target":"dead","filter":{{"regexp":"*NoRetry{tag}*"}}}}') == OK
    assert info(conn)["faktory"]["sets"] == {"dead": 1, "retries": 0, "scheduled": 1, "working": 0}
    assert conn.request(b'MUTATE {"cmd":"clear","target":"scheduled"}') == OK
    assert info(conn)["faktory"]["sets"] == {"dead": 1, "retries": 0, "scheduled": 0, "working": 0}

    # kill moved the payload unchanged: the failure is the one FAIL recorded, with its next_at
    requeue(conn, "dead", failing)
    job = fetch_job(conn, q)
    assert job["jid"] == failing
    assert job["failure"]["message"] == "it broke"
    assert job["failure"]["retry_count"] == 0
    assert "next_at" in job["failure"]


def test_mutate_filters(conn):
    """PROTOCOL.md 4.11: jids filter, discard without filter is clear, \\u0020 stands for a space."""
    q = qname()
    a, b = _dead_job(conn, q, "A"), _dead_job(conn, q, "Has Space")
    c = _dead_job(conn, q, "C")
    assert info(conn)["faktory"]["sets"]["dead"] == 3
    assert conn.request(f'MUTATE {{"cmd":"discard","target":"dead","filter":{{"jids":["{a}"]}}}}') == OK
    assert info(conn)["faktory"]["sets"]["dead"] == 2
    assert conn.request(b'MUTATE {"cmd":"discard","target":"dead","filter":{"jobtype":"Has\\u0020Space"}}') == OK
    assert info(conn)["faktory"]["sets"]["dead"] == 1
    requeue(conn, "dead", b)  # already gone: no match is not an error
    assert conn.request(b'MUTATE {"cmd":"discard","target":"dead"}') == OK
    assert info(conn)["faktory"]["sets"]["dead"] == 0
    requeue(conn, "dead", c)
    assert info(conn)["faktory"]["queues"][q] == 0


def test_mutate_requeue_scheduled_keeps_at_and_has_no_enqueued_at(conn):
    """PROTOCOL.md 4.3/4.11: a future 'at' goes to scheduled without enqueued_at; requeue pushes that raw payload."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Later", args=[], retry=2, queue=q, at="2099-01-01T00:00:00.5+02:00")
    state = info(conn)["faktory"]
    assert state["sets"]["scheduled"] == 1
    assert state["total_enqueued"] == 0
    requeue(conn, "scheduled", jid)
    expect_bulk(
        fetch(conn, q),
        f'{{"retry":2,"jid":"{jid}","queue":"{q}","jobtype":"Later","created_at":"<created_at>",'
        f'"at":"2099-01-01T00:00:00.5+02:00","args":[]}}',
    )


def test_push_past_at_is_enqueued_now_and_kept(conn):
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="Past", args=[], retry=2, queue=q, at="2001-02-03T04:05:06.789Z")
    job = fetch_job(conn, q)
    assert job["at"] == "2001-02-03T04:05:06.789Z"
    assert "enqueued_at" in job


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'MUTATE {"cmd":"clear","target":"nonsense"}', b"-ERR invalid target for mutation command\r\n"),
        (b'MUTATE {"cmd":"kill","target":"working"}', b"-ERR invalid target for mutation command\r\n"),
        (b'MUTATE {"cmd":"kill","target":"default"}', b"-ERR invalid target for mutation command\r\n"),
        (b'MUTATE {"cmd":"explode","target":"dead"}', b"-ERR unknown mutate operation\r\n"),
        (b'MUTATE {"cmd":"explode","target":"nonsense"}', b"-ERR unknown mutate operation\r\n"),
        (b"MUTATE not-json", b"-ERR invalid character 'o' in literal null (expecting 'u')\r\n"),
        (b'MUTATE {"cmd": "clear","target":"dead"}', b"-ERR invalid format\r\n"),
        (b'MUTATE {"cmd":"clear","target":"dead"} ', b"-ERR invalid format\r\n"),
        (b"MUTATE", b"-ERR invalid format\r\n"),
    ],
    ids=["bad-target", "working", "queue-name", "bad-cmd", "cmd-before-target", "not-json", "space", "trailing-space",
         "bare"],
)  # fmt: skip
def test_mutate_errors(conn, line, expected):
    assert conn.request(line) == expected
    assert conn.request(b'MUTATE {"cmd":"clear","target":"dead"}') == OK, "the connection stays usable"


# ---------------------------------------------------------------------------------------------------- 11. INFO


INFO_KEYS = ["now", "server_utc_time", "faktory", "server"]
FAKTORY_KEYS = ["queues", "sets", "tasks", "total_failures", "total_processed", "total_enqueued", "total_queues"]
SETS_KEYS = ["dead", "retries", "scheduled", "working"]
TASK_KEYS = {
    "Busy": ["reaped", "size"],
    "Dead": ["cycles", "enqueued", "size", "wall_time_sec"],
    "Retries": ["cycles", "enqueued", "size", "wall_time_sec"],
    "Scheduled": ["cycles", "enqueued", "size", "wall_time_sec"],
    "Workers": ["reaped", "size"],
}
SERVER_KEYS = ["description", "faktory_version", "uptime", "connections", "command_count", "used_memory_mb"]


def test_info_shape(conn):
    """Transcript 1 and 13: every key at every level, in the transcript's order, with the transcript's types."""
    before = time.time()
    reply = conn.request("INFO")
    after = time.time()
    payload = bulk_payload(reply)
    assert b"\n" not in payload
    assert b'": ' not in payload
    assert b", " not in payload
    doc = json.loads(payload)
    assert list(doc) == INFO_KEYS
    assert re.fullmatch(TS_RE, doc["now"])
    assert_recent(doc["now"], before=before, after=after)
    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC", doc["server_utc_time"])
    drift = (_seconds_of_day(doc["server_utc_time"]) - ts(doc["now"]) % 86400 + 43200) % 86400 - 43200
    assert abs(drift) <= 1.5, f"server_utc_time {doc['server_utc_time']} does not match now {doc['now']}"

    fk = doc["faktory"]
    assert list(fk) == FAKTORY_KEYS
    assert isinstance(fk["queues"], dict)
    assert list(fk["queues"]) == sorted(fk["queues"])
    assert all(is_int(v) for v in fk["queues"].values())
    assert list(fk["sets"]) == SETS_KEYS
    assert all(is_int(v) and v >= 0 for v in fk["sets"].values())
    assert list(fk["tasks"]) == list(TASK_KEYS)
    for name, keys in TASK_KEYS.items():
        task = fk["tasks"][name]
        assert list(task) == keys, name
        for key, value in task.items():
            assert (is_number if key == "wall_time_sec" else is_int)(value), (name, key, value)
            assert value >= 0
    for key in FAKTORY_KEYS[3:]:
        assert is_int(fk[key]) and fk[key] >= 0, key
    assert fk["total_queues"] == len(fk["queues"])

    srv = doc["server"]
    assert list(srv) == SERVER_KEYS
    assert srv["description"] == "Faktory"
    assert srv["faktory_version"] == "1.10.0"
    for key in SERVER_KEYS[2:]:
        assert is_int(srv[key]) and srv[key] >= 0, key
    assert srv["connections"] >= 1
    assert srv["command_count"] >= 1


def _seconds_of_day(hms_utc: str) -> float:
    h, m, s = (int(x) for x in hms_utc[:8].split(":"))
    return h * 3600 + m * 60 + s


def test_info_counters_after_known_operations(conn):
    q1, q2 = qname("c1"), qname("c2")
    state = info(conn)["faktory"]
    assert state["sets"] == {"dead": 0, "retries": 0, "scheduled": 0, "working": 0}
    assert (state["total_failures"], state["total_processed"], state["total_enqueued"]) == (0, 0, 0)

    jids = [new_jid() for _ in range(4)]
    for jid in jids[:3]:
        push(conn, jid=jid, jobtype="C", args=[], queue=q1, retry=2)
    push(conn, jid=jids[3], jobtype="C", args=[], queue=q2, retry=2)
    push(conn, jid=new_jid(), jobtype="C", args=[], queue=q2, retry=2, at="2099-01-01T00:00:00Z")
    state = info(conn)["faktory"]
    assert (state["queues"][q1], state["queues"][q2]) == (3, 1)
    assert state["total_enqueued"] == 4
    assert state["total_queues"] == len(state["queues"])
    assert list(state["queues"]) == sorted(state["queues"])
    assert state["sets"] == {"dead": 0, "retries": 0, "scheduled": 1, "working": 0}

    fetch_job(conn, q1)
    assert conn.request(f'ACK {{"jid":"{jids[0]}"}}') == OK
    fetch_job(conn, q1)
    assert conn.request(f'FAIL {{"jid":"{jids[1]}","errtype":"E","message":"m"}}') == OK
    fetch_job(conn, q1)
    state = info(conn)["faktory"]
    assert (state["queues"][q1], state["queues"][q2], state["total_enqueued"]) == (0, 1, 1)
    assert state["sets"] == {"dead": 0, "retries": 1, "scheduled": 1, "working": 1}
    assert (state["total_failures"], state["total_processed"]) == (1, 2)


def test_info_connections_and_command_count(server, dial):
    """connections counts post-handshake connections, command_count counts dispatched known commands (this INFO
    included; unknown commands and handshakes are not counted)."""
    main = dial(server)
    srv = info(main)["server"]
    count, connections = srv["command_count"], srv["connections"]
    assert info(main)["server"]["command_count"] == count + 1
    assert main.request(b"NOPE") == b"-ERR unknown command NOPE\r\n"
    assert main.request(b"BATCH NEW {}").startswith(b"-ERR batch")
    assert info(main)["server"]["command_count"] == count + 3

    extra = dial(server)
    srv = info(main)["server"]
    assert srv["connections"] == connections + 1
    extra.send(b"END\r\n")
    assert extra.closed(timeout=2.0)
    wait_for(lambda: info(main)["server"]["connections"] == connections, timeout=5.0, what="connection count drops")


def test_flush_resets_counters_but_keeps_known_queue_names(conn):
    """Transcript 13: after FLUSH, INFO still lists the known queues, with 0 jobs."""
    q, jid = qname(), new_jid()
    push(conn, jid=jid, jobtype="F", args=[], queue=q, retry=1)
    push(conn, jid=new_jid(), jobtype="F", args=[], queue=q, retry=1)
    fetch_job(conn, q)
    assert conn.request(f'ACK {{"jid":"{jid}"}}') == OK
    assert conn.request(b"FLUSH") == OK
    state = info(conn)["faktory"]
    assert state["queues"][q] == 0
    assert state["sets"] == {"dead": 0, "retries": 0, "scheduled": 0, "working": 0}
    assert (state["total_failures"], state["total_processed"], state["total_enqueued"]) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------------- 12. misc


def test_unknown_commands_keep_the_connection_open(conn):
    """Transcript 13 and PROTOCOL.md 3: verbs are case-sensitive; an empty line is an unknown command too."""
    assert conn.request(b"FOO bar") == b"-ERR unknown command FOO\r\n"
    assert conn.request(b"foo") == b"-ERR unknown command foo\r\n"
    assert conn.request(b'push {"jid":"402453d028d1445ba814f516","jobtype":"x","args":[]}') == (
        b"-ERR unknown command push\r\n"
    )
    assert conn.request(b"Info") == b"-ERR unknown command Info\r\n"
    assert conn.request(b"\r\n") == b"-ERR unknown command \r\n"
    assert conn.request(b"\n") == b"-ERR unknown command \r\n"
    assert conn.request(b"*2") == b"-ERR unknown command *2\r\n"
    assert info(conn)["faktory"]["total_enqueued"] == 0


def test_enterprise_commands(conn):
    batch = b"-ERR batch subsystem is only available in Faktory Enterprise\r\n"
    track = b"-ERR tracking subsystem is only available in Faktory Enterprise\r\n"
    assert conn.request(b"BATCH NEW {}") == batch
    assert conn.request(b"TRACK GET abc") == track
    assert conn.request(b"BATCH") == batch
    assert conn.request(b"TRACK") == track


@pytest.mark.parametrize("verb", [b"PUSH", b"PUSHB", b"ACK", b"FAIL", b"BEAT", b"QUEUE", b"QUEUE PAUSE"])
def test_bare_verbs_are_internal_errors(conn, verb):
    assert conn.request(verb) == INTERNAL
    assert conn.request(b"INFO").startswith(b"$"), "the connection stays usable after an internal error"


@pytest.mark.parametrize("line", [b"END\r\n", b"END\n", b"END now\r\n"], ids=["crlf", "lf", "payload"])
def test_end_closes_without_reply(conn, line):
    conn.send(line)
    assert conn.closed(timeout=2.0)
    assert conn.pending == b"", "END gets no reply"
