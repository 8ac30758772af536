"""Every edge of ``specs/connection.yaml`` taken by a live connection.

In memory and in virtual time (trio's MockClock), each scenario makes the
faults its edges need (a refused dial, a stalled one, an HTTP 404, a dropped
link, a 1008 close) and checks the connection's JSONL trace against the walk
it expects, step by step, with :func:`fsm_live.testing.run_steps`: the trace
is replayed as an implementation of the spec, each row's guards given by the
walk.  Together the scenarios take every edge :func:`covering_paths` lists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from trio.testing import MockClock

from fsm_live import Config, FixedDelay, connect
from fsm_live._runtime.trace import read_trace
from fsm_live.cli import main
from fsm_live.connection import LiveConnection, new_endpoint
from fsm_live.core.endpoint import Endpoint
from fsm_live.spec import Spec
from fsm_live.testing import Step, covering_paths, run_steps
from fsm_live.testing.harness import expect
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink, echo
from fsm_live.transport.tcp import target_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]
URL = "ws://server.test/feed"
SPEC = Spec.default()
CONFIG = Config(backoff=FixedDelay(1), max_failures=2, failed_retry_delay=5)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


class Replay:
    """A trace as a harness adapter: each fire takes the trace's next row."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self.current = SPEC.initial

    def fire(self, trigger: str, data: Any) -> bool:
        if not self.rows or self.rows[0]["trigger"] != trigger:
            return False
        row = self.rows.pop(0)
        assert row["from"] == self.current, row
        self.current = row["to"]
        return True

    def state(self) -> str:
        return self.current


def check_trace(trace: Path, walk: list[Step]) -> None:
    """The trace is exactly ``walk``."""
    rows = read_trace(trace)
    replay = Replay(rows)
    run_steps(SPEC, replay, walk)
    assert replay.rows == [], f"the trace has more: {replay.rows}"


def walk(*triggers: str | tuple[str, dict[str, bool]]) -> list[Step]:
    return [Step(t) if isinstance(t, str) else Step(t[0], t[1]) for t in triggers]


@asynccontextmanager
async def live(
    network: MemoryNetwork, trace: Path, config: Config = CONFIG, endpoint: Endpoint | None = None
) -> AsyncIterator[LiveConnection]:
    async with connect(
        URL,
        transport=MemoryTransport(network),
        config=config,
        trace=trace,
        random=lambda: 1.0,
        endpoint=endpoint,
    ) as conn:
        yield conn


def dropper() -> tuple[anyio.Event, Callable[[ServerLink], Any]]:
    """A server handler that drops its first link once ``drop`` is set, and echoes on
    the others."""
    drop = anyio.Event()
    links = 0

    async def handler(link: ServerLink) -> None:
        nonlocal links
        links += 1
        if links > 1:
            await echo(link)
            return
        await drop.wait()
        link.drop()

    return drop, handler


NOT_EXHAUSTED = {"exhausted": False}
DOWN = {"endpoint_down": True}
#: The walk each scenario's trace must be, by scenario.
WALKS: dict[str, list[Step]] = {
    "lost_retry_rotate": walk(
        "start", "opened", "lost", ("retry", NOT_EXHAUSTED), "opened", "rotate", "opened", "close"
    ),
    "give_up_then_recover": walk(
        "start",
        "connect_failed",
        ("retry", NOT_EXHAUSTED),
        "connect_failed",
        ("give_up", {"exhausted": True}),
        ("recover", {"retryable": True}),
        ("retry", NOT_EXHAUSTED),
        "opened",
        "close",
    ),
    "fatal_reset_fatal": walk(
        "start", "fatal", "reset", ("retry", NOT_EXHAUSTED), "opened", "fatal", "close"
    ),
    "close_while_dialling": walk("start", "close"),
    "close_while_backing_off": walk("start", "connect_failed", "close"),
    "close_before_start": walk("close"),
    # One connection whose endpoint is down after one failure: it waits and probes.
    "endpoint_down_alone": walk(
        "start", ("wait", DOWN), "probe", "opened", ("wait", DOWN), "close"
    ),
    # Two connections dialling one endpoint that is down after two failures in a row:
    # the second failure makes it down (that one waits), the first hears it while
    # backing off and waits too; the first to wait probes, connects, and the other is
    # told at once.
    "waits_with_the_others": walk(
        "start", "connect_failed", ("wait", DOWN), "probe", "opened", "close"
    ),
    "probes_for_the_others": walk("start", ("wait", DOWN), "probe", "opened", "close"),
}


async def test_lost_retry_rotate(tmp_path: Path) -> None:
    network, trace = MemoryNetwork(), tmp_path / "t.jsonl"
    drop, handler = dropper()
    async with network.serve(URL, handler), live(network, trace) as conn:
        await conn.wait_connected()
        drop.set()
        await conn.wait_for("RECONNECTING")
        await conn.wait_connected()
        await conn.rotate()
        await conn.wait_connected()
    check_trace(trace, WALKS["lost_retry_rotate"])
    # The trace, as written (failure and stats records included), drawn with its counts.
    assert (
        main(["diagram", str(SPEC.source), "--trace", str(trace), "-o", str(tmp_path / "d.mmd")])
        == 0
    )
    diagram = (tmp_path / "d.mmd").read_text()
    assert "CONNECTING --> CONNECTED: opened \u00d73" in diagram
    assert "CONNECTED --> RECONNECTING: lost \u00d71" in diagram
    assert "RECONNECTING --> FAILED: give_up [exhausted] \u00d70" in diagram


async def test_give_up_then_recover(tmp_path: Path) -> None:
    network, trace = MemoryNetwork(), tmp_path / "t.jsonl"
    network.refuse(URL)  # an override: the server below answers once it is lifted
    async with network.serve(URL, echo), live(network, trace) as conn:
        await conn.wait_for("FAILED")
        network.restore(URL)
        await conn.wait_for("RECONNECTING", raise_on_failed=False)
        await conn.wait_connected()
    check_trace(trace, WALKS["give_up_then_recover"])


async def test_fatal_reset_fatal(tmp_path: Path) -> None:
    network, trace = MemoryNetwork(), tmp_path / "t.jsonl"

    async def close_1008(link: ServerLink) -> None:
        await link.close(1008)

    network.reject(URL, 404)
    async with network.serve(URL, close_1008), live(network, trace) as conn:
        await conn.wait_for("FAILED", raise_on_failed=False)
        network.restore(URL)
        await conn.reset()  # connects, and the server closes with 1008 at once
        await conn.wait_for("FAILED", raise_on_failed=False)
    check_trace(trace, WALKS["fatal_reset_fatal"])


@pytest.mark.parametrize(
    ("state", "scenario"),
    [("CONNECTING", "close_while_dialling"), ("RECONNECTING", "close_while_backing_off")],
)
async def test_close_while(state: str, scenario: str, tmp_path: Path) -> None:
    network, trace = MemoryNetwork(), tmp_path / "t.jsonl"
    if state == "CONNECTING":
        network.stall(URL)
    else:
        network.refuse(URL)
    async with live(network, trace) as conn:
        await conn.wait_for(state)
    check_trace(trace, WALKS[scenario])


async def test_close_before_start(tmp_path: Path) -> None:
    network, trace = MemoryNetwork(), tmp_path / "t.jsonl"
    async with live(network, trace) as conn:
        await conn.close()
    check_trace(trace, WALKS["close_before_start"])


async def test_endpoint_down_alone(tmp_path: Path) -> None:
    network, trace = MemoryNetwork(), tmp_path / "t.jsonl"
    config = attrs.evolve(CONFIG, max_failures=5, endpoint_failures=1)
    drop, handler = dropper()
    network.refuse(URL)
    async with network.serve(URL, handler), live(network, trace, config) as conn:
        await conn.wait_for("WAITING")
        network.restore(URL)
        await conn.wait_connected()  # the probe connects
        drop.set()  # the link is lost: one failure, the endpoint is down again
        await conn.wait_for("WAITING")
    check_trace(trace, WALKS["endpoint_down_alone"])


async def test_waits_with_the_others(tmp_path: Path) -> None:
    network, traces = MemoryNetwork(), [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    config = attrs.evolve(CONFIG, max_failures=5, endpoint_failures=2)
    shared = new_endpoint(target_for(URL), config)
    network.refuse(URL)
    async with (
        network.serve(URL, echo),
        live(network, traces[0], config, shared) as a,
        live(network, traces[1], config, shared) as b,
    ):
        for conn in (a, b):
            await conn.wait_for("WAITING")
        network.restore(URL)
        for conn in (a, b):
            await conn.wait_connected()
    # Which of the two failed first is the scheduler's choice.
    first, second = sorted(traces, key=lambda trace: len(read_trace(trace)), reverse=True)
    check_trace(first, WALKS["waits_with_the_others"])
    check_trace(second, WALKS["probes_for_the_others"])


def test_every_edge_is_taken_by_some_scenario() -> None:
    """Each scenario's trace is its walk (the tests above); between them, the walks
    take every edge :func:`covering_paths` covers, which is every edge of the spec."""
    taken = set()
    for steps in WALKS.values():
        state = SPEC.initial
        for step in steps:
            expected = expect(SPEC, state, step)
            assert expected.outcome == "taken", (steps, step)
            assert expected.row is not None
            taken.add((state, expected.row.trigger, expected.row.dest))
            state = expected.dest
    wanted = {
        (source, row.trigger, row.dest)
        for path in covering_paths(SPEC)
        for source, row in path.edges
    }
    assert wanted == {(s, t.trigger, t.dest) for s, t in SPEC.edges()}
    assert wanted <= taken
