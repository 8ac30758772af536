"""The docs' runnable examples are the files they claim to be, and print what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.timeout(60)
def test_embedding_lwp_example_runs_against_fsm_live_serve() -> None:
    """docs/embedding.md's lwp example is the file, and against a running ``fsm-live
    serve`` it prints what the doc shows."""
    text = EMBEDDING.read_text(encoding="utf-8")
    code = block(text, "<!-- example:begin docs/examples/lwp.py -->", "<!-- example:end -->")
    path = ROOT / "docs" / "examples" / "lwp.py"
    assert code == path.read_text(encoding="utf-8"), "docs/examples/lwp.py differs from the doc"
    serve = subprocess.Popen(
        [sys.executable, "-m", "fsm_live", "serve", "--duration", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        listening = serve.stdout.readline()
        url = re.search(r"listening on (ws://\S+)", listening)
        assert url is not None, listening
        result = subprocess.run(
            [sys.executable, str(path), url.group(1)],
            capture_output=True,
            text=True,
            timeout=40,
            check=True,
        )
    finally:
        serve.terminate()  # SIGTERM: it closes cleanly and exits 0
        serve.communicate(timeout=20)
    assert result.stdout == block(
        text, "<!-- output:begin docs/examples/lwp.py -->", "<!-- output:end -->"
    )
    assert result.stderr == ""
    assert serve.returncode == 0


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


LIFECYCLE_PAGE = ROOT / "docs" / "lifecycle.md"


def _numbers(cell: str) -> frozenset[int]:
    """The numbers a table cell lists: ``401, 403``, ``500-599`` (a range, both ends in)."""
    found: set[int] = set()
    for low, high in re.findall(r"\b(\d{3,4})(?:-(\d{3,4}))?\b", cell):
        found.update(range(int(low), int(high or low) + 1))
    return frozenset(found)


def test_the_error_class_table_is_the_spec_s() -> None:
    """docs/lifecycle.md's error classification lists exactly the spec's classes, in the
    order of its rules, each with the rule's kinds, statuses and close codes and the
    class's action (and Retry-After and least delay where the class has them)."""
    from fsm_live.spec import Spec

    errors = Spec.default().errors
    text = LIFECYCLE_PAGE.read_text(encoding="utf-8")
    table = text.split("| class | failure kinds | HTTP status at the handshake |", 1)[1]
    table = table.split("\n\n", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()[2:]  # after the header's rest and the rule line
    ]
    documented = [row[0].strip("`") for row in rows]
    ruled = [rule.error_class for rule in errors.rules]
    assert documented == ruled + [name for name in errors.classes if name not in ruled]
    assert set(documented) == set(errors.classes)
    rules = {rule.error_class: rule for rule in errors.rules}
    for name, kinds, statuses, codes, action in rows:
        error_class = errors.classes[name.strip("`")]
        rule = rules.get(error_class.name)
        assert set(re.findall(r"`([a-z_]+)`", kinds)) == set(rule.kinds if rule else ()), name
        assert _numbers(statuses) == (rule.http_status if rule else frozenset()), name
        assert _numbers(codes) == (rule.close_codes if rule else frozenset()), name
        assert re.split(r"[,;]", action)[0] == error_class.action, name
        assert ("Retry-After" in action) == error_class.retry_after, name
        if error_class.min_delay:
            assert f"at least {error_class.min_delay:g} s" in action, name
    assert f"is classed `{errors.default}`" in text
    endpoint_classes = re.search(r"marks `endpoint: true` \(([a-z, ]+)\)", text)
    assert endpoint_classes is not None
    assert set(endpoint_classes.group(1).split(", ")) == {
        name for name, spec in errors.classes.items() if spec.endpoint
    }
