"""What a live display (``rich.live.Live``) leaves free on a terminal.

A live display redraws itself in place: it moves the cursor up by the height of
its last frame and draws the next one.  Two things a person does not see coming
would spoil that:

* a terminal echoes Ctrl-C as ``^C`` where the cursor is, at the end of the
  frame's last line.  With a frame as wide as the terminal, the echo wraps to a new
  line, every later frame (the last one, the final state, included) is drawn one
  line lower, and a stale top line stays above it.  Frames are drawn
  :data:`ECHO_MARGIN` columns narrower than the terminal, so the echo fits on the
  line the next frame erases;
* after the display ends the command may print a line (``interrupted``) and the
  shell its prompt: a frame that fills the screen would scroll its top away.  A
  frame that may grow takes at most the terminal's height less :data:`BELOW` lines.

Checked in tmux at 150x50 and 80x24 (``tmux send-keys C-c``, ``capture-pane``).
"""

from __future__ import annotations

from typing import Final

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

__all__ = ("BELOW", "ECHO_MARGIN", "EchoMargin")

#: Columns left free right of a frame, for the terminal's ``^C``.
ECHO_MARGIN: Final = 2
#: Lines left free below a frame: the line ``interrupted`` and the shell's prompt.
BELOW: Final = 2


class EchoMargin:
    """``renderable`` drawn :data:`ECHO_MARGIN` columns narrower than the console."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from console.render(
            self.renderable, options.update_width(max(1, options.max_width - ECHO_MARGIN))
        )
