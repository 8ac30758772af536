"""fsm_live._runtime.engine: the driver, run by hand with a fake clock, timer, jobs and link.

No event loop: the test is the event loop.  It calls what an event loop would
(a link's bytes, the timer at its deadline) and looks at what the engine did: bytes
written, timer armed, state, inbox, ledger.  The peer is websockets' Sans-I/O
``ServerProtocol``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from test_link import FakeIO
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from fsm_live._runtime.engine import Engine
from fsm_live._runtime.inbox import Inbox
from fsm_live._runtime.link import Link
from fsm_live._runtime.stats import Counters
from fsm_live.config import Config
from fsm_live.connection import default_machine
from fsm_live.core.effects import StartTask, TransitionRecord
from fsm_live.core.lifecycle import Lifecycle
from fsm_live.credentials import StaticCredentials
from fsm_live.protocols import PingProtocol

CONFIG = Config(heartbeat_interval=5, heartbeat_timeout=12, stability_window=2, close_timeout=3)


class FakeJob:
    def __init__(
        self, name: str, work: Callable[..., Awaitable[None]], args: tuple[Any, ...]
    ) -> None:
        self.name, self.work, self.args = name, work, args
        self.generation = -1
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeJobs:
    """Records the jobs the engine starts; runs none."""

    def __init__(self) -> None:
        self.started: list[FakeJob] = []
        self.alive = 0

    def start(self, name: str, work: Callable[..., Awaitable[None]], *args: Any) -> FakeJob:
        job = FakeJob(name, work, args)
        self.started.append(job)
        return job


class FakeTimer:
    def __init__(self) -> None:
        self.armed = math.inf

    def arm(self, deadline: float) -> None:
        self.armed = deadline

    def stop(self) -> None:
        self.armed = math.inf


class Harness:
    """An engine and the fakes around it."""

    def __init__(self, config: Config = CONFIG) -> None:
        self.now = 0.0
        self.jobs = FakeJobs()
        self.timer = FakeTimer()
        self.records: list[TransitionRecord] = []
        self.counters = Counters()
        self.inbox = Inbox(100)
        self.lifecycle = Lifecycle(default_machine(), config, random=lambda: 0.5)
        self.engine = Engine(
            url="ws://server.test/feed",
            lifecycle=self.lifecycle,
            adapter=PingProtocol(),
            config=config,
            credentials=None,
            inbox=self.inbox,
            counters=self.counters,
            jobs=self.jobs,  # type: ignore[arg-type]
            clock=lambda: self.now,
            open_link=self._never,
            on_transition=self.records.append,
            on_change=lambda: None,
        )
        self.engine.timer = self.timer
        self.io = FakeIO()
        self.peer = ServerProtocol()
        self.taken = 0

    async def _never(self, link: Link) -> None:
        raise AssertionError("the test opens links itself")

    @property
    def state(self) -> str:
        return self.lifecycle.state

    def dial(self) -> Link:
        """The dial job's work, done by hand: the byte link opens."""
        job = self.jobs.started[-1]
        assert job.name == "dial"
        link: Link = job.args[0]
        self.io, self.peer, self.taken = FakeIO(), ServerProtocol(), 0
        self.engine.link_made(link, self.io)
        self.exchange(link)
        return link

    def exchange(self, link: Link) -> list[Frame]:
        """The peer reads what the engine wrote and answers; returns the frames it read."""
        for data in self.io.writes[self.taken :]:
            self.peer.receive_data(data)
        self.taken = len(self.io.writes)
        frames = []
        for event in self.peer.events_received():
            if isinstance(event, Request):
                self.peer.send_response(self.peer.accept(event))
            else:
                frames.append(event)
        for data in self.peer.data_to_send():
            if data:
                self.engine.link_data(link, data)
        return frames

    def advance(self) -> None:
        """The timer fires at its deadline."""
        assert self.timer.armed < math.inf
        self.now = self.timer.armed
        self.engine.on_timer(self.timer.armed)


def test_a_session_from_dial_to_heartbeats() -> None:
    h = Harness()
    h.engine.start()
    assert h.state == "CONNECTING"
    assert h.timer.armed == 10.0  # open_timeout
    link = h.dial()
    assert h.state == "CONNECTED"
    assert [r.dest for r in h.records] == ["CONNECTING", "CONNECTED"]
    assert h.timer.armed == 2.0  # stability first
    h.peer.send_text(b"hello")
    h.exchange(link)
    assert list(h.inbox._queue or []) == ["hello"]
    assert "stability" not in h.lifecycle.timers  # a message proved the session
    assert h.timer.armed == 5.0
    h.advance()  # the first heartbeat
    assert h.now == 5.0
    [ping] = h.exchange(link)
    assert ping.opcode is Opcode.PING
    assert h.counters.heartbeats_sent == 1
    assert h.counters.heartbeats_acked == 1  # the peer's pong came back in the exchange
    assert h.timer.armed == 10.0  # the next heartbeat


def test_silence_is_judged_only_once_the_bytes_already_received_are_read() -> None:
    """Rule 8: the timer fires at the silence deadline while bytes wait in the byte
    link; the engine reads first (it puts the judgement off), and the frame in
    those bytes keeps the link up."""
    h = Harness(CONFIG.replace(heartbeat_interval=150, heartbeat_timeout=200))
    h.engine.start()
    link = h.dial()
    deadline = h.lifecycle.timers["heartbeat_timeout"]
    assert deadline == 200.0
    while h.timer.armed < deadline:
        h.advance()  # stability, then a heartbeat the peer does not answer
    assert h.timer.armed == deadline
    h.io.pending = True  # a frame arrived: the reader has not handed it over yet
    h.now = deadline
    h.engine.on_timer(deadline)
    assert h.state == "CONNECTED"  # not judged
    assert h.timer.armed == deadline  # again at once, after the reader ran
    h.io.pending = False
    h.peer.send_text(b"just in time")
    h.exchange(link)
    h.engine.on_timer(deadline)
    assert h.state == "CONNECTED"
    assert h.lifecycle.timers["heartbeat_timeout"] == 400.0  # counted from that frame


def test_a_broken_link_sends_what_it_held_again_on_the_next() -> None:
    h = Harness()
    h.engine.start()
    first = h.dial()
    h.io.buffered = 10**6  # the peer stopped reading: nothing more leaves the process
    for n in range(3):
        h.engine.send(f"m{n}")
    assert len(h.lifecycle.ledger) == 3
    h.engine.link_lost(first, ConnectionResetError())
    assert h.state == "RECONNECTING"
    assert h.io.aborted or first.phase == 5
    h.advance()  # the backoff
    assert h.state == "CONNECTING"
    second = h.dial()
    assert second is not first
    frames = h.exchange(second)
    assert [f.data.decode() for f in frames if f.opcode is Opcode.TEXT] == ["m0", "m1", "m2"]
    assert (h.counters.resent, h.counters.messages_out) == (3, 3)
    assert len(h.lifecycle.ledger) == 0


def test_a_released_link_that_does_not_close_is_aborted_at_close_timeout() -> None:
    h = Harness()
    h.engine.start()
    link = h.dial()
    h.engine.rotate("test")
    assert h.state == "CONNECTING"
    assert link.id in h.engine.links
    assert h.engine.link is not link
    assert h.lifecycle.deadlines()["close_link"] == h.now + 3
    while not h.io.aborted:
        h.advance()
    assert h.now == 3.0
    h.engine.link_lost(link, None)
    assert link.id not in h.engine.links
    assert "close_link" not in h.lifecycle.deadlines()


def test_close_releases_the_link_and_the_engine_goes_idle() -> None:
    h = Harness()
    h.engine.start()
    link = h.dial()
    h.engine.close()
    assert h.state == "CLOSED"
    frames = h.exchange(link)
    assert [f.opcode for f in frames] == [Opcode.CLOSE]
    assert not h.engine.idle
    h.engine.link_lost(link, None)
    assert h.engine.idle


def test_a_dial_still_running_when_its_state_is_left_is_cancelled() -> None:
    h = Harness()
    h.engine.start()
    dial = h.jobs.started[-1]
    h.engine.close()
    assert dial.cancelled
    assert h.engine.idle  # nothing was open: nothing to wait for


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_dial_refreshes_stale_credentials_first_and_reports_it() -> None:
    """The dial job run for real: after an auth failure the core asks for a refresh;
    the job refreshes, reports it, then opens the link."""
    h = Harness()
    calls: list[str] = []

    class Provider(StaticCredentials):
        async def refresh(self) -> bool:
            calls.append("refresh")
            return True

    async def open_link(link: Link) -> None:
        calls.append("open")

    h.engine.credentials = Provider()
    h.engine._open_link = open_link  # type: ignore[assignment]
    h.lifecycle.can_refresh_credentials = True
    h.engine.start()
    h.lifecycle.credentials_stale = True  # as after an auth failure
    job = h.jobs.started[-1]
    effect: StartTask = job.args[1]
    stale = StartTask(effect.task, effect.generation, refresh_credentials=True)
    with anyio.fail_after(5):
        await h.engine._dial(job.args[0], stale)
    assert calls == ["refresh", "open"]
    assert not h.lifecycle.credentials_stale
