"""The demo: one lwp client kept alive through a scripted series of faults.

``fsm-live demo`` runs :func:`run_demo` (the story, :mod:`fsm_live.demo.story`)
against a local lwp server behind a fault proxy; the tests run the same story on
an in-memory network in virtual time (:mod:`fsm_live.demo.environments`).
"""

from __future__ import annotations

from fsm_live.demo.story import (
    DEFAULT_DURATION,
    MIN_DURATION,
    DemoEnvironment,
    DemoEvent,
    DemoObserver,
    DemoReport,
    DemoSummary,
    StoryStuck,
    demo_config,
    run_demo,
    summarize,
)

__all__ = (
    "DEFAULT_DURATION",
    "MIN_DURATION",
    "DemoEnvironment",
    "DemoEvent",
    "DemoObserver",
    "DemoReport",
    "DemoSummary",
    "StoryStuck",
    "demo_config",
    "run_demo",
    "summarize",
)
