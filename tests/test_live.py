"""fsm_live/cli/views/live.py: a live frame leaves the terminal's last columns free
for the echo of Ctrl-C (seen in tmux: a frame as wide as the terminal made the
echo wrap, and every later frame was drawn one line lower under a stale title)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.panel import Panel

from fsm_live.cli.views.live import ECHO_MARGIN, EchoMargin

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("width", [150, 80, 40])
def test_a_frame_leaves_room_for_the_echo_of_ctrl_c(width: int) -> None:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(EchoMargin(Panel("state  CLOSED", title="fsm-live ws://h/")))
    output = console.file
    assert isinstance(output, io.StringIO)
    lines = output.getvalue().splitlines()
    assert {len(line) for line in lines} == {width - ECHO_MARGIN}
