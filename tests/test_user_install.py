"""The checks of a user's install (``.ci/user_checks.py``, run by ``.ci/run`` with the
user venv's Python) check what they claim: these tests run them on known inputs.

The checks themselves (every module imports from ``pip install .``, the demo
passes through every state and transition of the spec) run in ``.ci/run``; against the dev venv:
``.venv/bin/python .ci/user_checks.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from test_readme import quick_start_commands

ROOT = Path(__file__).resolve().parent.parent


def load_user_checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("user_checks", ROOT / ".ci" / "user_checks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = load_user_checks()


def test_every_module_outside_testing_is_found() -> None:
    on_disk = set()
    for path in (ROOT / "fsm_live").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[:2] == ("fsm_live", "testing"):
            continue
        on_disk.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert set(checks.module_names()) == on_disk
    assert "fsm_live.cli.serve" in on_disk  # which imports what it needs of fsm_live.testing


def test_a_missing_dependency_is_reported_even_in_a_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pkgutil.walk_packages passes over a package whose import fails with ImportError;
    # the check must name it.
    package = tmp_path / "fakepkg"
    (package / "sub").mkdir(parents=True)
    (package / "testing").mkdir()
    (package / "__init__.py").write_text("")
    (package / "fine.py").write_text("import json\n")
    (package / "sub" / "__init__.py").write_text("import not_a_declared_dependency\n")
    (package / "sub" / "child.py").write_text("")
    (package / "testing" / "__init__.py").write_text("import hypothesis_not_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        names = list(checks.module_names("fakepkg", "fakepkg.testing"))
        assert names == ["fakepkg", "fakepkg.fine", "fakepkg.sub"]
        failures = checks.import_all(names)
        assert list(failures) == ["fakepkg.sub"]
        assert failures["fakepkg.sub"].startswith(
            "ModuleNotFoundError: No module named 'not_a_declared_dependency' (at __init__.py:1)"
        )
    finally:
        for name in [name for name in sys.modules if name.startswith("fakepkg")]:
            del sys.modules[name]


def test_trace_rows_need_exactly_the_five_keys() -> None:
    row = {
        "t": 0.1,
        "from": "DISCONNECTED",
        "to": "CONNECTING",
        "trigger": "start",
        "reason": "started",
    }
    assert checks.states_seen([row]) == {"DISCONNECTED", "CONNECTING"}
    failure = {"t": 0.2, "kind": "failure", "class": "lost"}
    assert checks.states_seen([row, failure]) == {"DISCONNECTED", "CONNECTING"}
    with pytest.raises(checks.CheckFailed, match=r"trace row 2 has keys"):
        checks.states_seen([row, {**row, "extra": 1}])


def test_states_are_read_from_plain_transition_lines() -> None:
    output = (
        "    0.001s  == clean session: A -> B\n"
        "    8.101s  CONNECTED -> RECONNECTING  [lost] (lost: closed 1006)\n"
        "   21.001s  RECONNECTING -> FAILED  [give_up] (CONNECTED -> CLOSED quoted)\n"
    )
    states = checks.packaged_states()
    assert checks.states_printed(output, states) == {"CONNECTED", "RECONNECTING", "FAILED"}


def test_every_transition_of_the_spec_is_needed_and_close_once() -> None:
    from fsm_live.spec import Spec

    spec = Spec.default()

    def row(source: str, trigger: str, dest: str) -> dict[str, object]:
        return {"t": 0.0, "from": source, "to": dest, "trigger": trigger, "reason": ""}

    rows = [
        row(source, t.trigger, t.dest)
        for source, t in spec.edges()
        if t.dest not in spec.final_states
    ]
    [close] = [t for t in spec.transitions if t.dest in spec.final_states]
    rows.append(row(close.sources[-1], close.trigger, close.dest))  # one source is enough
    assert checks.untaken_transitions(rows) == []
    first = rows[0]
    missing = checks.untaken_transitions([*rows[1:], {"kind": "stats", **first}])
    assert missing == [f"{first['from']} -[{first['trigger']}]-> {first['to']}"]
    assert len(checks.untaken_transitions(rows[:-1])) == 1  # no close at all


def test_ci_installs_the_user_venv_as_the_readme_first_command_does() -> None:
    first, _ = quick_start_commands()
    install, _, demo = first.rpartition(" && ")
    assert install == "python3 -m venv .venv && .venv/bin/pip install -q ."
    assert demo.split()[1:] == list(checks.README_DEMO_ARGS)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install.replace(".venv", ".venv-user") in ci
    assert ".venv-user/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
