"""fsm_live._runtime.jobs: work that awaits runs as jobs, in a task group or (on asyncio)
as tasks the connection owns and joins; either way a cancelled job is joined, a crashed
one reported (never taking its siblings down), and every job that ends is counted and
announced."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from fsm_live._runtime.jobs import Job, Jobs

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(5)]


class Recorder:
    """Jobs' two callbacks, recorded."""

    def __init__(self) -> None:
        self.crashes: list[tuple[Job, Exception]] = []
        self.done = 0
        self.jobs = Jobs(self.on_crash, self.on_done)

    def on_crash(self, job: Job, exc: Exception) -> None:
        self.crashes.append((job, exc))

    def on_done(self) -> None:
        self.done += 1


@pytest.fixture(
    params=[("asyncio", "group"), ("asyncio", "owned"), ("trio", "group")],
    ids=["asyncio-group", "asyncio-owned", "trio-group"],
)
def setting(request: pytest.FixtureRequest) -> tuple[str, str]:
    """A backend and how the jobs run on it: in a task group, or (asyncio only) as
    asyncio tasks the jobs own."""
    backend, way = request.param
    return backend, way


@pytest.fixture
def anyio_backend(setting: tuple[str, str]) -> str:
    return setting[0]


@pytest.fixture
def way(setting: tuple[str, str]) -> str:
    return setting[1]


@contextlib.asynccontextmanager
async def running(jobs: Jobs, way: str) -> AsyncIterator[Callable[[], None]]:
    """Jobs running ``way``; leaving waits for every job to end (as a task group's exit
    does); the value yielded stops them all at once."""
    if way == "owned":
        jobs.own()
        grace = [math.inf]
        yield lambda: grace.__setitem__(0, 0.0)
        await jobs.join(grace[0], 1.0)
    else:
        async with anyio.create_task_group() as tg:
            jobs.bind(tg)
            yield tg.cancel_scope.cancel


async def settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_a_job_starts_without_a_generation_and_is_tagged_by_its_owner() -> None:
    job = Job("dial")
    assert (job.name, job.done, job.generation) == ("dial", False, -1)
    assert repr(job) == "<Job dial>"
    job.generation = 7  # the engine tags it with the generation it works for
    job.done = True
    assert repr(job) == "<Job dial done>"


async def test_jobs_need_a_task_group_first() -> None:
    async def work() -> None:
        raise AssertionError("never runs")

    with pytest.raises(AssertionError, match=r"bind\(\) or Jobs.own\(\) first"):
        Recorder().jobs.start("x", work)


async def test_a_job_runs_its_work_with_its_arguments(way: str) -> None:
    seen: list[Any] = []
    rec = Recorder()

    async def work(a: int, b: str) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append((a, b))

    async with running(rec.jobs, way):
        job = rec.jobs.start("work", work, 1, "two")
        assert isinstance(job, Job)
        assert job.name == "work"
        assert rec.jobs.alive == 1
        assert not job.done
    assert seen == [(1, "two")]
    assert job.done
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 1, [])


async def test_a_cancelled_job_is_joined_with_its_cleanup(way: str) -> None:
    rec = Recorder()
    steps: list[str] = []

    async def work() -> None:
        try:
            steps.append("started")
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):  # cleanup that must await
                await anyio.lowlevel.checkpoint()
                steps.append("cleaned up")

    async with running(rec.jobs, way):
        job = rec.jobs.start("reader", work)
        await settle()
        assert steps == ["started"]
        job.cancel()
        await settle()
        assert job.done
        assert steps == ["started", "cleaned up"]
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 1, [])


async def test_cancelling_a_job_leaves_its_siblings_running(way: str) -> None:
    rec = Recorder()
    finished: list[str] = []

    async def sibling() -> None:
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        finished.append("sibling")

    async with running(rec.jobs, way):
        victim = rec.jobs.start("victim", anyio.sleep_forever)
        rec.jobs.start("sibling", sibling)
        victim.cancel()
    assert finished == ["sibling"]
    assert (rec.done, rec.crashes) == (2, [])


async def test_a_job_cancelled_before_it_ran_ends_at_its_first_checkpoint(way: str) -> None:
    rec = Recorder()
    async with running(rec.jobs, way):
        job = rec.jobs.start("dial", anyio.sleep_forever)
        job.cancel()
    assert job.done
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 1, [])


async def test_cancel_is_a_no_op_once_done(way: str) -> None:
    rec = Recorder()
    async with running(rec.jobs, way):
        job = rec.jobs.start("quick", anyio.lowlevel.checkpoint)
    assert job.done
    job.cancel()
    assert (job.done, rec.done, rec.crashes) == (True, 1, [])


async def test_a_crashed_job_is_reported_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
    way: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="fsm_live")
    rec = Recorder()
    boom = ValueError("a bug in a job")
    survived: list[str] = []

    async def crash() -> None:
        await anyio.lowlevel.checkpoint()
        raise boom

    async def sibling() -> None:
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        survived.append("sibling")

    async with running(rec.jobs, way):  # the crash does not cancel the others
        job = rec.jobs.start("heartbeat", crash)
        rec.jobs.start("sibling", sibling)
    assert rec.crashes == [(job, boom)]
    assert survived == ["sibling"]
    assert job.done
    assert (rec.jobs.alive, rec.done) == (0, 2)
    [record] = [r for r in caplog.records if r.name == "fsm_live"]
    assert record.getMessage() == "fsm_live job heartbeat crashed"
    assert record.exc_info is not None
    assert record.exc_info[1] is boom


async def test_on_done_sees_the_job_counted_out(way: str) -> None:
    seen: list[int] = []
    jobs = Jobs(lambda job, exc: None, lambda: seen.append(jobs.alive))
    async with running(jobs, way):
        jobs.start("a", anyio.lowlevel.checkpoint)
        jobs.start("b", anyio.sleep, 0)
    assert sorted(seen) == [0, 1]


async def test_stopping_ends_every_job_without_a_crash(way: str) -> None:
    rec = Recorder()
    async with running(rec.jobs, way) as stop:
        jobs = [rec.jobs.start(name, anyio.sleep_forever) for name in ("a", "b", "c")]
        await settle()
        stop()
    assert all(job.done for job in jobs)
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 3, [])
