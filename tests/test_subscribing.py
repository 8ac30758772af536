"""The SUBSCRIBING example: connection.yaml extended with a user task, live.

``specs/examples/subscribing.yaml`` adds a SUBSCRIBING state after CONNECTING;
its ``subscribe`` task (``specs/examples/registries.py``) sends a subscription
and fires ``subscribed``.  Against the local lwp server (in memory, in virtual
time), the subscription is sent again after every reconnect.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from fsm_live import Config, ExponentialJitter, LiveConnection
from fsm_live._runtime.trace import read_trace
from fsm_live.core.lifecycle import LifecycleMachine
from fsm_live.credentials import parse_cookies
from fsm_live.errors import SpecError
from fsm_live.lwp.credentials import CookieCredentials
from fsm_live.lwp.faults import Drop
from fsm_live.lwp.memory import MemoryLwpServer
from fsm_live.lwp.service import LwpServerStats
from fsm_live.spec import Registry, Spec
from fsm_live.transport.memory import MemoryNetwork

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

EXAMPLES = Path(__file__).resolve().parent.parent / "specs" / "examples"
URL = "ws://lwp.test/"
CONFIG = Config(
    heartbeat_interval=1,
    heartbeat_timeout=3,
    open_timeout=2,
    backoff=ExponentialJitter(initial=0.1, maximum=1),
)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries

    return registries


async def test_subscribes_after_every_reconnect(registries: Any, tmp_path: Path) -> None:
    spec = Spec.from_path(EXAMPLES / "subscribing.yaml")
    machine = LifecycleMachine(spec, registry=registries.subscribing)
    server = MemoryLwpServer(MemoryNetwork(), URL, push_interval=None)
    credentials = CookieCredentials(
        parse_cookies("unb=77; cna=x"), token_source=server.token_source
    )
    trace = tmp_path / "t.jsonl"
    with anyio.fail_after(60):
        async with (
            server,
            LiveConnection(
                server.url,
                protocol="lwp",
                config=CONFIG,
                credentials=credentials,
                machine=machine,
                transport=server.transport,
                trace=trace,
            ) as conn,
        ):

            def subscriptions(times: int) -> Callable[[LwpServerStats], bool]:
                # The server records each request's path (after registration, the lwp
                # adapter's own /r/SyncStatus/ackDiff too).
                return lambda stats: stats.request_paths.count(registries.SUBSCRIBE_PATH) == times

            await conn.wait_for("CONNECTED")
            await server.wait_until(subscriptions(1))
            await server.inject(Drop())
            await conn.wait_for("RECONNECTING")
            await conn.wait_for("CONNECTED")
            await server.wait_until(subscriptions(2))
            assert server.stats().registrations == 2
    states = [(row["from"], row["trigger"], row["to"]) for row in read_trace(trace)]
    assert states == [
        ("DISCONNECTED", "start", "CONNECTING"),
        ("CONNECTING", "opened", "SUBSCRIBING"),
        ("SUBSCRIBING", "subscribed", "CONNECTED"),
        ("CONNECTED", "lost", "RECONNECTING"),
        ("RECONNECTING", "retry", "CONNECTING"),
        ("CONNECTING", "opened", "SUBSCRIBING"),
        ("SUBSCRIBING", "subscribed", "CONNECTED"),
        ("CONNECTED", "close", "CLOSED"),
    ]


def test_an_unbound_task_is_refused_with_file_and_line() -> None:
    spec = Spec.from_path(EXAMPLES / "subscribing.yaml")
    with pytest.raises(
        SpecError,
        match=r"subscribing.yaml:\d+: tasks.subscribe: task "
        r"'subscribe' is not bound in registry",
    ):
        LifecycleMachine(spec, registry=Registry("empty"))
