"""Go ``time`` behaviour the server shows on the wire: RFC3339Nano output and ``time.Parse`` of ``at``.

Timestamps are integers of nanoseconds since the Unix epoch throughout the embedded server, so that the
nanosecond digits the real server prints survive and scores compare exactly.
"""

from __future__ import annotations

import calendar
import time
from typing import Final

NS_PER_SEC: Final = 1_000_000_000
RFC3339NANO: Final = "2006-01-02T15:04:05.999999999Z07:00"

_second: tuple[int, str] = (-1, "")  # the last formatted second; replaced as a whole, so threads may share it


def format_ns(ns: int) -> str:
    """Go ``t.UTC().Format(time.RFC3339Nano)``: fraction trimmed of trailing zeros, dot dropped when zero."""
    global _second  # noqa: PLW0603
    sec, frac = divmod(ns, NS_PER_SEC)
    cached = _second
    if cached[0] == sec:
        head = cached[1]
    else:
        head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = (sec, head)
    if not frac:
        return f"{head}Z"
    return f"{head}.{frac:09d}".rstrip("0") + "Z"


def clock_text(ns: int) -> str:
    """Go layout ``15:04:05 UTC`` (INFO's ``server_utc_time``)."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(ns // NS_PER_SEC))


class TimeParseError(ValueError):
    """A ``time.Parse`` failure; ``str()`` is Go's ``*time.ParseError`` text."""


def _quote(s: str) -> str:
    """The ``time`` package's private ``quote``: non-ASCII and control bytes as ``\\xNN``."""
    out = ['"']
    for ch in s:
        if ch < " " or ch >= "\x80":
            out.extend(f"\\x{byte:02x}" for byte in ch.encode("utf-8", "surrogateescape"))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


def _error(value: str, layout_elem: str, value_elem: str, message: str = "") -> TimeParseError:
    if message:
        return TimeParseError(f"parsing time {_quote(value)}{message}")
    return TimeParseError(
        f"parsing time {_quote(value)} as {_quote(RFC3339NANO)}: cannot parse "
        f"{_quote(value_elem)} as {_quote(layout_elem)}"
    )


def _days_in(month: int, year: int) -> int:
    if month == 2 and calendar.isleap(year):
        return 29
    return (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1] if 1 <= month <= 12 else 31


def _to_ns(fields: tuple[int, int, int, int, int, int], nsec: int, offset: int) -> int:
    """Unix nanoseconds of (year, month, day, hour, minute, second) + nsec at ``offset`` seconds east."""
    year, month, day, hour, minute, sec = fields
    days = _days_from_civil(year, month, day)
    return ((days * 86400 + hour * 3600 + minute * 60 + sec - offset) * NS_PER_SEC) + nsec


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (any year, unlike ``datetime``)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def _fast(value: str) -> int | None:
    """Go >= 1.20 ``parseRFC3339`` fast path; None where Go falls back to the general parser."""
    if len(value) < 19 or not value.isascii():
        return None
    fields = (value[0:4], value[5:7], value[8:10], value[11:13], value[14:16], value[17:19])
    if not all(_digits(f) for f in fields):
        return None
    year, month, day, hour, minute, sec = (int(f) for f in fields)
    if not (1 <= month <= 12 and 1 <= day <= _days_in(month, year) and hour <= 23 and minute <= 59 and sec <= 59):
        return None
    if value[4] != "-" or value[7] != "-" or value[10] != "T" or value[13] != ":" or value[16] != ":":
        return None
    rest = value[19:]
    nsec = 0
    if len(rest) >= 2 and rest[0] == "." and rest[1].isdigit():
        n = 2
        while n < len(rest) and rest[n].isdigit():
            n += 1
        nsec = int(rest[1 : min(n, 10)].ljust(9, "0"))
        rest = rest[n:]
    offset = 0
    if rest != "Z":
        if len(rest) != 6 or rest[0] not in "+-" or rest[3] != ":" or not _digits(rest[1:3] + rest[4:6]):
            return None
        hh, mm = int(rest[1:3]), int(rest[4:6])
        if hh > 23 or mm > 59:
            return None
        offset = (hh * 60 + mm) * 60 * (-1 if rest[0] == "-" else 1)
    return _to_ns((year, month, day, hour, minute, sec), nsec, offset)


def _getnum(s: str, fixed: bool) -> tuple[int, str] | None:
    if not s or not ("0" <= s[0] <= "9"):
        return None
    if len(s) < 2 or not ("0" <= s[1] <= "9"):
        if fixed:
            return None
        return int(s[0]), s[1:]
    return int(s[:2]), s[2:]


def parse_rfc3339nano(value: str) -> int:
    """``time.Parse(time.RFC3339Nano, value)`` as Unix nanoseconds, or TimeParseError with Go's message."""
    fast = _fast(value)
    if fast is not None:
        return fast
    return _slow(value)


def _skip(value: str, prefix: str, avalue: str) -> str:
    """Go's ``skip``: the literal text between two layout elements."""
    if not value.startswith(prefix):
        raise _error(avalue, prefix, value)
    return value[len(prefix) :]


# Numeric layout elements: (layout text, fixed width, exclusive upper bound, name in range errors).
_MONTH: Final = ("01", True, 13, "month")
_DAY: Final = ("02", True, None, "day")
_HOUR: Final = ("15", False, 24, "hour")
_MINUTE: Final = ("04", True, 60, "minute")
_SECOND: Final = ("05", True, 60, "second")


def _number(value: str, avalue: str, element: tuple[str, bool, int | None, str]) -> tuple[int, str]:
    """One numeric layout element with Go's range check."""
    elem, fixed, limit, what = element
    got = _getnum(value, fixed)
    if got is None:
        raise _error(avalue, elem, value)
    number, rest = got
    if limit is not None and not (number < limit and (elem != "01" or number >= 1)):
        raise _error(avalue, elem, rest, f": {what} out of range")
    return number, rest


def _zone(value: str, avalue: str) -> tuple[int, str]:
    """The ``Z07:00`` element: ``Z`` or ``±hh:mm``; returns the offset in seconds east of UTC."""
    if value[:1] == "Z":
        return 0, value[1:]
    if len(value) < 6 or value[3] != ":":
        raise _error(avalue, "Z07:00", value)
    sign, hours, minutes, rest = value[0], _getnum(value[1:3], True), _getnum(value[4:6], True), value[6:]
    if hours is None or minutes is None:
        raise _error(avalue, "Z07:00", value)
    if hours[0] > 24:
        raise _error(avalue, "Z07:00", rest, ": time zone offset hour out of range")
    if minutes[0] > 60:
        raise _error(avalue, "Z07:00", rest, ": time zone offset minute out of range")
    if sign not in "+-":
        raise _error(avalue, "Z07:00", value)
    return (hours[0] * 60 + minutes[0]) * 60 * (-1 if sign == "-" else 1), rest


def _slow(avalue: str) -> int:
    """Go's general ``time.Parse`` loop, specialised to the RFC3339Nano layout (errors and odd inputs)."""
    value = avalue
    if len(value) < 4 or not _digits(value[:4]):
        raise _error(avalue, "2006", value)
    year, value = int(value[:4]), value[4:]
    month, value = _number(_skip(value, "-", avalue), avalue, _MONTH)
    day, value = _number(_skip(value, "-", avalue), avalue, _DAY)
    hour, value = _number(_skip(value, "T", avalue), avalue, _HOUR)
    minute, value = _number(_skip(value, ":", avalue), avalue, _MINUTE)
    sec, value = _number(_skip(value, ":", avalue), avalue, _SECOND)
    nsec = 0
    if len(value) >= 2 and value[0] in ".," and "0" <= value[1] <= "9":
        i = 1
        while i < len(value) and "0" <= value[i] <= "9":
            i += 1
        nsec = int(value[1 : min(i, 10)].ljust(9, "0"))
        value = value[i:]
    offset, value = _zone(value, avalue)
    if value:
        raise _error(avalue, "", value, ": extra text: " + _quote(value))
    if day < 1 or day > _days_in(month, year):
        raise _error(avalue, "", value, ": day out of range")
    return _to_ns((year, month, day, hour, minute, sec), nsec, offset)
