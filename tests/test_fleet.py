"""A fleet of live connections in virtual time (in-memory transport, trio's MockClock),
its statistics, and fleet files.

Membership changes while other members reconnect, isolation of slow and crashing
members, closing within ``close_timeout``, and 1,000 connections over 24 virtual
hours with exact counts.
"""

from __future__ import annotations

import asyncio
import gc
import math
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
from trio.testing import MockClock

from fsm_live import Config, ConfigError, ExponentialJitter, FixedDelay, Secret
from fsm_live._runtime.stats import Stats
from fsm_live.connection import LiveConnection
from fsm_live.core.effects import TransitionRecord
from fsm_live.credentials import StaticCredentials
from fsm_live.fleet import Fleet
from fsm_live.fleet.config import Account, FleetConfig
from fsm_live.fleet.stats import FleetTransition, TransitionRate, summarize
from fsm_live.lwp.credentials import CookieCredentials
from fsm_live.spec import Spec
from fsm_live.transport.base import Target
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, ServerLink, echo

pytestmark = pytest.mark.anyio

OK = "ws://ok.test/"
DOWN = "ws://down.test/"  # nothing serves it: attempts are refused
VOID = "ws://void.test/"  # black-holed: opens, then never answers
SPEC_STATES = Spec.default().states


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture
def network() -> MemoryNetwork:
    network = MemoryNetwork()
    network.black_hole(VOID)
    return network


def options(network: MemoryNetwork, **extra: Any) -> dict[str, Any]:
    """A member's connection options: the in-memory transport, no jitter."""
    return {"transport": MemoryTransport(network), "random": lambda: 1.0, **extra}


async def wait_until(fleet: Fleet, condition: Callable[[], bool]) -> None:
    while not condition():
        await fleet.wait_changed()


def recount(fleet: Fleet) -> dict[str, int]:
    """Members per state, counted the slow way (crashed members left out)."""
    counts = dict.fromkeys(SPEC_STATES, 0)
    for key in fleet:
        if fleet.crash(key) is None:
            counts[fleet[key].state] += 1
    return counts


# -- membership -------------------------------------------------------------------------


async def test_add_remove_replace_while_others_reconnect(network: MemoryNetwork) -> None:
    # Members back off on their own here (the endpoint rule, which would make the down
    # ones wait together, is tested in test_fleet_outage.py).
    config = Config(backoff=FixedDelay(10), max_failures=1000, endpoint_failures=1000)
    with anyio.fail_after(3600):
        async with network.serve(OK, echo), Fleet(close_timeout=2) as fleet:
            for i in range(10):
                await fleet.add(f"ok{i}", OK, config=config, **options(network))
            for i in range(5):
                await fleet.add(f"down{i}", DOWN, config=config, **options(network))
            for i in range(3):
                await fleet.add(f"void{i}", VOID, config=config, **options(network))
            assert len(fleet) == 18
            assert fleet.keys()[:2] == ["ok0", "ok1"]
            start = anyio.current_time()
            # void*: CONNECTED at 0, 40, 80 (lost 30 s after each, retried 10 s later);
            # down*: refused at 0, 10, 20, ...
            await anyio.sleep(100)
            assert fleet.count("CONNECTED") == 13
            assert fleet.stats().states == recount(fleet)
            assert fleet["down0"].stats().failures == {"network": 10}
            assert fleet["void0"].stats().failures == {"lost": 2}
            assert fleet["ok0"].stats().heartbeats_acked == 6

            # Removing a black-holed member waits for its close (no answer: the fleet's
            # 2 s bound); a member added meanwhile is not held up.
            removed_at = math.nan

            async def remove_void0() -> None:
                nonlocal removed_at
                await fleet.remove("void0")
                removed_at = anyio.current_time()

            async with anyio.create_task_group() as tg:
                tg.start_soon(remove_void0)
                await fleet["void0"].wait_for("CLOSED")  # the link is still closing
                assert "void0" in fleet
                late = await fleet.add("late", OK, config=config, **options(network))
                await late.wait_connected()
                connected_at = anyio.current_time()
            assert connected_at == start + 100
            assert removed_at == pytest.approx(start + 102)
            assert "void0" not in fleet

            old = fleet["down0"]
            new = await fleet.replace("down0", OK, config=config, **options(network))
            assert old.state == "CLOSED"
            assert fleet["down0"] is new
            await new.wait_connected()
            assert anyio.current_time() == pytest.approx(start + 102)

            # The rest were not disturbed meanwhile.
            await anyio.sleep(15)
            assert fleet["ok0"].stats().heartbeats_acked == 7
            assert fleet["down1"].state in ("CONNECTING", "RECONNECTING")
            assert fleet.stats().states == recount(fleet)
            assert fleet.stats().connections == len(fleet) == 18
        assert set(recount(fleet).items()) >= {("CLOSED", 18)}


async def test_members_reconnect_at_the_fleets_pace(network: MemoryNetwork) -> None:
    retries: list[float] = []
    # Four links lost at once would make the endpoint down (three in a row): this test
    # is about the backoff's retries, so the endpoint rule needs more.
    config = Config(backoff=FixedDelay(1.0), endpoint_failures=10)
    with anyio.fail_after(60):
        async with network.serve(OK, echo) as server, Fleet(reconnects_per_second=2) as fleet:
            fleet.on_transition(
                lambda key, r: retries.append(r.at) if r.trigger == "retry" else None
            )
            for key in "abcd":
                await fleet.add(key, OK, config=config, **options(network))
            await wait_until(fleet, lambda: fleet.count("CONNECTED") == 4)
            dropped_at = anyio.current_time()
            for link in list(server.links):
                link.drop()
            await wait_until(fleet, lambda: len(retries) == 4 and fleet.count("CONNECTED") == 4)
    # One attempt per 0.5 s: the first when its backoff ends, the others in turn.
    assert [t - dropped_at for t in retries] == [1.0, 1.5, 2.0, 2.5]


async def stall_then_open(
    fleet: Fleet, network: MemoryNetwork, stall: Callable[[], None]
) -> list[float]:
    """20 members added to a fleet paced at 10 a second, then the event loop stalls
    (``stall``: 1 s gone, as in a garbage collection over a large heap) before most
    of their slots: the times of their first dials."""
    dials: list[float] = []
    fleet.on_transition(
        lambda key, r: dials.append(r.at) if "dial" in SPEC_STATES[r.dest].tasks else None
    )
    for n in range(20):
        await fleet.add(f"m{n:02d}", OK, **options(network))
    stall()
    await wait_until(fleet, lambda: fleet.count("CONNECTED") == 20)
    return dials


def assert_paced(dials: list[float], rate: float, bin_width: float) -> None:
    """Any second holds at most the pacer's bound, ``rate * (1 + bin_width)``."""
    assert len(dials) == 20
    busiest = max(sum(1 for t in dials if start <= t < start + 1.0) for start in dials)
    assert busiest <= rate * (1.0 + bin_width)


async def test_first_dials_stay_paced_when_the_loop_stalls(network: MemoryNetwork) -> None:
    """The slots that passed during a stall do not go together: those past the rate
    take new ones (without that, 19 of the 20 dialled within one second)."""
    with anyio.fail_after(60):
        async with network.serve(OK, echo), Fleet(reconnects_per_second=10) as fleet:
            clock = trio.lowlevel.current_clock()
            assert isinstance(clock, MockClock)
            dials = await stall_then_open(fleet, network, lambda: clock.jump(1.0))
    assert fleet.pacer is not None
    assert_paced(dials, 10, fleet.pacer.bin_width)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_first_dials_stay_paced_when_an_asyncio_loop_stalls(
    network: MemoryNetwork,
) -> None:
    """The same on asyncio, where the first dial is a loop callback: the loop's clock
    jumps 1 s ahead (a stall, without sleeping through one)."""
    loop = asyncio.get_running_loop()
    real_time, ahead = loop.time, [0.0]
    loop.time = lambda: real_time() + ahead[0]  # type: ignore[method-assign]
    try:
        with anyio.fail_after(60):
            async with network.serve(OK, echo), Fleet(reconnects_per_second=10) as fleet:
                dials = await stall_then_open(
                    fleet, network, lambda: ahead.__setitem__(0, ahead[0] + 1.0)
                )
    finally:
        del loop.time
    assert fleet.pacer is not None
    assert_paced(dials, 10, fleet.pacer.bin_width)


@pytest.mark.parametrize("rate", [0, -5, math.inf])
def test_reconnects_per_second_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match=r"^reconnects_per_second: must be a positive number"):
        Fleet(reconnects_per_second=rate)


def test_pacing_can_be_turned_off() -> None:
    assert Fleet(reconnects_per_second=None).pacer is None


async def test_membership_errors(network: MemoryNetwork, tmp_path: Path) -> None:
    fleet = Fleet()
    with pytest.raises(RuntimeError, match="not running"):
        await fleet.add("a", OK, **options(network))
    with anyio.fail_after(60):
        async with network.serve(OK, echo), fleet:
            first = await fleet.add("a", OK, **options(network))
            await first.wait_connected()
            with pytest.raises(ValueError, match="'a' is already in the fleet"):
                await fleet.add("a", OK, **options(network))
            with pytest.raises(KeyError):
                await fleet.remove("nobody")
            with pytest.raises(KeyError):
                await fleet.replace("nobody", OK, **options(network))
            with pytest.raises(KeyError):
                fleet["nobody"]
            with pytest.raises(TypeError, match="share its machine, pacer and endpoints"):
                await fleet.add("b", OK, machine=fleet.machine, **options(network))
            with pytest.raises(TypeError, match="share its machine, pacer and endpoints"):
                await fleet.add("b", OK, pacer=fleet.pacer, **options(network))
            # A bad replacement leaves the running member alone.
            with pytest.raises(ConfigError, match="ws:// or wss://"):
                await fleet.replace("a", "http://example.org/", **options(network))
            assert fleet["a"] is first
            assert first.state == "CONNECTED"
            # Entering fails (no such directory for the trace): raised, key not added.
            with pytest.raises(FileNotFoundError):
                await fleet.add("c", OK, trace=tmp_path / "no" / "c.jsonl", **options(network))
            assert "c" not in fleet
            with pytest.raises(FileNotFoundError):  # a new endpoint's only would-be member
                await fleet.add("d", "ws://elsewhere.test/", trace=tmp_path / "no" / "d.jsonl")
            # A bad option raises before the key is an account, and makes no endpoint.
            with pytest.raises(ConfigError, match="nope"):
                await fleet.add("e", "ws://elsewhere.test/", protocol="nope", **options(network))
            settings: Any = {"heartbeat_intervl": 5}  # a dict, not a Config
            with pytest.raises(ConfigError, match=r"^config: must be a fsm_live\.Config"):
                await fleet.add("e", "ws://elsewhere.test/", config=settings, **options(network))
            assert fleet.accounts() == ["a"]
            assert [(e.endpoint, e.members) for e in fleet.endpoints()] == [("ok.test:80", 1)]
            gc.collect()  # nothing of the failed connection warns (ResourceWarning is an error)
            assert fleet.stats().states == recount(fleet)
            assert fleet.stats().connections == 1
        with pytest.raises(RuntimeError, match="closed"):
            await fleet.add("d", OK, **options(network))
        with pytest.raises(RuntimeError, match="closed"):
            await fleet.remove("a")
        assert fleet["a"].state == "CLOSED"
        with pytest.raises(RuntimeError, match="only once"):
            await fleet.__aenter__()


async def test_changes_to_one_key_are_serialised(network: MemoryNetwork) -> None:
    with anyio.fail_after(60):
        async with network.serve(OK, echo), Fleet(close_timeout=3) as fleet:
            first = await fleet.add("v", VOID, **options(network))
            await first.wait_connected()
            replaced: list[LiveConnection] = []

            async def replace() -> None:
                replaced.append(await fleet.replace("v", OK, **options(network)))

            async with anyio.create_task_group() as tg:
                tg.start_soon(replace)
                await first.wait_for("CLOSED")  # the replacement waits for its link
                # Waits for the replacement (3 s: the black-holed close), then removes it.
                await fleet.remove("v")
            assert "v" not in fleet
            assert first.state == replaced[0].state == "CLOSED"
            assert fleet.stats().states == recount(fleet)


# -- isolation --------------------------------------------------------------------------


async def test_slow_members_do_not_delay_the_others(network: MemoryNetwork) -> None:
    """A black-holed server, a blocked handler and a stalled handshake: the other
    members keep their heartbeats; closing the fleet takes one close_timeout."""
    blocked = "ws://blocked.test/"
    network.stall("ws://stall.test/")

    async def push_many(link: ServerLink) -> None:
        for i in range(300):  # beyond message_concurrency: the reader stops reading
            await link.send(f"m{i}")
        await echo(link)

    async def never_returns(message: Any) -> None:
        await anyio.sleep_forever()

    closed_at: dict[str, float] = {}

    def note_closed(key: str, record: TransitionRecord) -> None:
        if record.dest == "CLOSED":
            closed_at[key] = record.at

    with anyio.fail_after(3600):
        async with network.serve(OK, echo), network.serve(blocked, push_many):
            async with Fleet(close_timeout=3) as fleet:
                fleet.on_transition(note_closed)
                await fleet.add("void", VOID, **options(network))
                await fleet.add("blocked", blocked, on_message=never_returns, **options(network))
                await fleet.add("stall", "ws://stall.test/", **options(network))
                for i in range(20):
                    await fleet.add(f"ok{i}", OK, **options(network))
                await anyio.sleep(60.5)
                for i in range(20):
                    stats = fleet[f"ok{i}"].stats()
                    assert (stats.heartbeats_sent, stats.heartbeats_acked) == (4, 4)
                assert fleet["void"].stats().failures == {"lost": 1}
                # 100 handlers running, 100 more waiting; then the client stopped reading.
                assert fleet["blocked"].stats().messages_in == 200
                # Two open timeouts; the third made its endpoint down, and a wait counts
                # no failure (nor does anything while it waits).
                assert fleet["stall"].stats().failures == {"network": 2}
                # The void member is CONNECTED again (its server answers nothing).
                assert fleet["void"].state == "CONNECTED"
                leaving = anyio.current_time()
            elapsed = anyio.current_time() - leaving
    # Its members closed concurrently: one close_timeout (the fleet's 3 s, below their
    # own 5 s), not one per slow member.
    assert elapsed == pytest.approx(3)
    assert recount(fleet)["CLOSED"] == 23
    assert all(closed_at[f"ok{i}"] == leaving for i in range(20))
    assert closed_at["void"] == closed_at["blocked"] == closed_at["stall"] == leaving


async def test_a_crashing_connection_does_not_tear_down_the_fleet(
    network: MemoryNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    b_url = "ws://b.test/"

    def boom(record: TransitionRecord) -> None:
        if record.dest == "RECONNECTING":
            raise RuntimeError("observer bug")

    with anyio.fail_after(3600):
        async with (
            network.serve(OK, echo),
            network.serve(b_url, echo) as b_server,
            Fleet() as fleet,
        ):
            for key in ("a", "c"):
                await fleet.add(key, OK, **options(network))
            b = await fleet.add("b", b_url, **options(network))
            b.on_transition(boom)
            await wait_until(fleet, lambda: fleet.count("CONNECTED") == 3)
            b_server.links[-1].drop()
            await wait_until(fleet, lambda: fleet.crash("b") is not None)
            assert fleet.crash("b") == "RuntimeError: observer bug"
            stats = fleet.stats()
            assert stats.crashed == 1
            assert stats.states["CONNECTED"] == 2
            assert stats.states["RECONNECTING"] == 0  # b's count moved to crashed
            assert stats.worst[0].key == "b"
            assert stats.worst[0].crash == "RuntimeError: observer bug"
            await anyio.sleep(61)
            assert [fleet[key].stats().heartbeats_acked for key in ("a", "c")] == [4, 4]
            await fleet.remove("b")
            assert fleet.stats().crashed == 0
            assert fleet.stats().states == recount(fleet)
    assert "connection 'b' crashed (the fleet goes on)" in caplog.text


class _CloseRaisesStream(anyio.abc.ByteStream):
    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()
        raise RuntimeError("transport bug")


class CloseRaises:
    """A transport whose streams raise when they are closed: a component bug."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.inner = MemoryTransport(network)

    async def open_stream(self, target: Target) -> anyio.abc.ByteStream:
        return _CloseRaisesStream(await self.inner.open_stream(target))


async def test_a_transport_crashing_at_close(network: MemoryNetwork) -> None:
    with anyio.fail_after(60):
        async with network.serve(OK, echo), Fleet() as fleet:
            await fleet.add("bad", OK, **options(network, transport=CloseRaises(network)))
            good = await fleet.add("good", OK, **options(network))
            await wait_until(fleet, lambda: fleet.count("CONNECTED") == 2)
            await fleet.remove("bad")  # crashes while closing: reported, not raised
            assert fleet.stats().crashed == 0
            await good.rotate()
            await good.wait_for("CONNECTING")
            await good.wait_connected()


async def test_a_raising_fleet_callback_is_logged_and_isolated(
    network: MemoryNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def bad(key: str, record: TransitionRecord) -> None:
        raise ValueError("callback bug")

    with anyio.fail_after(60):
        async with network.serve(OK, echo), Fleet() as fleet:
            fleet.on_transition(bad)
            fleet.on_transition(lambda key, record: seen.append(f"{key}:{record.dest}"))
            conn = await fleet.add("a", OK, **options(network))
            await conn.wait_connected()
            assert fleet.crash("a") is None
    assert seen == ["a:CONNECTING", "a:CONNECTED", "a:CLOSED"]
    assert caplog.text.count("fleet transition callback") == 3


# -- 1,000 connections, 24 hours ------------------------------------------------------------

SHARDS = 10
PER_SHARD = 100
HEARTBEAT = 1800.0
OUTAGE_AT = 3 * 3600 + 10.0  # shard 3: refused for 630 s, links dropped
HALF_OPEN_AT = 12 * 3600 + 10.0  # shard 7: links black-holed (server answers again after)
END = 24 * 3600 + 1.0


def heartbeats(connected_at: float, until: float) -> int:
    """Heartbeats a connection sends from connected_at (at each interval) up to until."""
    return math.floor((until - connected_at) / HEARTBEAT)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_1000_connections_for_24_virtual_hours(network: MemoryNetwork) -> None:
    """1,000 members on 10 shards for 24 virtual hours: an outage of one shard and
    half-open links on another, with exact counts.

    Heartbeats run every 1800 s (timeout 4000 s) instead of 15 s: in-memory heartbeats
    cost about 0.2 ms each under trio, and 1,000 x 24 h at 15 s would be 5.8 million
    of them (about 20 minutes); at 1800 s the test takes about 15 s.
    """
    config = Config(
        heartbeat_interval=HEARTBEAT,
        heartbeat_timeout=4000,
        cleanup_interval=86400,
        backoff=FixedDelay(60),
        max_failures=100,
        # The endpoint rule held off: this test counts each member's own backoff
        # exactly (shard 3's 1,100 failures in a row would make its endpoint down, and
        # its members would wait and probe instead); the rule's own fleet tests are
        # tests/test_fleet_outage.py.
        endpoint_failures=10_000,
    )
    urls = [f"ws://shard{n}.test/" for n in range(SHARDS)]
    with anyio.fail_after(END + 3600):
        async with AsyncExitStack() as serving:
            servers = [await serving.enter_async_context(network.serve(url, echo)) for url in urls]
            async with Fleet(close_timeout=5) as fleet:
                for n, url in enumerate(urls):
                    for i in range(PER_SHARD):
                        await fleet.add(f"s{n}-{i}", url, config=config, **options(network))
                await wait_until(fleet, lambda: fleet.count("CONNECTED") == 1000)
                t0 = anyio.current_time()
                assert fleet.stats().transitions_total == 2000

                # Shard 3 goes down: links dropped, attempts refused every 60 s for 630 s.
                await anyio.sleep_until(t0 + OUTAGE_AT)
                network.refuse(urls[3])
                for link in servers[3].links:
                    link.drop()
                await anyio.sleep(30)
                stats = fleet.stats()
                assert stats.states["RECONNECTING"] == 100
                assert stats.transitions_per_minute == 100  # the 100 `lost` of shard 3
                assert {m.key.partition("-")[0] for m in stats.worst} == {"s3"}
                await anyio.sleep(60)  # the first attempt failed: retry + connect_failed
                assert fleet.stats().transitions_per_minute == 200
                await anyio.sleep_until(t0 + OUTAGE_AT + 630)
                network.restore(urls[3])
                await anyio.sleep(31)  # reconnected at +660
                assert fleet.count("CONNECTED") == 1000

                # Shard 7's links go half-open: found at the heartbeat timeout (4000 s after
                # the last ack, at 12 h), reconnected 60 s later.
                await anyio.sleep_until(t0 + HALF_OPEN_AT)
                for link in servers[7].links:
                    link.black_hole()
                await anyio.sleep_until(t0 + END)
                stats = fleet.stats()
                leaving = anyio.current_time()
            closing_took = anyio.current_time() - leaving

    assert stats.connections == 1000
    assert stats.states["CONNECTED"] == 1000
    assert stats.worst == ()
    assert stats.failures == {"lost": 200, "network": 1000}
    # Every member: start + opened; shard 3: lost, 11 retries, 10 connect_failed,
    # opened; shard 7: lost, retry, opened.
    assert stats.transitions_total == 1000 * 2 + 100 * 23 + 100 * 3
    assert stats.connects == 1000 + 100 + 100
    outage_back = OUTAGE_AT + 660
    half_open_lost = 12 * 3600 + 4000  # the last ack was at 12 h
    sent = (
        800 * heartbeats(0, END)
        + 100 * (heartbeats(0, OUTAGE_AT) + heartbeats(outage_back, END))
        # unanswered pings at 12.5 h and 13 h (a heartbeat goes out every interval
        # whatever the peer answered: issue 16, item 7), then a new link from lost + 60 s
        + 100 * (heartbeats(0, half_open_lost) + heartbeats(half_open_lost + 60, END))
    )
    assert stats.heartbeats_sent == sent
    assert stats.heartbeats_acked == sent - 2 * 100
    # Closing 1,000 connected members: their servers answer at once, so no virtual time.
    assert closing_took == 0
    assert recount(fleet)["CLOSED"] == 1000


# -- statistics -------------------------------------------------------------------------


def a_stats(
    state: str, *, consecutive: int = 0, time_in_state: float = 1.0, **figures: Any
) -> Stats:
    values: dict[str, Any] = {
        "state": state,
        "time_in_state": time_in_state,
        "transitions": {},
        "connects": 1,
        "reconnects": 0,
        "failures": {},
        "consecutive_failures": consecutive,
        "last_error": "",
        "heartbeats_sent": 0,
        "heartbeats_acked": 0,
        "heartbeat_rtt": None,
        "messages_in": 0,
        "messages_out": 0,
        "duplicates_dropped": 0,
        "token_refreshes": 0,
        "token_refresh_failures": 0,
        "cookie_refreshes": 0,
        "buffered": 0,
        "tasks_alive": 0,
    }
    values.update(figures)
    return Stats(**values)


def test_summarize_sums_and_ranks_the_worst() -> None:
    record = TransitionRecord(at=1.0, source="CONNECTING", dest="CONNECTED", trigger="opened")
    members: list[tuple[str, Stats, str | None]] = [
        (
            "well",
            a_stats(
                "CONNECTED",
                heartbeats_sent=3,
                heartbeats_acked=2,
                failures={"lost": 1},
                messages_in=5,
            ),
            None,
        ),
        ("unstable", a_stats("CONNECTED", consecutive=1, failures={"lost": 2}), None),
        ("retrying", a_stats("RECONNECTING", consecutive=3, time_in_state=9), None),
        ("retrying-longer", a_stats("RECONNECTING", consecutive=3, time_in_state=20), None),
        ("failed", a_stats("FAILED", consecutive=1, failures={"auth": 1}), None),
        ("closed", a_stats("CLOSED"), None),
        ("crashed", a_stats("CONNECTED"), "RuntimeError: x"),
    ]
    stats = summarize(
        members,
        at=5.0,
        states=SPEC_STATES,
        counts={"CONNECTED": 2, "RECONNECTING": 2, "FAILED": 1, "CLOSED": 1},
        crashed=1,
        transitions_total=42,
        transitions_per_minute=3.0,
        recent=[FleetTransition("well", record)],
        worst=5,
    )
    assert stats.connections == 7
    assert list(stats.states) == list(SPEC_STATES)
    assert stats.states == {
        "DISCONNECTED": 0,
        "CONNECTING": 0,
        "CONNECTED": 2,
        "RECONNECTING": 2,
        "WAITING": 0,
        "FAILED": 1,
        "CLOSED": 1,
    }
    assert (stats.crashed, stats.transitions_total, stats.transitions_per_minute) == (1, 42, 3)
    assert stats.failures == {"auth": 1, "lost": 3}
    assert (stats.heartbeats_sent, stats.heartbeats_acked, stats.messages_in) == (3, 2, 5)
    assert stats.connects == 7
    # Crashed first, then by the state's log level (ERROR, WARNING, INFO), failures, time.
    assert [m.key for m in stats.worst] == [
        "crashed",
        "failed",
        "retrying-longer",
        "retrying",
        "unstable",
    ]
    assert stats.worst[0].crash == "RuntimeError: x"
    assert stats.recent == (FleetTransition("well", record),)
    fewer = summarize(
        members,
        at=5.0,
        states=SPEC_STATES,
        counts={},
        crashed=1,
        transitions_total=0,
        transitions_per_minute=0,
        recent=[],
        worst=2,
    )
    assert [m.key for m in fewer.worst] == ["crashed", "failed"]


def test_transition_rate_is_a_bounded_sliding_window() -> None:
    rate = TransitionRate(window=60, resolution=1)
    for second in range(10_000):
        rate.add(second + 0.5, 2)
    assert len(rate._buckets) <= 61
    # At 9999.9 the window is the buckets of seconds 9940-9999.
    assert rate.count(9_999.9) == 120
    assert rate.per_minute(9_999.9) == 120
    assert rate.count(10_029.5) == 60
    assert rate.count(20_000) == 0
    half = TransitionRate(window=30)
    half.add(0.0, 10)
    assert half.per_minute(1.0) == 20
    with pytest.raises(ValueError, match="positive"):
        TransitionRate(window=0)


async def test_stats_totals_recent_and_rate(network: MemoryNetwork) -> None:
    retry_every_10s = Config(backoff=FixedDelay(10), max_failures=100, endpoint_failures=100)
    with anyio.fail_after(600):
        async with network.serve(OK, echo), Fleet(recent=4, rate_window=60) as fleet:
            for key in ("a", "b", "c"):
                await fleet.add(key, OK, **options(network))
            await wait_until(fleet, lambda: fleet.count("CONNECTED") == 3)
            await fleet["a"].send("hello")
            await fleet.replace("b", DOWN, config=retry_every_10s, **options(network))
            await fleet["b"].wait_for("RECONNECTING")
            stats = fleet.stats()
            # a, c: start, opened; old b: start, opened, close; new b: start, connect_failed
            assert stats.transitions_total == 9
            assert stats.transitions_per_minute == 9
            assert [(t.key, t.record.dest) for t in stats.recent] == [
                ("c", "CONNECTED"),
                ("b", "CLOSED"),
                ("b", "CONNECTING"),
                ("b", "RECONNECTING"),
            ]
            assert stats.failures == {"network": 1}
            assert stats.messages_out == 1
            assert stats.worst[0].key == "b"
            await anyio.sleep(61)
            # Only b's retry + connect_failed every 10 s, at 10 ... 60 s.
            assert fleet.stats().transitions_per_minute == 12


# -- fleet files ------------------------------------------------------------------------


GOOD = """\
[defaults]
heartbeat_interval = 20
heartbeat_timeout = 50
[defaults.backoff]
policy = "fixed"
seconds = 7

[accounts.alice]
url = "ws://127.0.0.1:8765/"
protocol = "json"
cookies_file = "alice.cookies"
heartbeat_timeout = 45

[accounts.bob]
url = "wss://example.org/feed"
cookies_env = "BOB_COOKIES"

[accounts."carol@example.org"]
url = "ws://127.0.0.1:8765/"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_fleet_file_good(tmp_path: Path) -> None:
    (tmp_path / "alice.cookies").write_text("unb=42; sid=s3cr3t-alice\n", encoding="utf-8")
    config = FleetConfig.load(write(tmp_path, GOOD), env={"BOB_COOKIES": "unb=7; t=s3cr3t-bob"})
    alice, bob, carol = config.accounts
    assert [a.key for a in config.accounts] == ["alice", "bob", "carol@example.org"]
    assert (alice.protocol, bob.protocol) == ("json", "ping")
    assert alice.config.heartbeat_interval == bob.config.heartbeat_interval == 20
    assert (alice.config.heartbeat_timeout, bob.config.heartbeat_timeout) == (45, 50)
    assert alice.config.backoff == FixedDelay(7)
    assert alice.cookies == Secret("unb=42; sid=s3cr3t-alice")
    credentials = alice.credentials()
    assert credentials is not None
    assert await credentials.handshake_headers() == {"Cookie": Secret("unb=42; sid=s3cr3t-alice")}
    assert bob.cookies == Secret("unb=7; t=s3cr3t-bob")
    assert carol.cookies is None
    assert carol.credentials() is None
    assert carol.connection_options() == {
        "protocol": "ping",
        "config": carol.config,
        "credentials": None,
    }
    assert "s3cr3t" not in repr(config)


ACCOUNT = '[accounts.alice]\nurl = "ws://127.0.0.1:1/"\n'
BAD_FILES = {
    "unknown top-level key": (ACCOUNT + "[extra]\nx = 1\n", "extra", "unknown key"),
    "no accounts": ("[defaults]\nheartbeat_interval = 20\n", "accounts", "no accounts"),
    "accounts not a table": ('accounts = "alice"\n', "accounts", "must be a table"),
    "account not a table": ('[accounts]\nalice = "ws://x/"\n', "accounts.alice", "must be a table"),
    "unknown account key": (ACCOUNT + 'colour = "blue"\n', "accounts.alice.colour", "unknown key"),
    "missing url": ('[accounts.alice]\nprotocol = "ping"\n', "accounts.alice.url", "missing"),
    "url not a string": ("[accounts.alice]\nurl = 7\n", "accounts.alice.url", "non-empty string"),
    "http url": (
        '[accounts.alice]\nurl = "http://127.0.0.1/"\n',
        "accounts.alice.url",
        "ws:// or wss://",
    ),
    "bad protocol": (
        ACCOUNT + 'protocol = "smoke"\n',
        "accounts.alice.protocol",
        "unknown protocol 'smoke'",
    ),
    "lwp without cookies": (
        ACCOUNT + 'protocol = "lwp"\ntoken_url = "http://127.0.0.1/t"\n',
        "accounts.alice",
        "lwp accounts need cookies: add cookies_file or cookies_env (with a unb cookie)",
    ),
    "token_url on ping": (
        ACCOUNT + 'token_url = "http://127.0.0.1/t"\n',
        "accounts.alice.token_url",
        "only lwp accounts",
    ),
    "bad default value": (
        "[defaults]\nheartbeat_interval = -1\n" + ACCOUNT,
        "defaults.heartbeat_interval",
        "positive",
    ),
    "unknown default": (
        "[defaults]\nheartbeat = 5\n" + ACCOUNT,
        "defaults.heartbeat",
        "unknown key",
    ),
    "bad account value": (
        ACCOUNT + 'open_timeout = "soon"\n',
        "accounts.alice.open_timeout",
        "number of seconds",
    ),
    "inconsistent with defaults": (
        "[defaults]\nheartbeat_timeout = 40\n" + ACCOUNT + "heartbeat_interval = 45\n",
        "accounts.alice.heartbeat_timeout",
        "greater than",
    ),
    "bad backoff parameter": (
        ACCOUNT + '[accounts.alice.backoff]\npolicy = "exponential"\ninitial = 10\nmaximum = 1\n',
        "accounts.alice.backoff.maximum",
        "must be >= initial",
    ),
    "unreadable cookies file": (
        ACCOUNT + 'cookies_file = "missing.cookies"\n',
        "accounts.alice.cookies_file",
        "cannot read",
    ),
    "unset cookies variable": (
        ACCOUNT + 'cookies_env = "NOT_SET_ANYWHERE"\n',
        "accounts.alice.cookies_env",
        "NOT_SET_ANYWHERE is not set",
    ),
    "both cookie sources": (
        ACCOUNT + 'cookies_env = "C"\ncookies_file = "c"\n',
        "accounts.alice",
        "not both",
    ),
    "blank account name": ('[accounts." "]\nurl = "ws://127.0.0.1:1/"\n', "accounts. ", "blank"),
    "invalid TOML": ("[accounts.alice\n", "", "not valid TOML"),
}


@pytest.mark.parametrize(
    ("text", "where", "message"), list(BAD_FILES.values()), ids=list(BAD_FILES)
)
def test_fleet_file_errors_name_file_account_and_key(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        FleetConfig.load(path, env={})
    location = f"{path}: {where}" if where else str(path)
    assert caught.value.field == location
    assert message in str(caught.value)


def test_cookie_values_never_appear_in_errors(tmp_path: Path) -> None:
    (tmp_path / "alice.cookies").write_text("unb=1; s3cr3t-without-equals", encoding="utf-8")
    path = write(tmp_path, ACCOUNT + 'cookies_file = "alice.cookies"\n')
    with pytest.raises(ConfigError) as caught:
        FleetConfig.load(path)
    assert str(caught.value) == (f"{path}: accounts.alice.cookies_file: pair 2 is not name=value")
    with pytest.raises(ConfigError) as caught:
        FleetConfig.load(
            write(tmp_path, ACCOUNT + 'cookies_env = "C"\n'), env={"C": "s3cr3t-value"}
        )
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.field.endswith("accounts.alice.cookies_env")


LWP_FILE = """\
[accounts.a]
url = "ws://127.0.0.1:8765/feed"
protocol = "lwp"
cookies_file = "cookies/a.txt"

[accounts.b]
url = "wss://example.org/ws"
protocol = "lwp"
cookies_env = "B_COOKIES"
token_url = "https://auth.example.org/token?app=s3cr3t-key"
"""


async def test_fleet_file_lwp_accounts(tmp_path: Path) -> None:
    (tmp_path / "cookies").mkdir()
    # One cookie per line works in a file, as for fsm-live connect --cookies-file.
    (tmp_path / "cookies" / "a.txt").write_text("unb=1001\ncna=s3cr3t-a\n", encoding="utf-8")
    config = FleetConfig.load(write(tmp_path, LWP_FILE), env={"B_COOKIES": "unb=2002; t=s3cr3t-b"})
    a, b = config.accounts
    assert (a.protocol, b.protocol) == ("lwp", "lwp")
    assert a.cookies == Secret("unb=1001; cna=s3cr3t-a")
    assert (a.token_url, b.token_url) == (None, "https://auth.example.org/token?app=s3cr3t-key")
    first, second = a.credentials(), a.credentials()
    assert isinstance(first, CookieCredentials)
    assert isinstance(second, CookieCredentials)
    assert first is not second  # one provider (token, device id) per connection
    assert first.device_id != second.device_id
    assert first.user_id == Secret("1001")
    assert await first.handshake_headers() == {"Cookie": Secret("unb=1001; cna=s3cr3t-a")}
    b_credentials = b.credentials()
    assert isinstance(b_credentials, CookieCredentials)
    assert b_credentials.cookie_names == ["t", "unb"]
    options = b.connection_options()
    assert options["protocol"] == "lwp"
    assert isinstance(options["credentials"], CookieCredentials)
    assert "s3cr3t" not in repr(config) + repr(first) + repr(b_credentials)


LWP = ACCOUNT + 'protocol = "lwp"\n'
LWP_ERRORS = {
    "no unb in a file": (
        LWP + 'cookies_file = "alice.cookies"\n',
        "accounts.alice.cookies_file",
        "the 'unb' cookie is required (found: cna, sid)",
    ),
    "no unb in a variable": (
        LWP + 'cookies_env = "ALICE"\n',
        "accounts.alice.cookies_env",
        "the 'unb' cookie is required (found: cna)",
    ),
    "empty cookies": (
        LWP + 'cookies_env = "EMPTY"\n',
        "accounts.alice.cookies_env",
        "no cookies in it",
    ),
    "token_url not http": (
        LWP + 'cookies_env = "GOOD"\ntoken_url = "ftp://127.0.0.1/t"\n',
        "accounts.alice.token_url",
        "expected an http:// or https:// URL",
    ),
    "token_url bad port": (
        LWP + 'cookies_env = "GOOD"\ntoken_url = "http://127.0.0.1:x/t"\n',
        "accounts.alice.token_url",
        "the URL's port is not a number",
    ),
    "token_url empty": (
        LWP + 'cookies_env = "GOOD"\ntoken_url = ""\n',
        "accounts.alice.token_url",
        "must be a non-empty string",
    ),
}


@pytest.mark.parametrize(
    ("text", "where", "message"), list(LWP_ERRORS.values()), ids=list(LWP_ERRORS)
)
def test_lwp_account_errors_name_the_key_never_a_value(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    (tmp_path / "alice.cookies").write_text("cna=s3cr3t-1\nsid=s3cr3t-2\n", encoding="utf-8")
    env = {"ALICE": "cna=s3cr3t-3", "EMPTY": " ; ", "GOOD": "unb=s3cr3t-4"}
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        FleetConfig.load(path, env=env)
    assert caught.value.field == f"{path}: {where}"
    assert str(caught.value) == f"{path}: {where}: {message}"
    assert "s3cr3t" not in str(caught.value)


def test_an_account_checks_its_own_contract() -> None:
    config = Config()
    with pytest.raises(ConfigError, match="cookies: account 'a': lwp accounts need cookies"):
        Account("a", "ws://127.0.0.1:1/", "lwp", config)
    with pytest.raises(ConfigError, match="token_url: account 'a': only lwp accounts use"):
        Account("a", "ws://127.0.0.1:1/", "json", config, token_url="http://127.0.0.1/t")


def test_the_fleet_file_of_the_docs_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "fleet.md").read_text("utf-8")
    match = re.search(r"\n```toml\n(.*?)```\n", doc, re.S)
    assert match is not None
    (tmp_path / "cookies").mkdir()
    (tmp_path / "feed.cookies").write_text("sid=1\n", encoding="utf-8")
    (tmp_path / "cookies" / "alice.txt").write_text("unb=1\ncna=2\n", encoding="utf-8")
    config = FleetConfig.load(write(tmp_path, match.group(1)), env={"BOB_COOKIES": "unb=3"})
    assert [(a.key, a.protocol) for a in config.accounts] == [
        ("probe", "ping"),
        ("feed", "json"),
        ("alice@example.org", "lwp"),
        ("bob", "lwp"),
    ]
    probe, feed, alice, bob = config.accounts
    assert (probe.config.heartbeat_timeout, feed.config.open_timeout) == (40, 20)
    assert bob.config.backoff == ExponentialJitter(initial=1, maximum=10)
    assert (alice.cookies, alice.token_url) == (Secret("unb=1; cna=2"), None)
    assert bob.token_url == "http://127.0.0.1:8765/token"
    assert [type(a.credentials()) for a in config.accounts] == [
        type(None),
        StaticCredentials,
        CookieCredentials,
        CookieCredentials,
    ]


def test_unreadable_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        FleetConfig.load(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        FleetConfig.load(binary)
