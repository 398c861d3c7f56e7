"""The sans-IO protocol core: command encoding, the incremental reply parser, the handshake hash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faktoryd import protocol as p
from faktoryd.errors import ProtocolError
from faktoryd.protocol import NEED_DATA, ErrorReply, ReplyParser

# ------------------------------------------------------------------------------------------- hashing


@pytest.mark.parametrize(
    ("password", "salt", "iterations", "expected"),
    [
        ("foobar", "55104dc76695721d", 1545, "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"),
        ("password", "123456789abc", 1735, "e841e9ac451ce2f737d82f1655808c5a502be91dc8a9e01ad6a1f75497912ed6"),
        ("password", "123456789abc", 1, "e520a40093baf412564462381f193e2a15c5e50ca5833df79699b13b3d62f38d"),
        ("password", "123456789abc", 0, "e520a40093baf412564462381f193e2a15c5e50ca5833df79699b13b3d62f38d"),
        # from the 1.10.0 transcript: password s3cret, i=6805, s=5fe4fbe6a2fdbbb4
        ("s3cret", "5fe4fbe6a2fdbbb4", 6805, "d13f5e1b35eb7ac796f73b69d46b4b5e9b312563d35d61279a5bfc2802ae1317"),
    ],
)
def test_password_hash_vectors(password: str, salt: str, iterations: int, expected: str) -> None:
    assert p.password_hash(password, salt, iterations) == expected


def test_greeting_without_and_with_password() -> None:
    assert p.parse_greeting('HI {"v":2}') == p.Greeting(2)
    greeting = p.parse_greeting('HI {"v":2,"i":6805,"s":"5fe4fbe6a2fdbbb4"}')
    assert greeting.needs_password and greeting.iterations == 6805 and greeting.salt == "5fe4fbe6a2fdbbb4"


@pytest.mark.parametrize("reply", ["OK", 'HI {"v":"x"}', "HI nope", b'HI {"v":2}', None, 'HI {"v":2,"s":5}'])
def test_bad_greeting_is_a_protocol_error(reply: object) -> None:
    with pytest.raises(ProtocolError):
        p.parse_greeting(reply)  # type: ignore[arg-type]


def test_hello_for_producer_and_worker() -> None:
    assert p.hello(p.Greeting(2)) == b'HELLO {"v":2}\r\n'
    line = p.hello(
        p.Greeting(2, "5fe4fbe6a2fdbbb4", 6805),
        password="s3cret",
        wid="w1",
        hostname="h",
        pid=7,
        labels=["python"],
    )
    assert line.endswith(b"\r\n") and line.startswith(b"HELLO {")
    payload = json.loads(line[6:])
    assert payload == {
        "hostname": "h",
        "wid": "w1",
        "pid": 7,
        "labels": ["python"],
        "v": 2,
        "pwdhash": "d13f5e1b35eb7ac796f73b69d46b4b5e9b312563d35d61279a5bfc2802ae1317",
    }


# ------------------------------------------------------------------------------------------- commands


def test_commands_are_one_compact_line() -> None:
    assert p.push({"jid": "a" * 8, "args": [1, "x y"]}) == b'PUSH {"jid":"aaaaaaaa","args":[1,"x y"]}\r\n'
    assert p.fetch(["critical", "default"]) == b"FETCH critical default\r\n"
    assert p.ack("abc") == b'ACK {"jid":"abc"}\r\n'
    assert p.beat("w", rss_kb=10, current_state="quiet") == b'BEAT {"wid":"w","rss_kb":10,"current_state":"quiet"}\r\n'
    assert p.beat("w") == b'BEAT {"wid":"w"}\r\n'
    assert p.queue("PAUSE", ["a", "b"]) == b"QUEUE PAUSE a b\r\n"
    assert p.INFO == b"INFO\r\n" and p.END == b"END\r\n" and p.FLUSH == b"FLUSH\r\n"


def test_newlines_inside_payloads_are_escaped() -> None:
    line = p.push({"args": ["a\nb\r\nc\u2028"]})
    assert line.count(b"\n") == 1 and line.endswith(b"\r\n")


def test_fail_keeps_at_most_50_backtrace_lines() -> None:
    line = p.fail("j" * 10, "E", "m", [f"line {i}" for i in range(80)])
    assert len(json.loads(line[5:])["backtrace"]) == 50


def test_mutate_has_no_literal_space() -> None:
    line = p.mutate({"cmd": "kill", "target": "dead", "filter": {"jobtype": "Send Email"}})
    assert line.count(b" ") == 1
    assert json.loads(line[7:])["filter"]["jobtype"] == "Send Email"


@pytest.mark.parametrize("bad", [[], ["a b"], ["x\n"], [""]])
def test_fetch_rejects_bad_queue_lists(bad: list[str]) -> None:
    with pytest.raises(ValueError, match="queue"):
        p.fetch(bad)


def test_unencodable_value_names_its_path() -> None:
    with pytest.raises(TypeError, match=r"payload\['args'\]\[1\] = .*object"):
        p.dumps({"args": [1, object()]})
    with pytest.raises(TypeError, match="nan"):
        p.dumps({"args": [float("nan")]})


def test_parse_beat_states() -> None:
    assert p.parse_beat("OK") == "running"
    assert p.parse_beat(b'{"state":"quiet"}') == "quiet"
    assert p.parse_beat('{"state":"terminate"}') == "terminate"
    with pytest.raises(ProtocolError):
        p.parse_beat(b'{"state":"weird"}')


# ------------------------------------------------------------------------------------------- parser

REPLIES: list[tuple[bytes, p.Reply]] = [
    (b"+OK\r\n", "OK"),
    (b'+HI {"v":2}\r\n', 'HI {"v":2}'),
    (b"-ERR unknown command FOO\r\n", ErrorReply("ERR", "unknown command FOO")),
    (b"-NOTUNIQUE Job not unique\r\n", ErrorReply("NOTUNIQUE", "Job not unique")),
    (b"-ERR unknown command \r\n", ErrorReply("ERR", "unknown command ")),
    (b"$17\r\n{\"state\":\"quiet\"}\r\n", b'{"state":"quiet"}'),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),
]


def parse_all(data: bytes, cuts: list[int]) -> list[p.Reply]:
    parser = ReplyParser()
    out: list[p.Reply] = []
    last = 0
    for cut in [*sorted(cuts), len(data)]:
        parser.feed(data[last:cut])
        last = cut
        while (reply := parser.next_reply()) is not NEED_DATA:
            out.append(reply)  # type: ignore[arg-type]
    assert parser.pending == 0
    return out


@pytest.mark.parametrize(("data", "expected"), REPLIES)
def test_each_reply_form(data: bytes, expected: p.Reply) -> None:
    assert parse_all(data, []) == [expected]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(REPLIES), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=20),
)
def test_any_split_parses_the_same(replies: list[tuple[bytes, p.Reply]], cuts: list[int]) -> None:
    data = b"".join(raw for raw, _ in replies)
    cuts = [c for c in cuts if c <= len(data)]
    assert parse_all(data, cuts) == [value for _, value in replies]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=64).filter(lambda b: b[:1] not in (b"+", b"-", b"$", b":")))
def test_garbage_first_byte_is_rejected_at_once(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    with pytest.raises(ProtocolError):
        parser.next_reply()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_hang_or_crash(data: bytes) -> None:
    """Any input either parses, asks for more data, or raises ProtocolError, in bounded steps."""
    parser = ReplyParser()
    parser.feed(data)
    try:
        for _ in range(len(data) + 1):
            if parser.next_reply() is NEED_DATA:
                break
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    "data",
    [b"$abc\r\n", b"$-2\r\n", b"$3\r\nabcXY", b":1.5\r\n", b"+OK\n", b"$5\n", b"$" + b"9" * 40, b"*2\r\n"],
)
def test_malformed_replies(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    with pytest.raises(ProtocolError):
        parser.next_reply()


def test_long_unterminated_header_is_rejected() -> None:
    parser = ReplyParser()
    parser.feed(b":" + b"1" * 100)
    with pytest.raises(ProtocolError):
        parser.next_reply()
