"""Keeping secrets out of websockets' DEBUG logs.

(URLs as logs, reprs and errors may show them: :func:`fsm_live.transport.url.safe_url`.)

At DEBUG websockets logs every handshake header (Cookie, Authorization, a
Set-Cookie), the request line with its query string, and the start and end of
every frame (which may carry a token).  :func:`redacting_logger` wraps one of its
loggers so that header names, the request path, frame types and sizes stay, and
values go.  The client (:mod:`fsm_live.transport.websocket`) and the local test
server (:mod:`fsm_live.lwp.server`) both log through it.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.frames import Frame

__all__ = ("REDACTED", "redacting_logger")

REDACTED = "[redacted]"


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level <= logging.DEBUG and args:
            args = _redact(msg, args)
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
    if msg in ("> %s", "< %s") and isinstance(args[0], Frame):
        frame = args[0]
        return (f"{frame.opcode.name} [{len(frame.data)} bytes]",)
    return args
