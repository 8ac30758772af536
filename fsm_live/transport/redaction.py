"""Keeping secrets out of websockets' DEBUG logs, and peers' text down to size.

(URLs as logs, reprs and errors may show them: :func:`fsm_live.transport.url.safe_url`.)

At DEBUG websockets logs every handshake header (Cookie, Authorization, a
Set-Cookie), the request line with its query string, the answer's status line
with its reason phrase (which a server may fill with the request's cookies), and
the start and end of every frame (which may carry a token).
:func:`redacting_logger` wraps one of its loggers so that header names, the
request path, the status code, frame types and sizes stay, and values go.  The
engine (:mod:`fsm_live._runtime.engine`) and the local test server
(:mod:`fsm_live.lwp.server`) both log through it.

Text a peer chose (an lwp refusal's ``code``, anything a server sends that an
error must quote) goes through :func:`peer_text` before it reaches an exception,
a log line or a trace: cut to :data:`PEER_TEXT_LIMIT` characters, control
characters escaped (a peer cannot forge log lines or drive a terminal), never
more work than the limit whatever the value (a nested list 100,000 levels deep
is shown, not recursed into).
"""

from __future__ import annotations

import logging
import reprlib
from typing import Any, Final

from websockets.frames import Frame

__all__ = ("PEER_TEXT_LIMIT", "REDACTED", "peer_text", "redacting_logger")

REDACTED = "[redacted]"
#: The most characters of a peer's text an error, a log line or a trace quotes
#: (an HTTP reason phrase, a close reason, an lwp ``code`` are each well under it).
PEER_TEXT_LIMIT: Final = 200

# C0 and C1 control characters, DEL, and the bidirectional overrides and isolates
# (which reorder what a terminal shows) are written as escapes.
_CONTROLS: Final = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_REPR: Final = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_REPR.maxlevel = 4
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = PEER_TEXT_LIMIT


def peer_text(value: object, limit: int = PEER_TEXT_LIMIT) -> str:
    """``value``, chosen by a peer, as text fit for an error, a log line or a trace.

    A ``str`` as it is, anything else as a ``repr`` (nested containers shown a few
    levels and items deep); control characters escaped (``\\n``, ``\\x1b``);
    then cut to ``limit`` characters, with how long it was: ``'AAAA... (500000
    characters)'``.  Never raises.
    """
    try:
        text = value if isinstance(value, str) else _REPR.repr(value)
    except Exception:  # a repr that raises (a user's type): its type is all there is
        text = f"<{type(value).__name__}>"
    shown = text[:limit].translate(_CONTROLS)
    if len(text) <= limit and len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(text)} characters)"


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level <= logging.DEBUG and args:
            args = _redact(msg, args)
        # The record names websockets' line that logged, not this one:
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super().log(level, msg, *args, **kwargs)


def redacting_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    """The logger ``name`` (say ``websockets.client``), redacting as the module says."""
    return _RedactingLogger(logging.getLogger(name), {})


def _without_query(target: str) -> str:
    path, query, _ = target.partition("?")
    return path + (f"?{REDACTED}" if query else "")


def _redact(msg: object, args: tuple[object, ...]) -> tuple[object, ...]:
    if msg in ("> %s: %s", "< %s: %s"):  # a header line, both ways
        return (args[0], REDACTED)
    if msg == "> GET %s HTTP/1.1" and isinstance(args[0], str):  # client request line
        return (_without_query(args[0]),)
    if msg == "< %s %s %s" and len(args) == 3 and isinstance(args[1], str):  # server side
        return (args[0], _without_query(args[1]), args[2])
    if msg == "< HTTP/1.1 %d %s" and len(args) == 2:  # client side: the server's reason
        return (args[0], REDACTED)  # phrase is its own text (it may echo our Cookie)
    if msg in ("> %s", "< %s") and isinstance(args[0], Frame):
        frame = args[0]
        return (f"{frame.opcode.name} [{len(frame.data)} bytes]",)
    return args
