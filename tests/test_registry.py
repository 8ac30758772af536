"""fsm_live.spec.Registry: a name is bound once (a union refuses a clash, with file
and line), and names or bindings nothing uses are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsm_live.cli import main
from fsm_live.errors import SpecError
from fsm_live.spec import Registry, Spec

EXAMPLES = Path(__file__).resolve().parent.parent / "specs" / "examples"

TIMED = """\
name: timed
initial: IDLE
timers:
  backoff: {description: the user's own backoff}
actions: [blink, spare]
states:
  IDLE: {timers: {backoff: wake}, on_enter: [blink]}
  AWAKE: {}
transitions:
  - {trigger: wake, source: IDLE, dest: AWAKE}
  - {trigger: sleep, source: AWAKE, dest: IDLE}
"""


def _backoff(subject: object) -> float:
    return 1.0


def _other_backoff(subject: object) -> float:
    return 2.0


def _blink(subject: object) -> None:
    return None


def test_a_name_bound_on_both_sides_of_a_union_is_an_error_naming_the_binding() -> None:
    builtin, mine = Registry("lifecycle"), Registry("mine")
    builtin.bind("timer", "backoff", _backoff)
    mine.bind("timer", "backoff", _other_backoff)
    with pytest.raises(SpecError) as caught:
        _ = builtin | mine
    (problem,) = caught.value.problems
    line = _other_backoff.__code__.co_firstlineno
    assert problem.startswith(f"{__file__}:{line}: timer 'backoff' is bound in registry ")
    assert f"'lifecycle' (to {__name__}._backoff at {__file__}:" in problem
    assert f"and in registry 'mine' (to {__name__}._other_backoff at" in problem


def test_a_union_with_a_spec_names_the_specs_declaration(tmp_path: Path) -> None:
    path = tmp_path / "timed.yaml"
    path.write_text(TIMED)
    spec = Spec.from_path(path)
    builtin, mine = Registry("lifecycle"), Registry("mine")
    builtin.bind("timer", "backoff", _backoff)
    mine.bind("timer", "backoff", _other_backoff)
    mine.bind("task", "dial", _async_dial)
    builtin.bind("task", "dial", _async_dial2)
    with pytest.raises(SpecError) as caught:
        builtin.union(mine, spec=spec)
    timer, task = sorted(caught.value.problems)
    assert timer.startswith(f"{path}:4: timers.backoff: timer 'backoff' is bound in registry")
    # The spec does not use `dial`: the binding's own line locates it.
    assert task.startswith(f"{__file__}:")
    assert "task 'dial'" in task


async def _async_dial(subject: object) -> None:
    return None


async def _async_dial2(subject: object) -> None:
    return None


def test_a_union_without_clashes_has_both_bindings_and_leaves_its_parts_alone() -> None:
    left, right = Registry("left"), Registry("right")
    left.bind("timer", "backoff", _backoff)
    right.bind("action", "blink", _blink)
    both = left | right
    assert both.names("timer") == {"backoff"}
    assert both.names("action") == {"blink"}
    assert len(left) == len(right) == 1
    assert both.name == "left|right"
    assert len(both | left) == 2  # the same callable twice is no clash


def test_check_reports_declared_but_unused_names_and_unused_bindings(tmp_path: Path) -> None:
    path = tmp_path / "timed.yaml"
    path.write_text(TIMED)
    spec = Spec.from_path(path)
    registry = Registry("mine")
    registry.bind("timer", "backoff", _backoff)
    registry.bind("action", "blink", _blink)
    registry.bind("guard", "never_used", _blink)
    problems = registry.check(spec)
    assert problems == [
        f"{path}:5: actions.spare: action 'spare' is declared but no state or transition uses it",
        f"{__file__}:{_blink.__code__.co_firstlineno}: guard 'never_used' is bound in registry "
        f"'mine' (to {__name__}._blink) but {path} never uses it",
    ]
    assert registry.check(spec, unused=False) == []  # what machines check: not refused


def test_the_examples_declare_and_bind_nothing_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries  # type: ignore[import-not-found]

    for name in ("order_control", "grpc_connectivity", "tcp", "subscribing", "light_delay"):
        spec = Spec.from_path(EXAMPLES / f"{name}.yaml")
        assert registries.__dict__[name].unused(spec) == [], name


def test_cli_check_reports_unused_names_with_and_without_bind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "timed.yaml"
    path.write_text(TIMED)
    assert main(["check", str(path)]) == 1
    _, err = capsys.readouterr()
    assert err.strip() == (
        f"{path}:5: actions.spare: action 'spare' is declared but no state or transition uses it"
    )
    (tmp_path / "timed_registry.py").write_text(
        "from fsm_live.spec import Registry\n"
        "registry = Registry('timed')\n"
        "registry.bind('timer', 'backoff', lambda subject: 1.0)\n"
        "registry.bind('action', 'blink', lambda subject: None)\n"
        "registry.bind('action', 'spare', lambda subject: None)\n"
        "registry.bind('action', 'typo', lambda subject: None)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", str(path), "--bind", "timed_registry:registry"]) == 1
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert lines[0].startswith(f"{path}:5: actions.spare: action 'spare' is declared")
    assert lines[1].startswith(f"{tmp_path / 'timed_registry.py'}:5: action 'spare' is bound")
    assert lines[2].startswith(f"{tmp_path / 'timed_registry.py'}:6: action 'typo' is bound")


def test_a_connection_machine_refuses_a_user_binding_of_a_packaged_name() -> None:
    """A user's guard named like the packaged lifecycle's is never silently taken by it
    (nor takes it over): the union of the two registries refuses it."""
    from fsm_live.core.lifecycle import LifecycleMachine

    mine = Registry("mine")
    mine.bind("guard", "exhausted", _exhausted_too)
    built_in = r"guard 'exhausted' is built into the connection lifecycle"
    with pytest.raises(SpecError, match=built_in):
        LifecycleMachine(Spec.default(), registry=mine)


def _exhausted_too(subject: object) -> bool:
    return True


@pytest.mark.parametrize("name", ["light_delay", "order_control", "grpc_connectivity", "tcp"])
def test_the_examples_bind_completely(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries

    spec = Spec.from_path(EXAMPLES / f"{name}.yaml")
    assert getattr(registries, name).check(spec) == []
