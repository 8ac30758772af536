"""An application that does not keep up is not the peer's silence (real sockets).

When the application is behind, the client stops reading the link: that is our
own backpressure, and the pongs or heartbeat acks queued behind the unread
messages are simply not read yet.  The link must not be declared lost for it;
the connection stays up and reads again when there is room, losing nothing.
Both backends, a local websockets server; figures asserted exactly where they
are counts, with wide margins where they are times.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from servers import ServerSide, websocket_server

from fsm_live import Config, connect

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

#: The server shares the test's event loop: a heartbeat timeout shorter than a busy machine
#: may pause that loop (a pong not yet written) would lose a healthy link to the load.
CONFIG = Config(heartbeat_interval=0.2, heartbeat_timeout=1.0, stability_window=0.5)


def lost(conn: Any) -> int:
    return int(conn.stats().transitions.get(("CONNECTED", "lost", "RECONNECTING"), 0))


async def test_unread_messages_do_not_make_a_healthy_link_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fsm_live")

    async def push_150(side: ServerSide) -> None:
        for i in range(150):
            await side.send(f'{{"n": {i}}}')
        await side.wait_closed()

    async with (
        websocket_server(push_150) as server,
        connect(server.url, protocol="json", config=CONFIG) as conn,
    ):
        await conn.wait_connected()
        await anyio.sleep(3.0)  # three heartbeat timeouts without reading
        assert (conn.state, lost(conn)) == ("CONNECTED", 0)
        received = []
        async for message in conn:
            received.append(message["n"])
            if len(received) == 150:
                break
        await anyio.sleep(0.5)  # pings flow again: still no loss
        assert (conn.state, lost(conn)) == ("CONNECTED", 0)
        assert conn.stats().heartbeats_acked > 0
    assert received == list(range(150))
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "has not taken a message" in r.getMessage()
    ]
    assert len(warnings) == 1  # once, saying how long


async def test_a_slow_handler_loses_no_message_and_no_link() -> None:
    # 50 messages/s against 2 handlers of 1 s each: the application is 25x behind.
    sent = 0

    async def push(side: ServerSide) -> None:
        nonlocal sent
        while True:
            await side.send(f'{{"n": {sent}}}')
            sent += 1
            await anyio.sleep(0.02)

    handled: list[int] = []

    async def slow(message: Any) -> None:
        await anyio.sleep(1.0)
        handled.append(message["n"])

    config = CONFIG.replace(message_concurrency=2)
    async with (
        websocket_server(push) as server,
        connect(server.url, protocol="json", config=config, on_message=slow) as conn,
    ):
        await conn.wait_connected()
        await anyio.sleep(4.0)
        assert (conn.state, lost(conn)) == ("CONNECTED", 0)
        stats = conn.stats()
    # Every message taken off the link went to a handler or was still waiting in
    # order: none vanished (the count received equals handled plus in flight).
    assert stats.messages_in >= len(handled) >= 4 * 2 - 2
    assert set(handled) <= set(range(stats.messages_in))
    assert len(set(handled)) == len(handled)  # each once
    # Handlers are handed messages in order, but two run at once and may end in either
    # order (trio runs the tasks woken together in a random order): the only messages
    # not handled below the last one handled are in flight, so within
    # message_concurrency of it.  No gap further back.
    top = max(handled)
    missing = set(range(top)) - set(handled)
    assert all(top - n < config.message_concurrency for n in missing), (missing, handled)
