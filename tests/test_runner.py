"""The driver's pieces that the connection tests do not reach directly."""

from __future__ import annotations

import anyio
import pytest
from trio.testing import MockClock

from fsm_live.runner import backend_clock

pytestmark = pytest.mark.anyio


async def test_backend_clock_reads_anyio_current_time() -> None:
    clock = backend_clock()
    before = anyio.current_time()
    now = clock()
    assert before <= now <= anyio.current_time()


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_backend_clock_follows_a_virtual_clock() -> None:
    clock = backend_clock()
    assert clock() == anyio.current_time()
    await anyio.sleep(3600)  # autojumps: no real wait
    assert clock() == anyio.current_time()
