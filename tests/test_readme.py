"""The README's quick start stays true: its commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.partition("## Quick start")[2].partition("\n## ")[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)


def test_quick_start_has_exactly_two_commands() -> None:
    assert len(quick_start_commands()) == 2


def test_first_command_installs_and_runs_the_demo() -> None:
    first, _ = quick_start_commands()
    assert "pip install -q ." in first
    assert first.endswith("fsm-live demo")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test_command = quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci


def test_ci_runs_the_slow_tests_the_readme_names() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    slow = re.search(r"`(\.venv/bin/python -m pytest -q -m slow -n 0)`", text)
    assert slow, "the README no longer names the command for the slow tests"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert slow.group(1) in ci


def test_the_default_run_leaves_the_slow_tests_out() -> None:
    import tomllib

    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "-m 'not slow'" in pytest_options["tool"]["pytest"]["ini_options"]["addopts"]
