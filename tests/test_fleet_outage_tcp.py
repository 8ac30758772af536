"""A fleet rides out its endpoint's outage over real sockets (slow).

300 members of a ``Fleet()`` at its defaults hold links to a websockets server (a
server fsm_live did not write); the server goes away at once (every link aborted,
the port closed: dials are refused) and comes back on the same port.  The members
wait for the endpoint instead of failing one by one, one probe at a time dials, and
once it is back they all reconnect, paced.

Times here are real: bounds are what holds with both cores busy (timers only fire
late, so dials while down can only be fewer); the figures themselves, measured on a
quiet machine, are ``bench/fleet_outage.py``'s (docs/fleet.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import websockets.asyncio.server

from fsm_live import Config, Fleet
from fsm_live.fleet import DEFAULT_RECONNECTS_PER_SECOND

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]

MEMBERS = 300
OUTAGE = 8.0  # seconds the endpoint is away
QUIET_AFTER = 3.0  # by then every member waits: dials are the probes alone


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Endpoint:
    """A websockets server that can go away (links aborted, port closed) and return."""

    def __init__(self) -> None:
        self.port = 0
        self.handshakes: list[float] = []
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def _note(self, connection: Any, request: Any) -> None:
        self.handshakes.append(time.monotonic())

    async def start(self) -> None:
        for _ in range(50):  # the port may be someone's for a moment: try again
            try:
                self.server = await websockets.asyncio.server.serve(
                    _hold,
                    "127.0.0.1",
                    self.port,
                    ping_interval=None,
                    compression=None,
                    process_request=self._note,
                    backlog=1024,
                )
            except OSError:
                await anyio.sleep(0.1)
                continue
            self.port = self.server.sockets[0].getsockname()[1]
            return
        raise RuntimeError(f"port {self.port} stayed busy")

    async def crash(self) -> None:
        """Gone at once, as a killed process: every link reset, no close frame."""
        self.server.close(close_connections=False)
        for connection in list(self.server.connections):
            connection.transport.abort()
        await self.server.wait_closed()


async def _hold(ws: Any) -> None:
    await ws.wait_closed()


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[Endpoint]:
    server = Endpoint()
    await server.start()
    try:
        yield server
    finally:
        server.server.close()
        with anyio.move_on_after(5):
            await server.server.wait_closed()


async def until(condition: Any, fleet: Fleet) -> None:
    while not condition():
        await fleet.wait_changed()


async def test_300_members_wait_probe_and_come_back_paced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dials: list[float] = []
    failed: list[str] = []
    async with endpoint() as server, Fleet() as fleet:
        states = fleet.machine.states

        def observe(key: str, record: Any) -> None:
            state = states[record.dest]
            if "dial" in state.tasks:
                dials.append(time.monotonic())
            if state.failed:
                failed.append(key)

        fleet.on_transition(observe)
        with anyio.fail_after(120):
            for n in range(MEMBERS):
                await fleet.add(f"account-{n}", server.url, protocol="ping")
            await until(lambda: fleet.count("CONNECTED") == MEMBERS, fleet)

        caplog.clear()
        caplog.set_level(logging.INFO, logger="fsm_live")
        crashed_at = time.monotonic()
        await server.crash()
        await anyio.sleep(OUTAGE)
        assert fleet.count("WAITING") + fleet.count("CONNECTING") == MEMBERS
        [status] = fleet.endpoints()
        assert not status.up
        server.handshakes.clear()
        await server.start()
        returned = time.monotonic()
        with anyio.fail_after(120):
            await until(lambda: fleet.count("CONNECTED") == MEMBERS, fleet)
        [status] = fleet.endpoints()
        assert status.up

    # While down: one probe at a time, gaps of at least probe_interval / 2 (0.5 s)
    # once grown: a handful of dials for the whole fleet, never one per member.
    quiet = [t for t in dials if crashed_at + QUIET_AFTER <= t < returned]
    shortest_gap = 0.5 * Config().probe_interval
    assert len(quiet) <= (returned - crashed_at - QUIET_AFTER) / shortest_gap + 1
    # Back: every member reconnected once, paced: the returning server never saw more
    # handshakes in a second than the pacer allows (twice that if this busy machine's
    # loop ran a late second's slots with the next second's).
    assert len(server.handshakes) == MEMBERS
    in_a_second = max(
        sum(1 for u in server.handshakes if t <= u < t + 1.0) for t in server.handshakes
    )
    assert in_a_second <= 2 * DEFAULT_RECONNECTS_PER_SECOND
    # Nothing FAILED, nothing at ERROR: one WARNING for the endpoint, one line for its
    # return, and a WARNING for each of the few members that failed before the
    # endpoint was known to be down.
    assert failed == []
    endpoint_lines = [r for r in caplog.records if "endpoint 127.0.0.1:" in r.getMessage()]
    assert [r.levelname for r in endpoint_lines] == ["WARNING", "INFO"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 1 + Config().endpoint_failures - 1
