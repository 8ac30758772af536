"""What a terminal shows: output with its escape sequences played by pyte."""

from __future__ import annotations

import pyte


def terminal_screen(output: str, columns: int, lines: int) -> list[str]:
    """The lines a terminal of ``columns`` x ``lines`` shows after ``output`` (pyte plays
    its escape sequences; the terminal's ``onlcr`` turns each newline into CR LF)."""
    screen = pyte.Screen(columns, lines)
    pyte.Stream(screen).feed(output.replace("\n", "\r\n"))
    return [line.rstrip() for line in screen.display]
