"""The stricter spec checks, the open vocabulary and the example machines.

Each broken spec of issue 12 is refused with ``FILE:LINE: item: message``, by
:meth:`Spec.from_yaml` and by ``fsm-live check``; the example specs check with
and without their Python bindings.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from fsm_live.cli import main
from fsm_live.diagram import MERMAID_MAX_TEXT, to_mermaid
from fsm_live.errors import SpecError
from fsm_live.spec import Registry, Spec

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "specs" / "examples"

BASE = """\
name: t
initial: A
states:
  A: {}
  B: {}
  DONE: {final: true}
transitions:
"""


def problems(text: str) -> list[str]:
    """The problems of a spec's YAML text (named ``t.yaml``); fails if it loads."""
    with pytest.raises(SpecError) as caught:
        Spec.from_yaml(textwrap.dedent(text), "t.yaml")
    return caught.value.problems


def only(text: str, *needles: str) -> str:
    """The one problem of ``text``, checked to contain each needle."""
    found = problems(text)
    assert len(found) == 1, found
    for needle in needles:
        assert needle in found[0], found[0]
    return found[0]


# -- reserved names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "why"),
    [
        ("state", "model attribute"),
        ("trigger", "binds trigger()"),
        ("to_B", "to_<state>"),
        ("is_A", "is_<state>"),
        ("may_go", "may_<trigger>"),
        ("__init__", "every Python model"),
    ],
)
def test_reserved_trigger_is_refused_with_its_line(trigger: str, why: str) -> None:
    text = BASE + (
        "  - {trigger: go, source: A, dest: B}\n"
        f"  - {{trigger: {trigger}, source: B, dest: DONE}}\n"
        "  - {trigger: go, source: B, dest: DONE, conditions: [exhausted]}\n"
    )
    only(text, f"t.yaml:9: transitions.1.trigger: '{trigger}' is reserved", why)


def test_reserved_guard_name() -> None:
    text = (
        "guards: [state]\n" + BASE + "  - {trigger: go, source: A, dest: B, conditions: [state]}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(text, "t.yaml:1: guards.state: 'state' is reserved")


def test_trigger_named_like_an_action_is_refused() -> None:
    text = (
        "actions: [go]\n" + BASE + "  - {trigger: go, source: A, dest: B, before: [go]}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(text, "t.yaml:1: actions.go:", "both a trigger and a guard or action")


def test_the_machine_really_refuses_what_check_refuses() -> None:
    # The check exists because transitions raises this, with no file or line.
    from transitions import Machine

    with pytest.raises(ValueError, match="model attribute"):
        Machine(
            model=object(),
            states=["A", "B"],
            initial="A",
            transitions=[{"trigger": "state", "source": "A", "dest": "B"}],
        )


# -- duplicate keys ---------------------------------------------------------------------------


def test_state_listed_twice_names_both_lines() -> None:
    text = """\
        name: t
        initial: A
        states:
          A: {}
          DONE: {final: true}
          DONE: {}
        transitions:
          - {trigger: end, source: A, dest: DONE}
        """
    only(text, "t.yaml:6: states.DONE: duplicate key 'DONE' at lines 5 and 6")


def test_second_transitions_section_names_both_lines() -> None:
    text = (
        BASE + "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
        "transitions:\n  - {trigger: end, source: A, dest: DONE}\n"
    )
    only(text, "t.yaml:10: transitions: duplicate key 'transitions' at lines 7 and 10")


def test_duplicate_key_inside_a_row() -> None:
    text = BASE + (
        "  - {trigger: go, source: A, dest: B, dest: DONE}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(text, "t.yaml:8: transitions.0.dest: duplicate key 'dest' at lines 8 and 8")


def test_duplicate_key_deep_in_the_error_table() -> None:
    text = (
        BASE
        + """\
  - {trigger: go, source: A, dest: B}
  - {trigger: end, source: B, dest: DONE}
errors:
  classes:
    net: {action: retry}
    net: {action: fail}
  default: net
"""
    )
    only(text, "t.yaml:13: errors.classes.net: duplicate key 'net' at lines 12 and 13")


# -- graph checks -----------------------------------------------------------------------------


def test_trap_cycle_cannot_reach_a_final_state() -> None:
    text = BASE + (
        "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: back, source: B, dest: A}\n"
        "  - {trigger: end, source: A, dest: DONE, conditions: [exhausted]}\n"
        "  - {trigger: trap, source: A, dest: T}\n"
        "  - {trigger: spin, source: T, dest: T2}\n"
        "  - {trigger: spin, source: T2, dest: T}\n"
    )
    text = text.replace("  DONE: {final: true}\n", "  DONE: {final: true}\n  T: {}\n  T2: {}\n")
    found = problems(text)
    assert [p.split(": ")[1] for p in found] == ["states.T", "states.T2"], found
    assert "t.yaml:7: states.T: state T cannot reach a final state (DONE)" in found[0]


def test_without_final_states_cycles_are_fine() -> None:
    Spec.from_yaml(
        "initial: A\nstates: {A: {}, B: {}}\ntransitions:\n"
        "  - {trigger: go, source: A, dest: B}\n  - {trigger: go, source: B, dest: A}\n"
    )


def test_unguarded_row_shadows_a_guarded_one() -> None:
    text = BASE + (
        "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: go, source: A, dest: DONE, conditions: [exhausted]}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(
        text,
        "t.yaml:9: transitions.1: shadowed: never taken from A, because "
        "transitions.0, line 8 for 'go' comes first and has no guards",
    )


def test_guarded_rows_that_cover_every_case_shadow_the_next() -> None:
    text = BASE + (
        "  - {trigger: go, source: A, dest: B, conditions: [exhausted]}\n"
        "  - {trigger: go, source: A, dest: B, unless: [exhausted]}\n"
        "  - {trigger: go, source: A, dest: DONE, conditions: [retryable]}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(text, "t.yaml:10: transitions.2: shadowed", "between them pass in every case")


def test_guarded_row_before_unguarded_is_fine() -> None:
    Spec.from_yaml(
        BASE + "  - {trigger: go, source: A, dest: DONE, conditions: [exhausted]}\n"
        "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )


# -- the spec language: wildcard, ignore, internal ---------------------------------------------


def test_wildcard_source_is_every_non_final_state() -> None:
    spec = Spec.from_yaml(
        BASE + "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: stop, source: '*', dest: DONE}\n"
    )
    (row,) = [t for t in spec.transitions if t.trigger == "stop"]
    assert row.sources == ("A", "B")
    assert row.wildcard


def test_ignored_event_is_accepted_and_not_a_row() -> None:
    spec = Spec.from_yaml(
        BASE.replace("  B: {}", "  B: {ignore: [go]}") + "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    assert spec.accepts("B", "go")
    assert not spec.rows("B", "go")
    assert not spec.accepts("A", "end")


def test_ignoring_a_trigger_the_state_takes_is_refused() -> None:
    text = BASE.replace("  A: {}", "  A: {ignore: [go]}") + (
        "  - {trigger: go, source: A, dest: B}\n  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(text, "t.yaml:4: states.A.ignore.0: ignores 'go', but transitions.0, line 8 takes it")


def test_internal_transition_stays() -> None:
    spec = Spec.from_yaml(
        BASE + "  - {trigger: poke, source: [A, B], internal: true}\n"
        "  - {trigger: go, source: A, dest: B}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    internal = [t for t in spec.transitions if t.internal]
    assert [(t.sources, t.dest) for t in internal] == [(("A",), "A"), (("B",), "B")]


def test_unknown_guard_suggests_declaring_it() -> None:
    text = (
        BASE + "  - {trigger: go, source: A, dest: B, conditions: [paid]}\n"
        "  - {trigger: end, source: B, dest: DONE}\n"
    )
    only(
        text,
        "t.yaml:8: transitions.0.conditions: unknown guard 'paid'",
        "declare your own under the top-level 'guards'",
    )


# -- the example machines -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["order_control", "grpc_connectivity", "tcp"])
def test_example_checks_and_binds(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries  # type: ignore[import-not-found]

    spec = Spec.from_path(EXAMPLES / f"{name}.yaml")
    registry: Registry = getattr(registries, name)
    assert registry.check(spec) == []


def test_examples_use_their_own_vocabulary() -> None:
    order = Spec.from_path(EXAMPLES / "order_control.yaml")
    assert order.vocabulary.get("guard", "payments_enough").args == ("amount",)  # type: ignore[union-attr]
    assert order.event_args("receive_payment") == ("amount",)
    grpc = Spec.from_path(EXAMPLES / "grpc_connectivity.yaml")
    assert [t.name for t in grpc.states["READY"].timers] == ["idle_timeout"]
    assert grpc.states["READY"].ignore == ("rpc",)
    tcp = Spec.from_path(EXAMPLES / "tcp.yaml")
    assert [t.name for t in tcp.states["TIME_WAIT"].timers] == ["time_wait"]


def test_registry_check_names_file_line_and_the_bad_callable() -> None:
    spec = Spec.from_path(EXAMPLES / "order_control.yaml")
    registry = Registry("mine")

    @registry.guard
    def payments_enough(order: object) -> bool:  # no amount: cannot take the event's data
        return True

    found = registry.check(spec)
    assert any(
        p.startswith(f"{EXAMPLES / 'order_control.yaml'}:12: guards.payments_enough: ")
        and "cannot be called as payments_enough(subject, amount=...)" in p
        for p in found
    ), found
    assert any("action 'record_item' is not bound in registry 'mine'" in p for p in found)


def test_registry_refuses_a_sync_task_and_double_binding() -> None:
    registry = Registry()

    @registry.task
    def dial(subject: object) -> None: ...

    spec = Spec.default()
    assert any(
        "task 'dial' is bound to" in p and "not an async function" in p
        for p in registry.check(spec)
    )
    with pytest.raises(ValueError, match="already bound"):
        registry.bind("task", "dial", dial)


# -- fsm-live check ---------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


BROKEN = {
    "reserved": BASE + "  - {trigger: state, source: A, dest: B}\n"
    "  - {trigger: end, source: B, dest: DONE}\n",
    "duplicate": BASE.replace("  DONE: {final: true}\n", "  DONE: {final: true}\n  DONE: {}\n")
    + "  - {trigger: go, source: A, dest: B}\n  - {trigger: end, source: B, dest: DONE}\n",
    "trap": BASE + "  - {trigger: go, source: A, dest: B}\n"
    "  - {trigger: back, source: B, dest: A}\n"
    "  - {trigger: end, source: A, dest: DONE}\n"
    "  - {trigger: loop, source: A, dest: T}\n"
    "  - {trigger: loop, source: T, dest: T, internal: false}\n",
    "shadowed": BASE + "  - {trigger: go, source: A, dest: B}\n"
    "  - {trigger: go, source: A, dest: DONE, unless: [exhausted]}\n"
    "  - {trigger: end, source: B, dest: DONE}\n",
}
BROKEN["trap"] = BROKEN["trap"].replace(
    "  DONE: {final: true}\n", "  DONE: {final: true}\n  T: {}\n"
)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_cli_check_refuses_each_broken_spec_with_file_and_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(BROKEN[kind])
    code, out, err = run(capsys, "check", path)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert lines, err
    assert all(line.startswith(f"{path}:") for line in lines), err
    assert "Traceback" not in err


def test_cli_check_bind(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    code, out, _ = run(capsys, "check", EXAMPLES / "tcp.yaml", "--bind", "registries:tcp")
    assert code == 0
    assert "bound by registries:tcp" in out
    code, _, err = run(capsys, "check", EXAMPLES / "tcp.yaml", "--bind", "registries:order_control")
    assert code == 1
    assert f"{EXAMPLES / 'tcp.yaml'}:11: timers.time_wait: timer 'time_wait' is not bound" in err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("registries", "expected MODULE:NAME"),
        ("no_such_module_xyz:r", "cannot import no_such_module_xyz: ModuleNotFoundError"),
        ("registries:Order", "registries.Order is a type, not a fsm_live.spec.Registry"),
        (
            "registries:nothing",
            "--bind registries:nothing: module registries has no name 'nothing'",
        ),
    ],
)
def test_cli_check_bad_bind_is_one_line_exit_2(
    target: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    code, out, err = run(capsys, "check", EXAMPLES / "tcp.yaml", "--bind", target)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("fsm-live check: error: --bind ")
    assert message in err


def test_check_needs_no_user_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "registries", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    code, _, _ = run(
        capsys,
        "check",
        *(EXAMPLES / f"{n}.yaml" for n in ("order_control", "grpc_connectivity", "tcp")),
    )
    assert code == 0
    assert "registries" not in sys.modules


# -- fsm-live diagram --trace -------------------------------------------------------------------


def test_diagram_with_trace_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ("DISCONNECTED", "CONNECTING", "start"),
        ("CONNECTING", "CONNECTED", "opened"),
        ("CONNECTED", "RECONNECTING", "lost"),
        ("RECONNECTING", "CONNECTING", "retry"),
        ("CONNECTING", "CONNECTED", "opened"),
    ]
    trace = tmp_path / "T.jsonl"
    trace.write_text(
        "".join(
            json.dumps({"t": i, "from": a, "to": b, "trigger": t, "reason": ""}) + "\n"
            for i, (a, b, t) in enumerate(rows)
        )
        # records of other kinds are skipped
        + '{"t": 2, "kind": "failure", "class": "lost"}\n'
    )
    code, out, err = run(
        capsys,
        "diagram",
        ROOT / "specs" / "connection.yaml",
        "--trace",
        trace,
        "--format",
        "mermaid",
    )
    assert code == 0
    assert err == ""
    assert "CONNECTING --> CONNECTED: opened \u00d72" in out
    assert "DISCONNECTED --> CONNECTING: start \u00d71" in out
    assert "RECONNECTING --> FAILED: give_up [exhausted] \u00d70" in out
    code, out, _ = run(
        capsys,
        "diagram",
        ROOT / "specs" / "connection.yaml",
        "--trace",
        trace,
        trace,
        "--format",
        "dot",
    )
    assert '"CONNECTING" -> "CONNECTED" [label="opened \u00d74", penwidth=5.00]' in out


def test_diagram_bad_trace_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "T.jsonl"
    good = '{"t": 0, "from": "CLOSED", "to": "LISTEN", "trigger": "passive_open", "reason": ""}'
    trace.write_text(f"{good}\nnot json\n")
    code, out, err = run(capsys, "diagram", EXAMPLES / "tcp.yaml", "--trace", trace)
    assert code == 2  # a bad argument
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"fsm-live diagram: error: --trace {trace}:2: not JSON")
    # A row `fsm-live verify` refuses is refused the same way, in the same words.
    trace.write_text('{"from": "CLOSED", "to": "LISTEN", "trigger": "passive_open"}\n')
    code, out, err = run(capsys, "diagram", EXAMPLES / "tcp.yaml", "--trace", trace)
    assert code == 2
    problem = "a transition record needs the keys t, from, to, trigger, reason (missing t, reason)"
    assert err == f"fsm-live diagram: error: --trace {trace}:1: {problem}\n"
    code, _, verified = run(capsys, "verify", EXAMPLES / "tcp.yaml", trace)
    assert problem in verified
    code, _, err = run(capsys, "diagram", EXAMPLES / "tcp.yaml", "--trace", tmp_path / "none")
    assert code == 2
    assert err.startswith(f"fsm-live diagram: error: --trace {tmp_path / 'none'}: cannot read")
    assert err.count("\n") == 1


def test_diagram_warns_past_mermaids_text_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 1200
    states = "".join(
        f"  S{i}: {{description: state number {i} of a long chain}}\n" for i in range(n)
    )
    rows = "".join(
        f"  - {{trigger: step_{i}, source: S{i}, dest: S{i + 1}}}\n" for i in range(n - 1)
    )
    path = tmp_path / "big.yaml"
    path.write_text(
        f"initial: S0\nstates:\n{states}  END: {{final: true}}\ntransitions:\n{rows}"
        f"  - {{trigger: finish, source: '*', dest: END}}\n"
    )
    code, out, err = run(capsys, "diagram", path)
    assert code == 0
    assert len(out) > MERMAID_MAX_TEXT
    assert "over Mermaid's default maxTextSize (50,000)" in err
    assert err.count("\n") == 1
    small = to_mermaid(Spec.default())
    assert len(small) < MERMAID_MAX_TEXT


def test_diagram_shows_ignored_events_and_guards() -> None:
    text = to_mermaid(Spec.from_path(EXAMPLES / "grpc_connectivity.yaml"))
    assert "ignores: rpc" in text
    text = to_mermaid(Spec.from_path(EXAMPLES / "order_control.yaml"))
    assert "receive_payment [payments_enough]" in text
    assert "receive_payment [not payments_enough]" in text


def test_graphviz_timeout_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code = None
    with pytest.raises(SystemExit) as caught:
        main(["diagram", str(EXAMPLES / "tcp.yaml"), "--graphviz-timeout", "-1"])
    code = caught.value.code
    assert code == 2
    assert "--graphviz-timeout" in capsys.readouterr().err


# -- the packaged lifecycle is bound like any spec ----------------------------------------------


def test_packaged_names_have_one_implementation_each() -> None:
    from fsm_live._runtime.engine import ENGINE_TASKS
    from fsm_live.core.lifecycle import BUILT_IN_TIMERS, CORE_TASKS, LIFECYCLE_REGISTRY
    from fsm_live.spec import LIFECYCLE_VOCABULARY

    assert not set(ENGINE_TASKS) & CORE_TASKS
    assert set(ENGINE_TASKS) | CORE_TASKS == LIFECYCLE_VOCABULARY.names("task")
    assert set(BUILT_IN_TIMERS) == LIFECYCLE_VOCABULARY.names("timer")
    assert LIFECYCLE_REGISTRY.names("guard") == LIFECYCLE_VOCABULARY.names("guard")
    assert LIFECYCLE_REGISTRY.check(Spec.default(), kinds=("guard",)) == []


# -- a spec machine runs the registry's guards and actions -----------------------------------------


def test_spec_machine_binds_guards_with_event_args_actions_ignore_and_internal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fsm_live.core.machine import SpecMachine
    from fsm_live.errors import TransitionRefused

    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries

    machine = SpecMachine(
        Spec.from_path(EXAMPLES / "order_control.yaml"), registry=registries.order_control
    )

    class Model:
        """A plain model: a state, and the data the registry's callables read."""

        state = "WAITING_FOR_PAYMENT"

    order = registries.Order()
    model = Model()
    # The registry's callables get the model as subject: hand them the order's fields.
    model.total, model.payments = order.total, order.payments  # type: ignore[attr-defined]
    assert machine.fire(model, "add_to_order", amount=10)  # internal: stays
    assert model.state == "WAITING_FOR_PAYMENT"
    assert model.total == 10  # type: ignore[attr-defined]
    assert machine.fire(model, "receive_payment", amount=4)  # not enough: internal row
    assert model.state == "WAITING_FOR_PAYMENT"
    assert machine.fire(model, "receive_payment", amount=6)  # enough: on to PROCESSING
    assert model.state == "PROCESSING"
    assert model.payments == [4, 6]  # type: ignore[attr-defined]
    with pytest.raises(TransitionRefused):
        machine.fire(model, "add_to_order", amount=1)

    grpc = SpecMachine(Spec.from_path(EXAMPLES / "grpc_connectivity.yaml"))
    model.state = "READY"
    assert grpc.fire(model, "rpc") is False  # ignored in READY: accepted, nothing happens
    assert model.state == "READY"


def test_spec_machine_refuses_a_registry_that_cannot_bind_the_spec() -> None:
    from fsm_live.core.machine import SpecMachine

    with pytest.raises(
        SpecError,
        match=r"order_control.yaml:12: guards.payments_enough: "
        r"guard 'payments_enough' is not bound",
    ):
        SpecMachine(Spec.from_path(EXAMPLES / "order_control.yaml"), registry=Registry("empty"))
