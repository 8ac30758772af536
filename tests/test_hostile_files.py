"""Hostile files (docs/security.md, kind 6 of issue 17): a spec, a settings file or a
fleet file from anyone is refused in one located line, with bounded time and memory.

YAML aliases are expanded into copies (each item keeps its line), at most
``MAX_ALIAS_NODES`` nodes in all; an alias inside its own anchor, nesting past
``MAX_DEPTH`` and values the safe constructor cannot build are problems on their
line.  TOML has no aliases; nesting past Python's recursion limit is refused.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fsm_live import Config, ConfigError, Spec
from fsm_live.errors import SpecError
from fsm_live.fleet import FleetConfig
from fsm_live.spec.loader import MAX_ALIAS_NODES, MAX_DEPTH

pytestmark = pytest.mark.timeout(60)

#: "Billion laughs" in YAML: nine levels of nine aliases, 10**9 strings once expanded
#: (about 600 bytes).  Today's loader rebuilt every copy and recorded a line for each:
#: ``fsm-live check`` grew to 3.5 GB and died with a MemoryError traceback.
BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)
#: The CLI runs under this address-space limit: a loader without a bound dies fast.
MEMORY_LIMIT = 1 << 30


def _check(path: Path) -> tuple[int, str, str, int]:
    """``fsm-live check PATH`` in a child process limited to :data:`MEMORY_LIMIT`:
    (exit code, stdout, stderr, peak resident memory in KiB)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {k: v for k, v in os.environ.items() if not k.startswith("FSM_LIVE_")}
    with (path.parent / "out").open("w+") as out, (path.parent / "err").open("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "fsm_live", "check", str(path)],
            stdout=out,
            stderr=err,
            env=env,
            preexec_fn=limit,
        )
        # wait4, not Popen.wait: it gives the child's own resource usage.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return process.returncode, out.read(), err.read(), usage.ru_maxrss


Figure = Callable[[str, object], None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record a measured figure as a user property of the test's report."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return record


def test_6_billion_laughs_is_one_located_line_and_exit_1(tmp_path: Path, figure: Figure) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS + "\n", encoding="utf-8")
    code, out, err, peak = _check(path)
    figure("check_peak_rss_kib", peak)
    assert code == 1
    assert out == ""
    assert err == (
        f"{path}:5: not valid YAML: aliases repeat more than {MAX_ALIAS_NODES} nodes "
        "(refused: a YAML bomb?)\n"
    )


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("x: &a [1, *a]\n", 1, "an alias used inside its own anchor"),
        ("a: 1\nx: &a {b: [*a]}\n", 2, "an alias used inside its own anchor"),
    ],
)
def test_6_a_recursive_alias_is_one_located_line_and_exit_1(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "recursive.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err, _ = _check(path)
    assert (code, out) == (1, "")
    assert err == f"{path}:{line}: not valid YAML: {problem}\n"
    with pytest.raises(SpecError) as caught:
        Spec.from_path(path)
    assert caught.value.problems == (f"{path}:{line}: not valid YAML: {problem}",)


def test_6_aliases_through_the_api_are_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        Spec.from_path(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}:5: not valid YAML: aliases repeat")
    with pytest.raises(SpecError):
        Spec.from_yaml(BILLION_LAUGHS)


def test_6_aliases_within_the_bound_are_expanded(tmp_path: Path) -> None:
    """A spec may share a table by an alias; each copy is read like written text."""
    spec = (Path(__file__).parent.parent / "specs" / "connection.yaml").read_text()
    assert "&" not in spec  # the packaged spec has no anchors: add one, and aliases
    shared = spec.replace("network: {action: retry}", "network: &retry {action: retry}")
    for name in ("lost", "protocol", "retry"):
        shared = shared.replace(f"    {name}: {{action: retry}}", f"    {name}: *retry")
    assert shared.count("*retry") == 3
    path = tmp_path / "shared.yaml"
    path.write_text(shared, encoding="utf-8")
    assert Spec.from_path(path).errors == Spec.from_yaml(spec).errors


def test_6_nesting_past_the_bound_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: 1\nx: " + "[" * 500 + "]" * 500 + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        Spec.from_path(path)
    assert caught.value.problems == (
        f"{path}:2: not valid YAML: nested more than {MAX_DEPTH} levels deep",
    )
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    code, _, err, _ = _check(path)
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(f"{path}:1: not valid YAML: ")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9" * 5000, "cannot read this int value: Exceeds the limit (4300 digits)"),
        ("!!timestamp 2001-99-99", "cannot read this timestamp value: month must be in 1..12"),
        ("!!int abc", "cannot read this int value: invalid literal"),
        ("!!float zz", "cannot read this float value: could not convert"),
    ],
    ids=["huge-int", "bad-date", "bad-int", "bad-float"],
)
def test_6_a_value_the_safe_loader_cannot_build_is_a_located_problem(
    tmp_path: Path, value: str, problem: str
) -> None:
    path = tmp_path / "value.yaml"
    path.write_text(f"initial: A\nx: {value}\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        Spec.from_path(path)
    [only] = caught.value.problems
    assert only.startswith(f"{path}:2: not valid YAML: {problem}")
    assert len(only) < 400


def test_6_toml_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    """Settings and fleet files are TOML: no aliases, but a recursive parser."""
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    for load in (Config.load, FleetConfig.load):
        with pytest.raises(ConfigError, match=r"not valid TOML: nested too deeply$"):
            load(path)
