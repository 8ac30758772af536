"""Canaries: no cookie, token or password reaches a log line, repr, exception or trace.

Every secret gets a unique random canary value (never written in this file, so a
traceback's source lines cannot show one).  A whole lifecycle runs against the
real lwp server with every logger at DEBUG, websockets' included: registration,
heartbeats and pushes, a token source that crashes (a traceback is logged), a
401 answered by a token refresh, a terminal close and an escalation that logs in
again with a password.  Then every captured text is searched for each canary,
plainly, percent-encoded and base64-encoded (at each byte alignment).
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, quote_plus

import anyio
import pytest

from fsm_live import Config, FixedDelay, LiveConnection
from fsm_live.credentials import Secret
from fsm_live.lwp.credentials import CookieCredentials
from fsm_live.lwp.faults import CloseConnections, Drop, Reject
from fsm_live.lwp.server import LwpServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]


def canary(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(16)}"


UNB = canary("unb")
COOKIE = canary("cookie")
TOKENS = [canary("token1"), canary("token2"), canary("token3")]
PASSWORD = canary("password")
CANARIES = {
    "unb": UNB,
    "cookie": COOKIE,
    "token1": TOKENS[0],
    "token2": TOKENS[1],
    "token3": TOKENS[2],
    "password": PASSWORD,
}

CONFIG = Config(
    heartbeat_interval=0.05,
    heartbeat_timeout=0.5,
    stability_window=0.1,
    open_timeout=1.0,
    close_timeout=0.3,
    planned_reconnect_delay=0.05,
    backoff=FixedDelay(0.05),
    max_failures=10,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def forms(value: str) -> Iterator[str]:
    """``value`` as it may appear: plain, percent-encoded, base64 (standard and URL-safe)
    at each of the three byte alignments (the characters the value alone decides)."""
    yield value
    yield quote(value, safe="")
    yield quote_plus(value)
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + value.encode()).decode()
            yield text[4 if offset else 0 : -4]


class Formatted(logging.Handler):
    """Every record, formatted with its traceback, into one text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stream = io.StringIO()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")


def exception_texts(records: list[logging.LogRecord]) -> Iterator[str]:
    for record in records:
        error = record.exc_info[1] if record.exc_info else None
        while error is not None:
            yield f"{type(error).__name__}: {error!s} {error!r}"
            error = error.__cause__ or error.__context__


async def test_no_canary_leaks_through_a_whole_lifecycle(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("websockets", "websockets.client", "websockets.server", "fsm_live"):
        caplog.set_level(logging.DEBUG, logger=name)
    formatted = Formatted()
    logging.getLogger().addHandler(formatted)
    trace = tmp_path / "trace.jsonl"
    texts: list[str] = []
    password = Secret(PASSWORD)
    try:
        async with LwpServer(push_interval=0.05) as server:
            calls = 0

            async def token_source(cookies: Mapping[str, Secret]) -> Secret:
                nonlocal calls
                calls += 1
                if calls == 2:  # the refresh after the first 401
                    raise RuntimeError("the token service crashed")
                token = TOKENS[0] if calls == 1 else TOKENS[1]
                return server.issue_token(cookies["unb"], value=Secret(token))

            async def relogin() -> bool:
                # A re-login sends the password; here it "logs in" and gets a new token.
                assert password.reveal() == PASSWORD
                server.issue_token(UNB, value=Secret(TOKENS[2]))
                return True

            credentials = CookieCredentials(
                Secret(f"unb={UNB}; sid={COOKIE}"), token_source=token_source, escalation=relogin
            )
            conn = LiveConnection(
                server.url, protocol="lwp", config=CONFIG, credentials=credentials, trace=trace
            )
            with anyio.fail_after(10):
                async with conn:
                    await conn.wait_connected()
                    await server.wait_until(
                        lambda s: s.acks_received >= 2 and s.heartbeats_acked >= 2
                    )
                    # A 401: the refresh crashes (traceback logged); the retry recovers.
                    await server.inject(Reject(401))
                    await server.inject(Drop())
                    while conn.stats().failures.get("auth", 0) < 1 or conn.state != "CONNECTED":
                        await conn.wait_changed()
                    # Another 401: this refresh gets a new token.
                    await server.inject(Reject(401))
                    await server.inject(Drop())
                    while conn.stats().failures.get("auth", 0) < 2 or conn.state != "CONNECTED":
                        await conn.wait_changed()
                    # A terminal close: FAILED, then the escalation logs in again (at
                    # once: FAILED may be over before this task looks, so a callback
                    # takes the failure's texts).
                    conn.on_transition(
                        lambda record: (
                            texts.extend([str(conn.failure), repr(conn.failure)])
                            if record.dest == "FAILED"
                            else None
                        )
                    )
                    await server.inject(CloseConnections(4500))
                    while (
                        "FAILED",
                        "reset",
                        "RECONNECTING",
                    ) not in conn.stats().transitions or conn.state != "CONNECTED":
                        await conn.wait_changed()
                    assert any("4500" in text for text in texts)
                    texts += [
                        repr(conn),
                        str(conn),
                        repr(credentials),
                        str(credentials),
                        repr(conn.stats()),
                        str(conn.stats()),
                        repr(password),
                        f"{password}",
                        repr(server.stats()),
                    ]
                texts += [repr(conn), repr(conn.stats())]
    finally:
        logging.getLogger().removeHandler(formatted)
    stats = conn.stats()
    # The first 401's refresh crashed, so the next attempt refreshed again (a refresh
    # that failed is retried, never skipped); the second 401's refresh makes four.
    assert calls == 4
    assert stats.failures.get("auth") == 2
    assert ("FAILED", "reset", "RECONNECTING") in stats.transitions
    assert any(
        "credentials provider raised" in record.getMessage() and record.exc_info
        for record in caplog.records
    ), "the forced failure logged no traceback"
    assert any(
        record.name.startswith("websockets") and record.levelno == logging.DEBUG
        for record in caplog.records
    ), "websockets logged nothing at DEBUG"

    sources = {
        "caplog": caplog.text,
        "formatted log (with tracebacks)": formatted.stream.getvalue(),
        "record messages": "\n".join(record.getMessage() for record in caplog.records),
        "exceptions": "\n".join(exception_texts(caplog.records)),
        "reprs": "\n".join(texts),
        "trace": trace.read_text(encoding="utf-8"),
    }
    leaks = [
        f"{kind} ({form!r}) in {where}: "
        + next(line for line in text.splitlines() if form in line)[:300]
        for kind, value in CANARIES.items()
        for form in set(forms(value))
        for where, text in sources.items()
        if form in text
    ]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
