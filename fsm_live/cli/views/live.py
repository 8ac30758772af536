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
  frame that may grow takes at most the terminal's height less :data:`BELOW` lines;
* a log line written to the terminal while a frame is on it lands after the
  frame's last line: the next frame is drawn one line lower, a stale top line stays
  above it, and the log line is overwritten.  While a display shows
  (:func:`logs_above`), :class:`LogLines` prints each record through the display's
  console, above the frame, which rich then draws again below it.

Checked in tmux at 150x50 and 80x24 (``tmux send-keys C-c``, ``capture-pane``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, TextIO

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.text import Text

__all__ = ("BELOW", "ECHO_MARGIN", "EchoMargin", "LogLines", "logs_above")

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


class LogLines(logging.StreamHandler[TextIO]):
    """Log records as lines on ``stream``; while a live display shows on the same
    terminal (:func:`logs_above`, with ``stream`` a terminal too), above its frame."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        #: The console of the live display showing now (None: none is).
        self.above: Console | None = None

    def emit(self, record: logging.LogRecord) -> None:
        console = self.above
        if console is None or not self.stream.isatty():
            # Redirected (2>file): the screen is not written, the file gets every line.
            super().emit(record)
            return
        try:
            console.print(Text(self.format(record)), soft_wrap=True)
        except Exception:
            self.handleError(record)


@contextmanager
def logs_above(live: Live) -> Iterator[None]:
    """While in the block, the root logger's :class:`LogLines` print above ``live``'s frame."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, LogLines)]
    for handler in handlers:
        handler.above = live.console
    try:
        yield
    finally:
        for handler in handlers:
            handler.above = None
