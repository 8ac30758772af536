"""The spec is the only place the lifecycle's states are named.

Renaming every state of ``specs/connection.yaml`` (states, ``initial`` and
transitions; roles kept; the example specs' states of the same names too) must
leave the suite's behaviour unchanged.  This test
copies the package, the specs, the docs and the tests into a temporary tree,
renames the states in the copied spec, translates the names the tests and docs
speak (state names in the tests' string literals: expected states, expected
output; in the docs' text), and runs the
default suite there with the copy first on ``PYTHONPATH`` (subprocesses the
tests start, CLI runs included, import the copy too).  The package's code is
copied verbatim: if any of it compared a state name, the renamed run would fail.

The documentation is renamed too (its examples' output and diagrams are checked
against the code).  Left out of the renamed run: the slow end-to-end runs (the
soak, the install from a wheel), which ``.ci/run`` runs against the real spec.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The packaged names and what the renamed run calls them: lower case, other words.
RENAMED = {
    "DISCONNECTED": "idle",
    "CONNECTING": "dialing",
    "CONNECTED": "open",
    "RECONNECTING": "backing_off",
    "WAITING": "holding",
    "FAILED": "broken",
    "CLOSED": "ended",
}
_NAME = re.compile(r"\b(" + "|".join(RENAMED) + r")\b")


def rename(text: str) -> str:
    """``text`` with each packaged state name (a whole word) renamed."""
    return _NAME.sub(lambda m: RENAMED[m.group(1)], text)


def translate_strings(source: str) -> str:
    """``source`` (Python) with state names renamed inside string literals only."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    out = [
        tok._replace(string=rename(tok.string)) if tok.type == tokenize.STRING else tok
        for tok in tokens
    ]
    return tokenize.untokenize(out)


def test_translation_touches_strings_only() -> None:
    source = 'x = "CONNECTED -> FAILED"\nCONNECTED = 1  # CLOSED\ny = f"{a} CLOSED"\n'
    assert translate_strings(source) == (
        'x = "open -> broken"\nCONNECTED = 1  # CLOSED\ny = f"{a} ended"\n'
    )


def test_the_renamed_spec_has_the_same_roles_and_edges() -> None:
    from fsm_live.spec import Spec

    spec = Spec.default()
    renamed = Spec.from_yaml(rename((ROOT / "specs" / "connection.yaml").read_text()))
    assert set(renamed.states) == {RENAMED[name] for name in spec.states}
    assert renamed.initial == RENAMED[spec.initial]
    assert renamed.success_states == {RENAMED[n] for n in spec.success_states}
    assert renamed.failed_states == {RENAMED[n] for n in spec.failed_states}
    assert renamed.final_states == {RENAMED[n] for n in spec.final_states}
    assert sorted((RENAMED[s], t.trigger, RENAMED[t.dest]) for s, t in spec.edges()) == sorted(
        (s, t.trigger, t.dest) for s, t in renamed.edges()
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_suite_passes_with_every_state_renamed(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "fsm_live", tmp_path / "fsm_live", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    # Every spec: the tests' strings are renamed everywhere, so the example specs
    # that share a state name with the lifecycle (TCP's CLOSED, gRPC's CONNECTING,
    # subscribing.yaml, which extends connection.yaml) are renamed with them.
    for spec in (tmp_path / "specs").rglob("*.yaml"):
        spec.write_text(rename(spec.read_text(encoding="utf-8")), encoding="utf-8")
    for folder in ("tests", "docs", ".ci", "bench"):  # tests/test_cost_check.py runs bench/
        for path in (ROOT / folder).rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts or path.name == Path(__file__).name:
                continue
            copy = tmp_path / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text(encoding="utf-8")
            copy.write_text(
                translate_strings(text) if path.suffix == ".py" else rename(text), encoding="utf-8"
            )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(rename(readme), encoding="utf-8")

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("TEST_FSM_LIVE_CLI", None)  # the user venv's CLI runs the real spec
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            "-x",
            "tests",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1:] or [""]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary[0], summary
    assert "failed" not in summary[0], summary
    # The run imported the copy, whose spec is the renamed one:
    probe = subprocess.run(
        [sys.executable, "-c", "from fsm_live.spec import Spec; print(Spec.default().initial)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == RENAMED["DISCONNECTED"]
