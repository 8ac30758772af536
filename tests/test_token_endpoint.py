"""A real HTTP token endpoint behind an lwp connection, end to end (issue 16 item 5).

The token endpoint is a local TCP server speaking just enough HTTP (one answer
per connection); the connection is ``fsm-live connect --protocol lwp`` as a
child process, or ``fsm_live.connect(..., protocol="lwp")`` with the same
credentials the CLI builds (:func:`~fsm_live.lwp.credentials.lwp_credentials`,
whose token source GETs ``--token-url``).  What each answer must lead to
(specs/connection.yaml, ``errors``):

* 401 or 403: the cookies are refused; asking again with them cannot help (and
  hammering a login endpoint with dead cookies gets accounts flagged): class
  ``rejected``, FAILED at once, the escalation (a re-login) runs, and without
  one that recovers the connection stays FAILED: ``connect`` exits 3;
* 5xx, or nothing listening: the endpoint is down, class ``server``: backoff,
  then a retry, until it answers.

Waits are on events (states, stats, requests seen), each bounded; nothing
asserts on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from servers import raw_server, say_nothing

import fsm_live
from fsm_live import Config, ConnectionFailed, FixedDelay, LiveConnection
from fsm_live.credentials import parse_cookies
from fsm_live.lwp.credentials import CookieCredentials, lwp_credentials
from fsm_live.lwp.server import LwpServer
from fsm_live.lwp.token import HttpTokenSource

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

DEADLINE = 30.0
COMMAND = (sys.executable, "-m", "fsm_live", "connect")
CANARY = "cookie-canary-6021"
COOKIES = f"unb=77; sid={CANARY}"
#: Quick retries (the backoff policy itself is tested elsewhere), and a heartbeat
#: timeout no busy loop reaches.
CONFIG = Config(
    heartbeat_interval=1,
    heartbeat_timeout=10,
    open_timeout=10,
    backoff=FixedDelay(0.1),
    max_failures=50,
)


class TokenEndpoint:
    """``GET /token``: the n-th request is answered with the n-th of ``statuses`` (the
    last repeats), 200 with ``{"token": issue()}``; every request is kept."""

    def __init__(self, *statuses: int, issue: Callable[[], str] | None = None) -> None:
        self.statuses = list(statuses)
        self.issue = issue
        self.requests: list[bytes] = []

    async def __call__(self, stream: anyio.abc.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive()
        index = min(len(self.requests), len(self.statuses) - 1)
        self.requests.append(request)
        status = self.statuses[index]
        body = b""
        if status == 200:
            assert self.issue is not None
            body = json.dumps({"token": self.issue()}).encode()
        await stream.send(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}
    env["FSM_LIVE_COOKIES"] = COOKIES
    return env


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def _wait_failures(conn: LiveConnection, error_class: str, count: int) -> None:
    while conn.stats().failures.get(error_class, 0) < count:
        await conn.wait_changed()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # LwpServer is websockets' asyncio server


@pytest.fixture
async def server() -> AsyncIterator[LwpServer]:
    async with LwpServer(push_interval=None) as running:
        yield running


@pytest.mark.parametrize("status", [401, 403])
async def test_connect_exits_3_when_the_token_endpoint_refuses_the_cookies(
    server: LwpServer, tmp_path: Path, status: int
) -> None:
    """``fsm-live connect --protocol lwp``: one token request, classed ``rejected``,
    FAILED for good, exit 3; the WebSocket server is never dialled with dead
    cookies, and no cookie is shown."""
    endpoint = TokenEndpoint(status)
    trace = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE + 20):
        async with raw_server(endpoint) as token_server:
            done = await anyio.run_process(
                [
                    *COMMAND,
                    server.url,
                    "--protocol",
                    "lwp",
                    "--token-url",
                    f"http://127.0.0.1:{token_server.port}/token",
                    "--trace",
                    str(trace),
                    # a bound only: the command ends at FAILED, long before
                    "--duration",
                    str(DEADLINE),
                ],
                check=False,
                env=_env(),
            )
    stderr = done.stderr.decode()
    assert done.returncode == 3, stderr
    assert f"answered HTTP {status}" in stderr
    assert "FAILED" in stderr
    assert len(endpoint.requests) == 1  # not asked again with the same cookies
    assert f"sid={CANARY}".encode() in endpoint.requests[0]  # the cookies were sent ...
    for shown in (stderr, done.stdout.decode(), trace.read_text(encoding="utf-8")):
        assert CANARY not in shown  # ... and never shown
    assert server.stats().handshakes == 0
    rows = _rows(trace)
    transitions = [(row["from"], row["to"]) for row in rows if "kind" not in row]
    assert transitions == [
        ("DISCONNECTED", "CONNECTING"),
        ("CONNECTING", "FAILED"),
        ("FAILED", "CLOSED"),
    ]
    assert [row["class"] for row in rows if row.get("kind") == "failure"] == ["rejected"]


class Relogin:
    """An escalation hook that counts its calls and says whether it ``recovers``."""

    def __init__(self, *, recovers: bool) -> None:
        self.calls = 0
        self.recovers = recovers

    async def __call__(self) -> bool:
        self.calls += 1
        return self.recovers


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_cookies_escalate_then_stay_failed(server: LwpServer, status: int) -> None:
    """Through ``fsm_live.connect``: the escalation runs once; when it does not recover,
    the connection needs a reset, and nothing asks the token endpoint again."""
    endpoint = TokenEndpoint(status)
    relogin = Relogin(recovers=False)
    with anyio.fail_after(DEADLINE):
        async with raw_server(endpoint) as token_server:
            credentials = CookieCredentials(
                parse_cookies(COOKIES),
                token_source=HttpTokenSource(f"http://127.0.0.1:{token_server.port}/token"),
                escalation=relogin,
            )
            async with fsm_live.connect(
                server.url, protocol="lwp", credentials=credentials, config=CONFIG
            ) as conn:
                with pytest.raises(ConnectionFailed) as caught:
                    await conn.wait_for("CLOSED")  # raises once FAILED needs reset()
                assert conn.needs_reset
                stats = conn.stats()
    assert relogin.calls == 1
    assert len(endpoint.requests) == 1
    assert server.stats().handshakes == 0
    assert caught.value.failure.error_class == "rejected"
    assert f"answered HTTP {status}" in str(caught.value)
    assert stats.failures == {"rejected": 1}
    assert stats.transitions == {
        ("DISCONNECTED", "start", "CONNECTING"): 1,
        ("CONNECTING", "fatal", "FAILED"): 1,
    }


async def test_an_escalation_that_recovers_connects(server: LwpServer) -> None:
    """The escalation (a re-login) says it recovered, and the endpoint answers the next
    request with a token: ``reset``, then a token, registration, CONNECTED."""
    endpoint = TokenEndpoint(401, 200, issue=lambda: server.issue_token("77").reveal())
    relogin = Relogin(recovers=True)
    with anyio.fail_after(DEADLINE):
        async with raw_server(endpoint) as token_server:
            credentials = CookieCredentials(
                parse_cookies(COOKIES),
                token_source=HttpTokenSource(f"http://127.0.0.1:{token_server.port}/token"),
                escalation=relogin,
            )
            async with fsm_live.connect(
                server.url, protocol="lwp", credentials=credentials, config=CONFIG
            ) as conn:
                await conn.wait_connected()
                stats = conn.stats()
    assert relogin.calls == 1
    assert len(endpoint.requests) == 2
    assert server.stats().registrations == 1
    assert stats.transitions[("CONNECTING", "fatal", "FAILED")] == 1
    assert stats.transitions[("FAILED", "reset", "RECONNECTING")] == 1
    assert stats.failures == {"rejected": 1}


@pytest.mark.parametrize("status", [500, 503])
async def test_a_token_endpoint_answering_5xx_is_retried_after_a_backoff(
    server: LwpServer, status: int
) -> None:
    """The endpoint is down for two requests: class ``server``, backoff, retry; the
    third gets a token, and the connection registers.  Never FAILED."""
    endpoint = TokenEndpoint(status, status, 200, issue=lambda: server.issue_token("77").reveal())
    with anyio.fail_after(DEADLINE):
        async with raw_server(endpoint) as token_server:
            credentials = lwp_credentials(
                COOKIES, url=server.url, token_url=f"http://127.0.0.1:{token_server.port}/token"
            )
            async with fsm_live.connect(
                server.url, protocol="lwp", credentials=credentials, config=CONFIG
            ) as conn:
                await conn.wait_connected()
                stats = conn.stats()
    assert len(endpoint.requests) == 3
    assert stats.failures == {"server": 2}
    assert stats.transitions[("CONNECTING", "connect_failed", "RECONNECTING")] == 2
    assert stats.transitions[("RECONNECTING", "retry", "CONNECTING")] == 2
    assert "FAILED" not in {dest for (_, _, dest) in stats.transitions}
    assert server.stats().registrations == 1


def _closing(
    handle: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> Callable[[anyio.abc.SocketStream], Awaitable[None]]:
    """``handle``, then the stream closed (the client reads the answer to its end)."""

    async def handle_and_close(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await handle(stream)

    return handle_and_close


@contextlib.contextmanager
def _bound_not_listening() -> Iterator[socket.socket]:
    """A loopback socket bound but not listening: connects to its port are refused
    until it listens."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


async def test_an_unreachable_token_endpoint_is_retried_until_it_answers(
    server: LwpServer,
) -> None:
    """Nothing listens at the token URL (connects refused): class ``server``, retried
    (after a few, the endpoint rule may make it wait and probe instead) until the
    endpoint listens; then a token, registration, CONNECTED.  Never FAILED."""
    endpoint = TokenEndpoint(200, issue=lambda: server.issue_token("77").reveal())
    with anyio.fail_after(DEADLINE), _bound_not_listening() as sock:
        port = sock.getsockname()[1]
        credentials = lwp_credentials(
            COOKIES, url=server.url, token_url=f"http://127.0.0.1:{port}/token"
        )
        async with fsm_live.connect(
            server.url, protocol="lwp", credentials=credentials, config=CONFIG
        ) as conn:
            await _wait_failures(conn, "server", 2)  # refused twice: retried
            assert "cannot connect" in conn.stats().last_error
            sock.listen()
            listener = await anyio.abc.SocketListener.from_socket(sock)
            async with listener, anyio.create_task_group() as serving:
                serving.start_soon(listener.serve, _closing(endpoint))
                await conn.wait_connected()
                serving.cancel_scope.cancel()
            stats = conn.stats()
    assert stats.failures["server"] >= 2
    assert "FAILED" not in {dest for (_, _, dest) in stats.transitions}
    assert len(endpoint.requests) == 1
    assert server.stats().registrations == 1


async def test_a_silent_token_endpoint_is_a_server_failure_too(server: LwpServer) -> None:
    """An endpoint that accepts and never answers: the token source's own timeout ends
    each attempt (class ``server``), and the connection keeps retrying."""
    async with raw_server(say_nothing) as token_server:
        credentials = CookieCredentials(
            parse_cookies(COOKIES),
            token_source=HttpTokenSource(
                f"http://127.0.0.1:{token_server.port}/token", timeout=0.2
            ),
        )
        with anyio.fail_after(DEADLINE):
            async with fsm_live.connect(
                server.url, protocol="lwp", credentials=credentials, config=CONFIG
            ) as conn:
                await _wait_failures(conn, "server", 2)
                stats = conn.stats()
    assert token_server.attempts.count >= 2
    assert "no answer within 0.2 s" in stats.last_error
    assert server.stats().handshakes == 0
