"""Shared fixtures: every anyio test runs on both backends; logging a command
configured is undone after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fsm_live.cli.views.live import LogLines


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


#: The loggers whose levels the CLI's configure_logging sets.
_CLI_LOGGERS = ("", "fsm_live", "fsm_live.transitions", "transitions")


@pytest.fixture(autouse=True)
def _cli_logging_undone() -> Iterator[None]:
    """A command run in-process configures logging for the process (its handler on
    the root logger, the levels): undone after the test, so no later test writes to
    that test's streams or logs at its levels."""
    levels = {name: logging.getLogger(name).level for name in _CLI_LOGGERS}
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, LogLines)]:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
