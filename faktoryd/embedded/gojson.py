"""Go ``encoding/json`` behaviour, as the real server applies it to payloads and replies.

Decoding goes through CPython's C scanner for speed; only when it rejects the input does a replica of Go's
scanner run, to produce Go's exact syntax-error text. Values are then checked against the Go struct the
server decodes into (field types, case-insensitive keys, unknown keys dropped, ``null`` = zero value) and
numbers inside ``args``/``custom`` are passed through float64 as Go does.

Encoding writes Go's bytes: struct key order for Job and Failure, sorted map keys, ``<``/``>``/``&``/
U+2028/U+2029 escaped, other non-ASCII raw, Go's float formatting.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from decimal import Decimal
from json.encoder import c_make_encoder, encode_basestring
from typing import Any, Final, NamedTuple

from .gotime import TimeParseError, parse_rfc3339nano

_WS = re.compile(r"[ \t\n\r]*")
_BIG_INT = re.compile(r"\d{16}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_SAFE_INT: Final = 2**53
_INT64 = (-(2**63), 2**63 - 1)


class GoJSONError(ValueError):
    """A decode failure; ``str()`` is the text Go's ``json.Unmarshal`` error would print."""


class GoFloat(float):
    """A JSON number written with a fraction or exponent; keeps its literal for Go's error texts."""

    __slots__ = ("lit",)
    lit: str


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------- encoding


def _no_default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__}")


# C encoders built once: ``json.dumps`` builds a new one per call, which costs more than the encoding.
_encode_sorted = c_make_encoder(None, _no_default, encode_basestring, None, ":", ",", True, False, True)
estr: Final = encode_basestring
"""A JSON string literal with Go's escapes for control characters (Go-specific ones come in ``finish``)."""


def go_float(value: float) -> str:
    """Go's ``encoding/json`` float64 text: shortest digits, plain for 1e-6 <= |x| < 1e21, else ``1e-7``."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    text = float.__repr__(value)
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        if "e" in text:
            return format(Decimal(text), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = text.partition("e")
    sign = exponent[0]
    digits = exponent[1:].lstrip("0") or "0"
    if sign == "-" and len(digits) == 1:
        return f"{mantissa}e-{digits}"
    return f"{mantissa}e{sign}{digits.zfill(2)}"


def go_dumps(value: Any) -> str:
    """Go-style JSON text of plain Python data; dicts keep insertion order (callers sort maps)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return estr(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{estr(k)}:{go_dumps(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dumps_map_value(value: Any, floaty: bool) -> str:
    """Encode args/custom: maps sorted, floats the Go way (slow path only when floats are present)."""
    if not floaty:
        return "".join(_encode_sorted(value, 0))
    return go_dumps(_sorted_deep(value))


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def finish(text: str) -> bytes:
    """Apply Go's HTML-safe and line-separator escapes, and encode; lone surrogates become ``\\ufffd``."""
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if text.isascii():
        return text.encode("ascii")
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Only broken UTF-8 left by byte truncation (FAIL's message/errtype) gets here; Go writes \ufffd.
        return _SURROGATE.sub(lambda _m: "\\ufffd", text).encode("utf-8")


def go_bytes(value: Any) -> bytes:
    """``json.Marshal`` of plain data (maps in the order given)."""
    return finish(go_dumps(value))


def go_quote(text: str) -> str:
    """Go ``strconv.Quote`` (``%q``): printable runes raw, others escaped Go-style."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a raw invalid byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif unicodedata.category(ch)[0] in "LMNPS":
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


# ---------------------------------------------------------------------------------------------- Go's scanner


def _quote_char(c: int) -> str:
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    return "'" + go_quote(chr(c))[1:-1] + "'"


_PARSE_OBJECT_KEY, _PARSE_OBJECT_VALUE, _PARSE_ARRAY_VALUE = 0, 1, 2
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_SPACE = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"


class _Scanner:
    """A transcription of Go's ``encoding/json`` scanner state machine, used for error texts only."""

    def __init__(self) -> None:
        self.step: Callable[[int], None] = self.begin_value
        self.stack: list[int] = []
        self.err: str | None = None
        self.end_top = False
        self.literal = b""
        self.literal_at = 0
        self.hex_left = 0

    def error(self, c: int, context: str) -> None:
        self.step = self.stop
        self.err = f"invalid character {_quote_char(c)} {context}"

    def stop(self, c: int) -> None:
        """Terminal state after an error."""

    def push(self, state: int, c: int) -> None:
        self.stack.append(state)
        if len(self.stack) > 10000:
            self.error(c, "exceeded max depth")

    def pop(self) -> None:
        self.stack.pop()
        if not self.stack:
            self.step = self.end_top_state
            self.end_top = True
        else:
            self.step = self.end_value

    def begin_value_or_empty(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x5D:  # ]
            self.end_value(c)
            return
        self.begin_value(c)

    def begin_value(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x7B:  # {
            self.step = self.begin_string_or_empty
            self.push(_PARSE_OBJECT_KEY, c)
        elif c == 0x5B:  # [
            self.step = self.begin_value_or_empty
            self.push(_PARSE_ARRAY_VALUE, c)
        elif c == 0x22:
            self.step = self.in_string
        elif c == 0x2D:  # -
            self.step = self.neg
        elif c == 0x30:
            self.step = self.zero
        elif c in b"tfn":
            self.literal = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[c]
            self.literal_at = 1
            self.step = self.in_literal
        elif 0x31 <= c <= 0x39:
            self.step = self.one
        else:
            self.error(c, "looking for beginning of value")

    def begin_string_or_empty(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x7D:  # }
            self.stack[-1] = _PARSE_OBJECT_VALUE
            self.end_value(c)
            return
        self.begin_string(c)

    def begin_string(self, c: int) -> None:
        if c in _SPACE:
            return
        if c == 0x22:
            self.step = self.in_string
            return
        self.error(c, "looking for beginning of object key string")

    def end_value(self, c: int) -> None:
        if not self.stack:
            self.step = self.end_top_state
            self.end_top = True
            self.end_top_state(c)
            return
        if c in _SPACE:
            self.step = self.end_value
            return
        top = self.stack[-1]
        if top == _PARSE_OBJECT_KEY:
            if c == 0x3A:  # :
                self.stack[-1] = _PARSE_OBJECT_VALUE
                self.step = self.begin_value
                return
            self.error(c, "after object key")
        elif top == _PARSE_OBJECT_VALUE:
            if c == 0x2C:  # ,
                self.stack[-1] = _PARSE_OBJECT_KEY
                self.step = self.begin_string
                return
            if c == 0x7D:
                self.pop()
                return
            self.error(c, "after object key:value pair")
        else:
            if c == 0x2C:
                self.step = self.begin_value
                return
            if c == 0x5D:
                self.pop()
                return
            self.error(c, "after array element")

    def end_top_state(self, c: int) -> None:
        if c not in _SPACE:
            self.error(c, "after top-level value")

    def in_string(self, c: int) -> None:
        if c == 0x22:
            self.step = self.end_value
        elif c == 0x5C:
            self.step = self.in_string_esc
        elif c < 0x20:
            self.error(c, "in string literal")

    def in_string_esc(self, c: int) -> None:
        if c in b'bfnrt\\/"':
            self.step = self.in_string
        elif c == 0x75:  # u
            self.hex_left = 4
            self.step = self.in_string_esc_u
        else:
            self.error(c, "in string escape code")

    def in_string_esc_u(self, c: int) -> None:
        if c in _HEX:
            self.hex_left -= 1
            if not self.hex_left:
                self.step = self.in_string
            return
        self.error(c, "in \\u hexadecimal character escape")

    def neg(self, c: int) -> None:
        if c == 0x30:
            self.step = self.zero
        elif 0x31 <= c <= 0x39:
            self.step = self.one
        else:
            self.error(c, "in numeric literal")

    def one(self, c: int) -> None:
        if c in _DIGITS:
            return
        self.zero(c)

    def zero(self, c: int) -> None:
        if c == 0x2E:  # .
            self.step = self.dot
        elif c in b"eE":
            self.step = self.exp
        else:
            self.end_value(c)

    def dot(self, c: int) -> None:
        if c in _DIGITS:
            self.step = self.dot0
        else:
            self.error(c, "after decimal point in numeric literal")

    def dot0(self, c: int) -> None:
        if c in _DIGITS:
            return
        if c in b"eE":
            self.step = self.exp
            return
        self.end_value(c)

    def exp(self, c: int) -> None:
        if c in b"+-":
            self.step = self.exp_sign
            return
        self.exp_sign(c)

    def exp_sign(self, c: int) -> None:
        if c in _DIGITS:
            self.step = self.exp0
            return
        self.error(c, "in exponent of numeric literal")

    def exp0(self, c: int) -> None:
        if c in _DIGITS:
            return
        self.end_value(c)

    def in_literal(self, c: int) -> None:
        want = self.literal[self.literal_at]
        if c != want:
            self.error(c, f"in literal {self.literal.decode()} (expecting {_quote_char(want)})")
            return
        self.literal_at += 1
        if self.literal_at == len(self.literal):
            self.step = self.end_value


def syntax_error(data: bytes) -> str | None:
    """Go's ``checkValid``: the error text for invalid JSON, or None when Go would accept the bytes."""
    scanner = _Scanner()
    i, n = 0, len(data)
    while i < n:
        if scanner.step == scanner.in_string:
            i = _STRING_RUN.match(data, i).end()  # type: ignore[union-attr]
            if i >= n:
                break
        scanner.step(data[i])
        i += 1
        if scanner.err is not None:
            return scanner.err
    if scanner.end_top:
        return None
    scanner.step(0x20)
    if scanner.end_top:
        return None
    return scanner.err or "unexpected end of JSON input"


# ---------------------------------------------------------------------------------------------- decoding


class Decoder:
    """Go-compatible JSON decoding; one per server, used from its event-loop thread only."""

    def __init__(self) -> None:
        self._saw_float = False

        def parse_float(literal: str) -> GoFloat:
            self._saw_float = True
            number = GoFloat(literal)
            number.lit = literal
            return number

        self._scan = json.JSONDecoder(parse_float=parse_float, parse_constant=_reject_constant).scan_once

    def loads(self, text: str) -> tuple[Any, bool]:
        """Parse ``text``; returns the value and whether it held a float literal. Raises GoJSONError."""
        self._saw_float = False
        start = _WS.match(text).end()  # type: ignore[union-attr]
        try:
            value, end = self._scan(text, start)
        except (StopIteration, ValueError, RecursionError) as exc:
            raise GoJSONError(_explain(text, exc)) from None
        if end != len(text) and _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]
            raise GoJSONError(_explain(text, None))
        return value, self._saw_float


def _explain(text: str, exc: BaseException | None) -> str:
    message = syntax_error(text.encode("utf-8", "surrogateescape"))
    if message is not None:
        return message
    if isinstance(exc, RecursionError):
        return "exceeded max depth"
    return str(exc) if exc else "invalid JSON"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if value is True or value is False:
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_text(value: Any) -> str:
    if isinstance(value, GoFloat):
        return "number " + value.lit
    if isinstance(value, float):
        return "number " + go_float(value)
    return f"number {value}"


class _Walk:
    """Per-decode state: the first Go type error, and whether Go-formatted floats remain."""

    __slots__ = ("error", "fix_strings", "floaty", "normalize")

    def __init__(self, normalize: bool, fix_strings: bool) -> None:
        self.error: str | None = None
        self.normalize = normalize
        self.fix_strings = fix_strings
        self.floaty = False

    def fail(self, value_kind: str, struct: str, path: Iterable[str], gotype: str) -> None:
        if self.error is None:
            self.error = (
                f"json: cannot unmarshal {value_kind} into Go struct field {struct}.{'.'.join(path)} of type {gotype}"
            )


def _fix(text: str) -> str:
    """Go decodes invalid UTF-8 and unpaired surrogate escapes to U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _any_value(value: Any, walk: _Walk, struct: str, path: tuple[str, ...]) -> Any:
    """An ``interface{}`` value: numbers through float64, strings repaired, maps left for sorted output."""
    if isinstance(value, str):
        return _fix(value) if walk.fix_strings else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        number = float(value)
        if math.isinf(number):
            walk.fail(_number_text(value), struct, path, "float64")
            return 0
        if number.is_integer() and abs(number) < _MAX_SAFE_INT and math.copysign(1.0, number) > 0:
            return int(number)  # 1.0 -> 1, as Go prints it
        walk.floaty = True
        return number
    if isinstance(value, int):
        if abs(value) <= _MAX_SAFE_INT:
            return value
        try:
            number = float(value)
        except OverflowError:
            walk.fail(_number_text(value), struct, path, "float64")
            return 0
        walk.floaty = True
        return number
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _any_value(item, walk, struct, path)
        return value
    if walk.fix_strings:
        return {_fix(k): _any_value(v, walk, struct, path) for k, v in value.items()}
    for key, item in value.items():
        value[key] = _any_value(item, walk, struct, path)
    return value


# Field kinds of the Go structs the server decodes into.
STRING, INT, INT64, UINT8, INT_PTR, ANY_LIST, ANY_MAP, STRING_LIST, TIME = range(9)


class Field(NamedTuple):
    """One Go struct field: JSON key, kind (or nested Struct), Go type text for error messages."""

    key: str
    kind: Any
    gotype: str


class Struct:
    """A Go struct as the decoder sees it: JSON keys matched exactly, then case-insensitively."""

    def __init__(self, name: str, gotype: str, fields: list[Field]) -> None:
        self.name = name
        self.gotype = gotype
        self.exact = {f.key: f for f in fields}
        self.folded = {f.key.lower(): f for f in fields}


_INVALID: Final = object()


class _Target(NamedTuple):
    """Where a value is being decoded: for Go's error text and for merging repeated keys."""

    field: Field
    struct: str
    path: tuple[str, ...]
    previous: Any


def _mismatch(value: Any, walk: _Walk, at: _Target, gotype: str | None = None) -> object:
    walk.fail(_kind(value), at.struct, at.path, gotype or at.field.gotype)
    return _INVALID


def _to_string(value: Any, walk: _Walk, at: _Target) -> Any:
    if isinstance(value, str):
        return _fix(value) if walk.fix_strings else value
    return _mismatch(value, walk, at)


def _to_int(value: Any, walk: _Walk, at: _Target) -> Any:
    low, high = (0, 255) if at.field.kind == UINT8 else _INT64
    if type(value) is int and low <= value <= high:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        walk.fail(_number_text(value), at.struct, at.path, at.field.gotype)
        return _INVALID
    return _mismatch(value, walk, at)


def _to_any_list(value: Any, walk: _Walk, at: _Target) -> Any:
    if not isinstance(value, list):
        return _mismatch(value, walk, at)
    return _any_value(value, walk, at.struct, at.path) if walk.normalize else value


def _to_any_map(value: Any, walk: _Walk, at: _Target) -> Any:
    if not isinstance(value, dict):
        return _mismatch(value, walk, at)
    if walk.normalize:
        value = _any_value(value, walk, at.struct, at.path)
    # Go decodes a repeated key into the map it already made: the maps merge.
    return {**at.previous, **value} if at.previous else value


def _to_string_list(value: Any, walk: _Walk, at: _Target) -> Any:
    if not isinstance(value, list):
        return _mismatch(value, walk, at)
    items = []
    for item in value:
        if isinstance(item, str):
            items.append(_fix(item) if walk.fix_strings else item)
            continue
        if item is not None:
            _mismatch(item, walk, at, "string")
        items.append("")
    return items


def _to_time(value: Any, walk: _Walk, at: _Target) -> Any:
    """``time.Time.UnmarshalJSON``: a quoted RFC3339 string (or null); its errors are not type errors."""
    if not isinstance(value, str):
        walk.error = walk.error or "Time.UnmarshalJSON: input is not a JSON string"
        return _INVALID
    try:
        parse_rfc3339nano(value)
    except TimeParseError as exc:
        walk.error = walk.error or str(exc)
    return _INVALID


_CONVERTERS: Final[dict[int, Callable[[Any, _Walk, _Target], Any]]] = {
    STRING: _to_string,
    INT: _to_int,
    INT64: _to_int,
    UINT8: _to_int,
    INT_PTR: _to_int,
    ANY_LIST: _to_any_list,
    ANY_MAP: _to_any_map,
    STRING_LIST: _to_string_list,
    TIME: _to_time,
}
_NULLABLE: Final = frozenset((INT_PTR, ANY_LIST, ANY_MAP, STRING_LIST))


def _decode_struct(obj: dict[str, Any], spec: Struct, walk: _Walk, path: tuple[str, ...]) -> dict[str, Any]:
    """Go's ``decodeState.object`` for a struct: the fields present, type errors recorded in ``walk``."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        field = spec.exact.get(key) or spec.folded.get(key.lower())
        if field is None:
            continue  # unknown keys are dropped
        kind = field.kind
        if value is None:
            # null: pointers, slices and maps become nil; other kinds keep their value.
            if kind in _NULLABLE or isinstance(kind, Struct):
                out[field.key] = None
            continue
        at = _Target(field, spec.name, (*path, field.key), out.get(field.key))
        if isinstance(kind, Struct):
            if not isinstance(value, dict):
                _mismatch(value, walk, at)
                continue
            converted: Any = {**(at.previous or {}), **_decode_struct(value, kind, walk, at.path)}
        else:
            converted = _CONVERTERS[kind](value, walk, at)
        if converted is not _INVALID:
            out[field.key] = converted
    return out


FAILURE: Final = Struct(
    "Failure",
    "client.Failure",
    [
        Field("retry_count", INT, "int"),
        Field("remaining", INT, "int"),
        Field("failed_at", STRING, "string"),
        Field("next_at", STRING, "string"),
        Field("message", STRING, "string"),
        Field("errtype", STRING, "string"),
        Field("backtrace", STRING_LIST, "[]string"),
    ],
)
JOB: Final = Struct(
    "Job",
    "client.Job",
    [
        Field("retry", INT_PTR, "int"),
        Field("failure", FAILURE, "client.Failure"),
        Field("custom", ANY_MAP, "map[string]interface {}"),
        Field("jid", STRING, "string"),
        Field("queue", STRING, "string"),
        Field("jobtype", STRING, "string"),
        Field("created_at", STRING, "string"),
        Field("enqueued_at", STRING, "string"),
        Field("at", STRING, "string"),
        Field("args", ANY_LIST, "[]interface {}"),
        Field("reserve_for", INT, "int"),
        Field("backtrace", INT, "int"),
    ],
)
FAIL_PAYLOAD: Final = Struct(
    "FailPayload",
    "manager.FailPayload",
    [
        Field("jid", STRING, "string"),
        Field("message", STRING, "string"),
        Field("errtype", STRING, "string"),
        Field("backtrace", STRING_LIST, "[]string"),
    ],
)
CLIENT_BEAT: Final = Struct(
    "ClientBeat",
    "server.ClientBeat",
    [Field("current_state", STRING, "string"), Field("wid", STRING, "string"), Field("rss_kb", INT64, "int64")],
)
CLIENT_DATA: Final = Struct(
    "ClientData",
    "server.ClientData",
    [
        Field("hostname", STRING, "string"),
        Field("wid", STRING, "string"),
        Field("pid", INT, "int"),
        Field("rss_kb", INT64, "int64"),
        Field("labels", STRING_LIST, "[]string"),
        Field("pwdhash", STRING, "string"),
        Field("username", STRING, "string"),
        Field("v", UINT8, "uint8"),
        Field("StartedAt", TIME, "time.Time"),
    ],
)
JOB_FILTER: Final = Struct(
    "JobFilter",
    "client.JobFilter",
    [Field("jids", STRING_LIST, "[]string"), Field("regexp", STRING, "string"), Field("jobtype", STRING, "string")],
)
OPERATION: Final = Struct(
    "Operation",
    "client.Operation",
    [
        Field("cmd", STRING, "string"),
        Field("target", STRING, "client.Structure"),
        Field("filter", JOB_FILTER, "client.JobFilter"),
    ],
)


def _needs_normalize(text: str, saw_float: bool, clean: bool) -> bool:
    return saw_float or not clean or _BIG_INT.search(text) is not None


def _has_surrogates(text: str, clean: bool) -> bool:
    """Whether decoded strings may hold surrogates (invalid input bytes or ``\\uD8xx`` escapes)."""
    return not clean or "\\ud" in text or "\\uD" in text


def decode_struct(decoder: Decoder, text: str, spec: Struct, *, clean: bool = True) -> dict[str, Any]:
    """Unmarshal ``text`` into the Go struct ``spec``; a dict of the fields present. Raises GoJSONError."""
    value, _ = decoder.loads(text)
    walk = _Walk(False, _has_surrogates(text, clean))
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GoJSONError(f"json: cannot unmarshal {_kind(value)} into Go value of type {spec.gotype}")
    fields = _decode_struct(value, spec, walk, ())
    if walk.error:
        raise GoJSONError(walk.error)
    return fields


def decode_string_map(decoder: Decoder, text: str, *, clean: bool = True) -> dict[str, str] | None:
    """Unmarshal into Go ``map[string]string`` (ACK); None for JSON null. Raises GoJSONError."""
    value, _ = decoder.loads(text)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GoJSONError(f"json: cannot unmarshal {_kind(value)} into Go value of type map[string]string")
    fix = _has_surrogates(text, clean)
    out: dict[str, str] = {}
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            raise GoJSONError(f"json: cannot unmarshal {_kind(item)} into Go value of type string")
        text_value = item or ""
        out[_fix(key) if fix else key] = _fix(text_value) if fix else text_value
    return out


# ---------------------------------------------------------------------------------------------- Job


class Failure:
    """``client.Failure``; encodes in the struct order of Faktory 1.10."""

    __slots__ = ("backtrace", "errtype", "failed_at", "message", "next_at", "remaining", "retry_count")

    def __init__(
        self,
        *,
        retry_count: int = 0,
        remaining: int = 0,
        failed_at: str = "",
        next_at: str = "",
        message: str = "",
        errtype: str = "",
        backtrace: list[str] | None = None,
    ) -> None:
        self.retry_count = retry_count
        self.remaining = remaining
        self.failed_at = failed_at
        self.next_at = next_at
        self.message = message
        self.errtype = errtype
        self.backtrace = backtrace

    def encode(self) -> str:
        parts = ['{"failed_at":', estr(self.failed_at)]
        if self.next_at:
            parts += [',"next_at":', estr(self.next_at)]
        if self.message:
            parts += [',"message":', estr(self.message)]
        if self.errtype:
            parts += [',"errtype":', estr(self.errtype)]
        if self.backtrace:
            parts += [',"backtrace":', "".join(_encode_sorted(self.backtrace, 0))]
        parts += [f',"retry_count":{self.retry_count},"remaining":{self.remaining}}}']
        return "".join(parts)

    def repair(self) -> None:
        """What a decode/encode round trip does to bytes broken by truncation: they become U+FFFD."""
        self.message = _fix(self.message)
        self.errtype = _fix(self.errtype)


class Job:
    """``client.Job`` after Go's decode: only the struct's fields, zero values for absent ones."""

    __slots__ = (
        "args",
        "at",
        "backtrace",
        "created_at",
        "custom",
        "enqueued_at",
        "failure",
        "floaty",
        "jid",
        "jobtype",
        "queue",
        "reserve_for",
        "retry",
    )

    def __init__(self, fields: dict[str, Any], floaty: bool = False) -> None:
        get = fields.get
        self.retry: int | None = get("retry")
        failure = get("failure")
        self.failure = None if failure is None else Failure(**failure)
        self.custom: dict[str, Any] | None = get("custom")
        self.jid: str = get("jid", "")
        self.queue: str = get("queue", "")
        self.jobtype: str = get("jobtype", "")
        self.created_at: str = get("created_at", "")
        self.enqueued_at: str = get("enqueued_at", "")
        self.at: str = get("at", "")
        self.args: list[Any] | None = get("args")
        self.reserve_for: int = get("reserve_for", 0)
        self.backtrace: int = get("backtrace", 0)
        self.floaty = floaty

    def encode(self) -> bytes:
        """``json.Marshal(job)``: the exact bytes the server stores and sends."""
        parts = ['{"retry":', "null" if self.retry is None else str(self.retry)]
        if self.failure is not None:
            parts += [',"failure":', self.failure.encode()]
        if self.custom:
            parts += [',"custom":', _dumps_map_value(self.custom, self.floaty)]
        parts += [',"jid":', estr(self.jid), ',"queue":', estr(self.queue), ',"jobtype":', estr(self.jobtype)]
        if self.created_at:
            parts += [',"created_at":', estr(self.created_at)]
        if self.enqueued_at:
            parts += [',"enqueued_at":', estr(self.enqueued_at)]
        if self.at:
            parts += [',"at":', estr(self.at)]
        args = self.args
        parts += [',"args":', "null" if args is None else "[]" if not args else _dumps_map_value(args, self.floaty)]
        if self.reserve_for:
            parts += [',"reserve_for":', str(self.reserve_for)]
        if self.backtrace:
            parts += [',"backtrace":', str(self.backtrace)]
        parts.append("}")
        return finish("".join(parts))


def _job_from(value: Any, walk: _Walk) -> Job:
    if value is None:
        return Job({})
    if not isinstance(value, dict):
        walk.error = walk.error or f"json: cannot unmarshal {_kind(value)} into Go value of type client.Job"
        return Job({})
    job = Job(_decode_struct(value, JOB, walk, ()))
    job.floaty = walk.floaty
    return job


def decode_job(decoder: Decoder, text: str, *, clean: bool = True) -> tuple[Job, str | None, bool]:
    """Unmarshal a PUSH payload into ``client.Job``.

    Returns the job, the Go error text (None when decoding succeeded) and whether ``retry`` was given as
    a number: Go writes that number through the pointer even when the decode fails elsewhere, which the
    optional retry-default bug emulation needs to know. Syntax errors raise GoJSONError.
    """
    value, saw_float = decoder.loads(text)
    walk = _Walk(_needs_normalize(text, saw_float, clean), _has_surrogates(text, clean))
    job = _job_from(value, walk)
    return job, walk.error, isinstance(value, dict) and job.retry is not None


def decode_job_list(decoder: Decoder, text: str, *, clean: bool = True) -> list[Job]:
    """Unmarshal a PUSHB payload into ``[]client.Job``. Raises GoJSONError (nothing is pushed then)."""
    value, saw_float = decoder.loads(text)
    if value is None:
        return []
    if not isinstance(value, list):
        raise GoJSONError(f"json: cannot unmarshal {_kind(value)} into Go value of type []client.Job")
    normalize, fix = _needs_normalize(text, saw_float, clean), _has_surrogates(text, clean)
    jobs = []
    error = None
    for item in value:
        walk = _Walk(normalize, fix)
        jobs.append(_job_from(item, walk))
        error = error or walk.error
    if error:
        raise GoJSONError(error)
    return jobs
