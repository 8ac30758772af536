"""Server faults and the small language that schedules them (``fsm-live serve --faults``).

A *schedule* is a list of entries, each ``TIME FAULT [ARGUMENTS] [OPTIONS]``,
separated by ``;`` or newlines; ``#`` starts a comment that runs to the end of
the line.  ``TIME`` is the offset from the server's start at which the fault
fires.  Entries fire in time order (entries with the same time in the order
written)::

    5s close 1012; 12s blackhole 20s; 30s reject 401 x1
    40s refuse-reg; 50s restart 3s; 60s drop

Durations are a number with a unit: ``250ms``, ``1.5s``, ``2m``.

==============================================  ============================================
fault                                           what the server does
==============================================  ============================================
``drop``                                        aborts every open connection's TCP stream
                                                (no close frame: the client sees 1006)
``blackhole DURATION``                          stops answering for DURATION, sockets kept
                                                open (half-open): no replies, no pushes, new
                                                handshakes stall
``close CODE``                                  closes every open connection with CODE
                                                (1000-1003, 1007-1014, 3000-4999)
``reject STATUS [xN] [retry-after=DURATION]``   answers the next N (default 1) WebSocket
                                                handshakes with HTTP STATUS (400-599), with
                                                a ``Retry-After`` header when given
``refuse-reg [xN]``                             answers the next N (default 1) registrations
                                                with code 401, whatever their token
``restart DURATION``                            closes every connection with 1012, stops
                                                listening for DURATION (connections are
                                                refused), then listens again on the same port
==============================================  ============================================

:func:`parse_schedule` reads the text; a mistake raises :class:`FaultSyntaxError`
naming the source, the line and column of the bad token, and the token itself.
``str()`` of a :class:`Fault` or :class:`ScheduledFault` is its own syntax, so a
schedule can be printed and read back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
from websockets.frames import EXTERNAL_CLOSE_CODES

from fsm_live.errors import FsmLiveError

__all__ = (
    "BlackHole",
    "CloseConnections",
    "Drop",
    "Fault",
    "FaultSyntaxError",
    "RefuseRegistration",
    "Reject",
    "Restart",
    "ScheduledFault",
    "format_duration",
    "load_schedule",
    "parse_schedule",
)

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m)\Z")
_COUNT: Final = re.compile(r"x(\d+)\Z")


class FaultSyntaxError(FsmLiveError, ValueError):
    """A fault schedule could not be read.

    The message reads ``SOURCE:LINE:COLUMN: problem``; ``token`` is the offending
    text ('' at the end of an entry that is missing something).
    """

    def __init__(self, source: str, line: int, column: int, token: str, problem: str) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.token = token
        super().__init__(f"{source}:{line}:{column}: {problem}")


def format_duration(seconds: float) -> str:
    """``seconds`` in the schedule's syntax: ``250ms``, ``1.5s``, ``20s``."""
    if 0 < seconds < 1 and round(seconds * 1000, 6).is_integer():
        return f"{round(seconds * 1000):d}ms"
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


# -- the faults ----------------------------------------------------------------------------


@attrs.frozen
class Drop:
    """Abort every open connection's TCP stream, without a close frame."""

    def __str__(self) -> str:
        return "drop"


@attrs.frozen
class BlackHole:
    """Stop answering for ``duration`` seconds; sockets stay open."""

    duration: float

    def __str__(self) -> str:
        return f"blackhole {format_duration(self.duration)}"


@attrs.frozen
class CloseConnections:
    """Close every open connection with ``code``."""

    code: int

    def __str__(self) -> str:
        return f"close {self.code}"


@attrs.frozen
class Reject:
    """Answer the next ``count`` handshakes with HTTP ``status`` (and Retry-After)."""

    status: int
    count: int = 1
    retry_after: float | None = None

    def __str__(self) -> str:
        text = f"reject {self.status} x{self.count}"
        if self.retry_after is not None:
            text += f" retry-after={format_duration(self.retry_after)}"
        return text


@attrs.frozen
class RefuseRegistration:
    """Answer the next ``count`` registrations with code 401."""

    count: int = 1

    def __str__(self) -> str:
        return f"refuse-reg x{self.count}"


@attrs.frozen
class Restart:
    """Close every connection with 1012 and refuse connections for ``downtime`` seconds."""

    downtime: float

    def __str__(self) -> str:
        return f"restart {format_duration(self.downtime)}"


Fault = Drop | BlackHole | CloseConnections | Reject | RefuseRegistration | Restart


@attrs.frozen
class ScheduledFault:
    """A fault and when it fires (seconds after the server started)."""

    at: float
    fault: Fault

    def __str__(self) -> str:
        return f"{format_duration(self.at)} {self.fault}"


# -- the parser ----------------------------------------------------------------------------


@attrs.frozen
class _Token:
    text: str
    line: int
    column: int


class _Entry:
    """The tokens of one entry, consumed left to right, with located errors."""

    def __init__(self, source: str, tokens: list[_Token]) -> None:
        self._source = source
        self._tokens = tokens
        self._next = 0

    def error(self, token: _Token | None, problem: str) -> FaultSyntaxError:
        if token is None:  # something is missing: point just past the last token
            last = self._tokens[-1]
            return FaultSyntaxError(
                self._source, last.line, last.column + len(last.text), "", problem
            )
        return FaultSyntaxError(
            self._source, token.line, token.column, token.text, f"{problem}, got {token.text!r}"
        )

    def take(self, what: str) -> _Token:
        if self._next >= len(self._tokens):
            head = self._tokens[1].text if len(self._tokens) > 1 else "the entry"
            raise self.error(None, f"{head} needs {what}")
        token = self._tokens[self._next]
        self._next += 1
        return token

    def rest(self) -> Iterator[_Token]:
        while self._next < len(self._tokens):
            self._next += 1
            yield self._tokens[self._next - 1]

    def duration(self, what: str) -> float:
        token = self.take(what)
        return self.as_duration(token, what)

    def as_duration(self, token: _Token, what: str) -> float:
        match = _DURATION.match(token.text)
        if match is None:
            raise self.error(token, f"expected {what} such as 20s, 1.5s or 250ms")
        value = float(match.group(1)) * _UNITS[match.group(2)]
        if not math.isfinite(value):
            raise self.error(token, f"expected {what} that is finite")
        return value

    def integer(self, what: str, allowed: range) -> int:
        token = self.take(what)
        if not token.text.isdigit() or int(token.text) not in allowed:
            raise self.error(token, f"expected {what}")
        return int(token.text)


_ACTIONS: Final = ("drop", "blackhole", "close", "reject", "refuse-reg", "restart")


def _is_close_code(code: int) -> bool:
    return code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000


def _parse_fault(entry: _Entry) -> Fault:
    action = entry.take("a fault")
    name = action.text
    if name == "drop":
        fault: Fault = Drop()
    elif name == "blackhole":
        fault = BlackHole(_positive(entry, "a duration"))
    elif name == "restart":
        fault = Restart(entry.duration("a downtime"))
    elif name == "close":
        token = entry.take("a close code")
        if not token.text.isdigit() or not _is_close_code(int(token.text)):
            raise entry.error(
                token, "expected a close code a server may send (1000-1003, 1007-1014, 3000-4999)"
            )
        fault = CloseConnections(int(token.text))
    elif name == "reject":
        status = entry.integer("an HTTP status from 400 to 599", range(400, 600))
        count, retry_after = _options(entry, retry_after=True)
        fault = Reject(status, count, retry_after)
    elif name == "refuse-reg":
        count, _ = _options(entry, retry_after=False)
        fault = RefuseRegistration(count)
    else:
        raise entry.error(action, f"unknown fault (expected one of: {', '.join(_ACTIONS)})")
    for extra in entry.rest():
        raise entry.error(extra, f"unexpected argument after '{fault}'")
    return fault


def _positive(entry: _Entry, what: str) -> float:
    token = entry.take(what)
    value = entry.as_duration(token, what)
    if value <= 0:
        raise entry.error(token, f"expected {what} greater than zero")
    return value


def _options(entry: _Entry, *, retry_after: bool) -> tuple[int, float | None]:
    count, delay = 1, None
    for token in entry.rest():
        if (match := _COUNT.match(token.text)) is not None and int(match.group(1)) >= 1:
            count = int(match.group(1))
        elif retry_after and token.text.startswith("retry-after="):
            value = _Token(
                token.text.removeprefix("retry-after="),
                token.line,
                token.column + len("retry-after="),
            )
            delay = entry.as_duration(value, "a Retry-After duration")
        else:
            expected = "xN (N >= 1)" + (" or retry-after=DURATION" if retry_after else "")
            raise entry.error(token, f"expected {expected}")
    return count, delay


def _entries(text: str) -> Iterator[list[_Token]]:
    """The tokens of each non-empty entry, located (1-based line and column)."""
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0]
        tokens: list[_Token] = []
        for match in re.finditer(r"[^\s;]+|;", code):
            if match.group() == ";":
                if tokens:
                    yield tokens
                tokens = []
            else:
                tokens.append(_Token(match.group(), number, match.start() + 1))
        if tokens:
            yield tokens


def parse_schedule(text: str, *, source: str = "<faults>") -> tuple[ScheduledFault, ...]:
    """The schedule ``text`` describes, in firing order (by time, ties as written).

    Raises :class:`FaultSyntaxError` (``source:line:column: problem, got 'token'``)
    at the first mistake.  Empty text is an empty schedule.
    """
    scheduled: list[ScheduledFault] = []
    for tokens in _entries(text):
        entry = _Entry(source, tokens)
        time_token = entry.take("a time")
        at = entry.as_duration(time_token, "a time")
        scheduled.append(ScheduledFault(at, _parse_fault(entry)))
    return tuple(sorted(scheduled, key=lambda item: item.at))


def load_schedule(argument: str) -> tuple[ScheduledFault, ...]:
    """``--faults`` as given: ``@FILE`` or the path of an existing file is read (one
    fault per line, ``#`` comments); anything else is schedule text.

    Raises :class:`FaultSyntaxError`, or OSError when ``@FILE`` cannot be read.
    """
    if argument.startswith("@"):
        path = Path(argument[1:])
    elif "\n" not in argument and ";" not in argument and Path(argument).is_file():
        path = Path(argument)
    else:
        return parse_schedule(argument, source="--faults")
    return parse_schedule(path.read_text(encoding="utf-8"), source=str(path))
