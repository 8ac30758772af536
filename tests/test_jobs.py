"""fsm_live._runtime.jobs: work that awaits runs as jobs of one task group; a cancelled
job is joined, a crashed one reported (never taking its siblings down), and every job
that ends is counted and announced."""

from __future__ import annotations

import logging
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

    with pytest.raises(AssertionError, match=r"bind\(\) first"):
        Recorder().jobs.start("x", work)


async def test_a_job_runs_its_work_with_its_arguments() -> None:
    seen: list[Any] = []
    rec = Recorder()

    async def work(a: int, b: str) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append((a, b))

    async with anyio.create_task_group() as tg:
        rec.jobs.bind(tg)
        job = rec.jobs.start("work", work, 1, "two")
        assert isinstance(job, Job)
        assert job.name == "work"
        assert rec.jobs.alive == 1
        assert not job.done
    assert seen == [(1, "two")]
    assert job.done
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 1, [])


async def test_a_cancelled_job_is_joined_with_its_cleanup() -> None:
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

    async with anyio.create_task_group() as tg:
        rec.jobs.bind(tg)
        job = rec.jobs.start("reader", work)
        await settle()
        assert steps == ["started"]
        job.cancel()
        await settle()
        assert job.done
        assert steps == ["started", "cleaned up"]
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 1, [])


async def test_cancelling_a_job_leaves_its_siblings_running() -> None:
    rec = Recorder()
    finished: list[str] = []

    async def sibling() -> None:
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        finished.append("sibling")

    async with anyio.create_task_group() as tg:
        rec.jobs.bind(tg)
        victim = rec.jobs.start("victim", anyio.sleep_forever)
        rec.jobs.start("sibling", sibling)
        victim.cancel()
    assert finished == ["sibling"]
    assert (rec.done, rec.crashes) == (2, [])


async def test_a_job_cancelled_before_it_ran_ends_at_its_first_checkpoint() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as tg:
        rec.jobs.bind(tg)
        job = rec.jobs.start("dial", anyio.sleep_forever)
        job.cancel()
    assert job.done
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 1, [])


async def test_cancel_is_a_no_op_once_done() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as tg:
        rec.jobs.bind(tg)
        job = rec.jobs.start("quick", anyio.lowlevel.checkpoint)
    assert job.done
    job.cancel()
    assert (job.done, rec.done, rec.crashes) == (True, 1, [])


async def test_a_crashed_job_is_reported_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
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

    async with anyio.create_task_group() as tg:  # the crash does not cancel the group
        rec.jobs.bind(tg)
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


async def test_on_done_sees_the_job_counted_out() -> None:
    seen: list[int] = []
    jobs = Jobs(lambda job, exc: None, lambda: seen.append(jobs.alive))
    async with anyio.create_task_group() as tg:
        jobs.bind(tg)
        jobs.start("a", anyio.lowlevel.checkpoint)
        jobs.start("b", anyio.sleep, 0)
    assert sorted(seen) == [0, 1]


async def test_closing_the_task_group_ends_every_job_without_a_crash() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as tg:
        rec.jobs.bind(tg)
        jobs = [rec.jobs.start(name, anyio.sleep_forever) for name in ("a", "b", "c")]
        await settle()
        tg.cancel_scope.cancel()
    assert all(job.done for job in jobs)
    assert (rec.jobs.alive, rec.done, rec.crashes) == (0, 3, [])
