"""A WebSocket server that records every session per account, for tests of clusters.

It speaks lwp (:class:`~fsm_live.lwp.service.LwpService`: tokens at ``GET /token``,
registration, heartbeats, pushes every ``push_interval`` seconds that the client
acknowledges) and names each session's account by the ``unb`` cookie of its
handshake.  For every session it records when it opened and closed (on
``time.monotonic()``, CLOCK_MONOTONIC: one clock for every process of the host),
the peer's address, the frames it received, and each frame received *after a
newer session of the same account had opened* (a **stale** frame: a message an
old session handled, or a heartbeat it sent, while another one was live).

:meth:`SessionRecorder.report` summarises: sessions per account, overlaps (two
sessions of one account open at once, as the server saw them), stale frames,
and accounts with exactly one open session now.

Run it in its own process (say, inside a network namespace) with
``python -m fsm_live.testing.recorder [--host H] [--port P] [--push-interval S]``:
it prints ``port N`` once listening, answers ``report`` on stdin with one JSON
line, and exits at end of input.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import attrs
import websockets.asyncio.server
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fsm_live.credentials import Secret, parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.lwp.service import LwpService

__all__ = ("Session", "SessionRecorder")


@attrs.define(eq=False)
class Session:
    """One WebSocket session of ``account`` as the server saw it."""

    id: int
    account: str
    peer: str
    opened: float
    closed: float | None = None
    frames: int = 0
    stale: int = 0  # frames received after a newer session of the account opened
    superseded_at: float | None = None  # when a newer session of the account opened

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class SessionRecorder:
    """The recording lwp server on ``host:port`` (0: a free port); ``async with`` it
    on anyio's asyncio backend."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, push_interval: float = 0.5
    ) -> None:
        self.host = host
        self.port = port
        self.service = LwpService(push_interval=push_interval, items_per_push=1, duplicate_every=0)
        self.sessions: list[Session] = []
        self._open: dict[str, list[Session]] = {}  # open sessions by account
        self._ids = itertools.count(1)
        self._server: websockets.asyncio.server.Server | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    async def __aenter__(self) -> Self:
        self.service.start()
        self._server = await websockets.asyncio.server.serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=None,
            close_timeout=1,
            backlog=1024,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if request.path.startswith("/token"):
            status, body = self.service.token_answer(request.headers.get_all("Cookie"))
            return connection.respond(status, json.dumps(body) + "\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        cookies: Mapping[str, Secret] = {}
        if ws.request is not None:
            with contextlib.suppress(ConfigError):
                cookies = parse_cookies("; ".join(ws.request.headers.get_all("Cookie")))
        unb = cookies.get("unb")
        account = "?" if unb is None else unb.reveal()
        peer = ws.remote_address
        session = Session(next(self._ids), account, f"{peer[0]}:{peer[1]}", time.monotonic())
        for older in self._open.get(account, []):
            if older.superseded_at is None:
                older.superseded_at = session.opened
        self._open.setdefault(account, []).append(session)
        self.sessions.append(session)

        async def receive() -> str | bytes:
            frame = await ws.recv()
            session.frames += 1
            if session.superseded_at is not None:
                session.stale += 1
            return frame

        try:
            await self.service.serve(receive, ws.send, ConnectionClosed)
        finally:
            session.closed = time.monotonic()
            self._open[account].remove(session)

    def report(self) -> dict[str, Any]:
        """Sessions, overlaps, stale frames and open sessions per account (JSON-ready)."""
        by_account: dict[str, list[Session]] = {}
        for session in self.sessions:
            by_account.setdefault(session.account, []).append(session)
        overlaps = 0
        for sessions in by_account.values():
            for older, newer in itertools.pairwise(sessions):
                if older.closed is None or older.closed > newer.opened:
                    overlaps += 1
        return {
            "sessions": len(self.sessions),
            "accounts": len(by_account),
            "open": {a: sum(s.closed is None for s in ss) for a, ss in by_account.items()},
            "overlaps": overlaps,
            "stale_frames": sum(s.stale for s in self.sessions),
            "stale_sessions": [s.as_json() for s in self.sessions if s.stale],
            "all": [s.as_json() for s in self.sessions],
        }


async def _serve(host: str, port: int, push_interval: float) -> None:
    async with SessionRecorder(host=host, port=port, push_interval=push_interval) as recorder:
        print(f"port {recorder.port}", flush=True)
        stdin = anyio.wrap_file(sys.stdin)
        async for line in stdin:
            if line.strip() == "report":
                print(json.dumps(recorder.report()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--push-interval", type=float, default=0.5)
    args = parser.parse_args()
    anyio.run(_serve, args.host, args.port, args.push_interval)


if __name__ == "__main__":
    main()
