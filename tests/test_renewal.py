"""fsm_live.core.renewal: a credential refreshed by its age, across reconnects."""

from __future__ import annotations

import math

from fsm_live.core.renewal import Renewal


def test_a_refresh_is_due_by_age_and_only_while_its_task_runs() -> None:
    renewal = Renewal(interval=100, retry_interval=10)
    assert renewal.due_at() == math.inf  # its age is not known yet
    renewal.obtained(5.0)
    renewal.obtained(50.0)  # known once: the first time counts
    assert renewal.due_at() == 105.0
    assert renewal.deadline() == math.inf  # the task is not alive: the dial asks due()
    assert renewal.due(105.0)
    assert not renewal.due(104.9)
    renewal.active = True
    assert renewal.deadline() == 105.0
    renewal.started()
    assert renewal.deadline() == math.inf
    assert not renewal.due(200.0)


def test_a_failed_refresh_is_retried_after_the_retry_interval() -> None:
    renewal = Renewal(interval=100, retry_interval=10)
    renewal.obtained(0.0)
    renewal.started()
    renewal.finished(100.0, ok=False)
    assert renewal.due_at() == 110.0
    renewal.started()
    renewal.finished(110.0, ok=True)
    assert renewal.due_at() == 210.0  # the age restarts with the new credential
