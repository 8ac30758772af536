"""A connection run by plain ``asyncio.run`` (not ``anyio.run``), as many applications do.

The engine starts jobs from loop callbacks (its timer, bytes received), where no
task tells anyio which library runs; under ``asyncio.run`` nothing else says it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets.asyncio.server

from fsm_live import Config, connect

pytestmark = pytest.mark.timeout(30)


def test_reconnects_and_handlers_under_plain_asyncio_run() -> None:
    handled: list[Any] = []

    async def handler(message: Any) -> None:
        handled.append(message)

    async def main() -> dict[tuple[str, str, str], int]:
        sessions = 0

        async def serve(ws: Any) -> None:
            nonlocal sessions
            sessions += 1
            await ws.send(f"hello {sessions}")
            if sessions == 1:
                await ws.close(1012)  # a restart: the retry comes from the engine's timer
            else:
                await ws.wait_closed()

        async with websockets.asyncio.server.serve(serve, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            config = Config(
                heartbeat_interval=0.2, heartbeat_timeout=1.0, planned_reconnect_delay=0.05
            )
            async with (
                asyncio.timeout(10),
                connect(f"ws://127.0.0.1:{port}/", config=config, on_message=handler) as conn,
            ):
                while conn.stats().connects < 2 or len(handled) < 2:
                    await conn.wait_changed()
                await asyncio.sleep(0.5)  # heartbeats on the second link
                return dict(conn.stats().transitions)

    transitions = asyncio.run(main())
    assert transitions[("CONNECTING", "opened", "CONNECTED")] == 2
    assert transitions[("RECONNECTING", "retry", "CONNECTING")] == 1
    assert sorted(handled) == ["hello 1", "hello 2"]
