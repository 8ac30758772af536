"""The docs' runnable examples are the files they claim to be, and print what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMBEDDING = ROOT / "docs" / "embedding.md"


def block(text: str, begin: str, end: str) -> str:
    match = re.search(re.escape(begin) + r"\n```\w*\n(.*?)```\n" + re.escape(end), text, re.S)
    assert match is not None, f"{begin} ... {end} not found"
    return match.group(1)


def test_embedding_example_is_the_file_and_prints_its_output() -> None:
    text = EMBEDDING.read_text(encoding="utf-8")
    code = block(text, "<!-- example:begin docs/examples/echo.py -->", "<!-- example:end -->")
    path = ROOT / "docs" / "examples" / "echo.py"
    assert code == path.read_text(encoding="utf-8"), "docs/examples/echo.py differs from the doc"
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == block(text, "<!-- output:begin -->", "<!-- output:end -->")


SPECS_PAGE = ROOT / "docs" / "specs.md"


def test_specs_worked_example_is_the_files_and_prints_its_output() -> None:
    text = SPECS_PAGE.read_text(encoding="utf-8")
    for name in ("pomodoro.yaml", "pomodoro.py", "test_pomodoro.py"):
        code = block(text, f"<!-- example:begin docs/examples/{name} -->", "<!-- example:end -->")
        path = ROOT / "docs" / "examples" / name
        assert code == path.read_text(encoding="utf-8"), f"docs/examples/{name} differs"
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "pomodoro.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == block(text, "<!-- output:begin -->", "<!-- output:end -->")
