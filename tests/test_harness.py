"""The harness of fsm_live.testing against users' implementations.

Implementations of example machines written with ``transitions`` (and one with
python-statemachine), as a user would write them: plain transition tables.  The
correct ones pass; each bug of issue 12 is planted in a copy and caught, with a
report that starts with the walk (a list of triggers) that shows it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from transitions import Machine

from fsm_live.spec import Spec
from fsm_live.testing import (
    Mismatch,
    StateMachineAdapter,
    Step,
    TransitionsAdapter,
    check_implementation,
    covering_paths,
    run_steps,
)
from fsm_live.testing.harness import expect

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "specs" / "examples"
#: Few, reproducible examples: the default suite stays fast and a planted bug is
#: caught the same way on every run.
QUICK = settings(max_examples=100, deadline=None, database=None, derandomize=True)

Row = dict[str, Any]


def guard(name: str) -> Callable[..., bool]:
    """A guard that reads its value from the event data (the harness's free guards)."""

    def check(**data: Any) -> bool:
        return bool(data[name])

    check.__name__ = name
    return check


def action(name: str) -> Callable[..., None]:
    """A callback named as the spec's action (the adapters log callbacks by name)."""

    def run(**data: Any) -> None:
        return None

    run.__name__ = name
    return run


def factory(
    states: list[Any], rows: list[Row], initial: str, **options: Any
) -> Callable[[], TransitionsAdapter]:
    """A new transitions Machine (its own model) for every walk."""

    def make() -> TransitionsAdapter:
        machine = Machine(
            states=copy.deepcopy(states),
            transitions=copy.deepcopy(rows),
            initial=initial,
            auto_transitions=False,
            **options,
        )
        return TransitionsAdapter(machine)

    return make


# -- the implementations -------------------------------------------------------------------

TRAFFIC_STATES = ["DARK", "RED", "GREEN", "YELLOW", "FLASHING", {"name": "RETIRED", "final": True}]
TRAFFIC: list[Row] = [
    {"trigger": "power_on", "source": "DARK", "dest": "RED"},
    {"trigger": "tick", "source": "RED", "dest": "GREEN"},
    {"trigger": "tick", "source": "GREEN", "dest": "YELLOW"},
    {"trigger": "tick", "source": "YELLOW", "dest": "RED"},
    {"trigger": "fault", "source": ["RED", "GREEN", "YELLOW"], "dest": "FLASHING"},
    {"trigger": "repair", "source": "FLASHING", "dest": "RED", "unless": [guard("exhausted")]},
    {
        "trigger": "repair",
        "source": "FLASHING",
        "dest": "RETIRED",
        "conditions": [guard("exhausted")],
    },
    {"trigger": "power_off", "source": ["RED", "GREEN", "YELLOW", "FLASHING"], "dest": "DARK"},
    {"trigger": "retire", "source": "DARK", "dest": "RETIRED"},
]

ORDER_STATES = [
    "WAITING_FOR_PAYMENT",
    "PROCESSING",
    "SHIPPING",
    {"name": "COMPLETED", "final": True},
]
ORDER: list[Row] = [
    {
        "trigger": "add_to_order",
        "source": "WAITING_FOR_PAYMENT",
        "dest": None,
        "before": [action("record_item")],
    },
    {
        "trigger": "receive_payment",
        "source": "WAITING_FOR_PAYMENT",
        "dest": "PROCESSING",
        "conditions": [guard("payments_enough")],
        "before": [action("record_payment")],
    },
    {
        "trigger": "receive_payment",
        "source": "WAITING_FOR_PAYMENT",
        "dest": None,
        "unless": [guard("payments_enough")],
        "before": [action("record_payment")],
    },
    {"trigger": "process_order", "source": "PROCESSING", "dest": "SHIPPING"},
    {"trigger": "ship_order", "source": "SHIPPING", "dest": "COMPLETED"},
]

GRPC_STATES = [
    "IDLE",
    "CONNECTING",
    "READY",
    "TRANSIENT_FAILURE",
    {"name": "SHUTDOWN", "final": True},
]
GRPC: list[Row] = [
    {"trigger": "rpc", "source": "IDLE", "dest": "CONNECTING"},
    {"trigger": "rpc", "source": "READY", "dest": None},  # ignored: RPCs just flow
    {"trigger": "connected", "source": "CONNECTING", "dest": "READY"},
    {"trigger": "connect_failed", "source": "CONNECTING", "dest": "TRANSIENT_FAILURE"},
    {"trigger": "idle_timeout", "source": "READY", "dest": "IDLE"},
    {"trigger": "goaway", "source": "READY", "dest": "IDLE"},
    {"trigger": "transport_lost", "source": "READY", "dest": "IDLE"},
    {"trigger": "backoff_elapsed", "source": "TRANSIENT_FAILURE", "dest": "CONNECTING"},
    {
        "trigger": "shutdown",
        "source": ["IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE"],
        "dest": "SHUTDOWN",
    },
]

TCP_STATES = [
    "CLOSED",
    "LISTEN",
    "SYN_SENT",
    "SYN_RECEIVED",
    "ESTABLISHED",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "CLOSE_WAIT",
    "CLOSING",
    "LAST_ACK",
    "TIME_WAIT",
    {"name": "DELETED", "final": True},
]
TCP: list[Row] = [
    {"trigger": "close", "source": "CLOSED", "dest": None},  # ignored
    {"trigger": "passive_open", "source": "CLOSED", "dest": "LISTEN"},
    {"trigger": "active_open", "source": "CLOSED", "dest": "SYN_SENT"},
    {"trigger": "rcv_syn", "source": "LISTEN", "dest": "SYN_RECEIVED"},
    {"trigger": "send", "source": "LISTEN", "dest": "SYN_SENT"},
    {"trigger": "close", "source": ["LISTEN", "SYN_SENT"], "dest": "CLOSED"},
    {"trigger": "rcv_syn", "source": "SYN_SENT", "dest": "SYN_RECEIVED"},
    {"trigger": "rcv_syn_ack", "source": "SYN_SENT", "dest": "ESTABLISHED"},
    {"trigger": "rcv_ack_of_syn", "source": "SYN_RECEIVED", "dest": "ESTABLISHED"},
    {"trigger": "rcv_rst", "source": "SYN_RECEIVED", "dest": "LISTEN"},
    {"trigger": "close", "source": ["SYN_RECEIVED", "ESTABLISHED"], "dest": "FIN_WAIT_1"},
    {"trigger": "rcv_fin", "source": "ESTABLISHED", "dest": "CLOSE_WAIT"},
    {"trigger": "rcv_ack_of_fin", "source": "FIN_WAIT_1", "dest": "FIN_WAIT_2"},
    {"trigger": "rcv_fin", "source": "FIN_WAIT_1", "dest": "CLOSING"},
    {"trigger": "rcv_fin", "source": "FIN_WAIT_2", "dest": "TIME_WAIT"},
    {"trigger": "close", "source": "CLOSE_WAIT", "dest": "LAST_ACK"},
    {"trigger": "rcv_ack_of_fin", "source": "CLOSING", "dest": "TIME_WAIT"},
    {"trigger": "rcv_ack_of_fin", "source": "LAST_ACK", "dest": "CLOSED"},
    {"trigger": "timeout", "source": ["SYN_SENT", "SYN_RECEIVED", "ESTABLISHED"], "dest": "CLOSED"},
    {"trigger": "timeout", "source": "TIME_WAIT", "dest": "CLOSED"},
    {"trigger": "delete_tcb", "source": "CLOSED", "dest": "DELETED"},
]

MACHINES: dict[str, tuple[list[Any], list[Row], str]] = {
    "traffic_light": (TRAFFIC_STATES, TRAFFIC, "DARK"),
    "order_control": (ORDER_STATES, ORDER, "WAITING_FOR_PAYMENT"),
    "grpc_connectivity": (GRPC_STATES, GRPC, "IDLE"),
    "tcp": (TCP_STATES, TCP, "CLOSED"),
}


def spec_of(name: str) -> Spec:
    return Spec.from_path(EXAMPLES / f"{name}.yaml")


def planted(name: str, change: Callable[[list[Row]], None], **options: Any) -> str:
    """The harness's report on ``name``'s implementation after ``change``."""
    states, rows, initial = MACHINES[name]
    rows = copy.deepcopy(rows)
    change(rows)
    with pytest.raises(Mismatch) as caught:
        check_implementation(
            spec_of(name), factory(states, rows, initial, **options), settings=QUICK
        )
    return str(caught.value)


def row(rows: list[Row], trigger: str, source: str) -> Row:
    return next(
        r
        for r in rows
        if r["trigger"] == trigger
        and source in ([r["source"]] if isinstance(r["source"], str) else r["source"])
    )


# -- the correct implementations pass ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_correct_implementation_passes(name: str) -> None:
    states, rows, initial = MACHINES[name]
    check_implementation(spec_of(name), factory(states, rows, initial), settings=QUICK)


# -- every planted bug is caught -----------------------------------------------------------------


def test_wrong_destination_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        row(rows, "rcv_fin", "FIN_WAIT_2")["dest"] = "CLOSED"

    report = planted("tcp", bug)
    assert "the spec takes transitions.13 (FIN_WAIT_2 -> TIME_WAIT) for rcv_fin, at " in report
    assert report.endswith(f"{EXAMPLES / 'tcp.yaml'}:63; the implementation is in CLOSED")
    # Shrunk: the shortest way into FIN_WAIT_2, then the step.
    assert report.startswith(
        (
            "after [active_open, rcv_syn_ack, close, rcv_ack_of_fin]: ",
            "after [passive_open, rcv_syn, close, rcv_ack_of_fin]: ",
        )
    ), report


def test_swapped_guards_are_caught() -> None:
    def bug(rows: list[Row]) -> None:
        first, second = rows[1], rows[2]
        first["conditions"], second["unless"] = [], [guard("payments_enough")]
        first["unless"], second["conditions"] = [guard("payments_enough")], []
        del second["unless"]
        second["conditions"] = [guard("payments_enough")]
        first.pop("conditions")

    report = planted("order_control", bug)
    assert "for receive_payment(amount=0, payments_enough=" in report


def test_dropped_guard_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        del row(rows, "repair", "FLASHING")["unless"]  # the first repair row now always wins

    report = planted("traffic_light", bug)
    assert "repair(exhausted=True)" in report
    assert "(FLASHING -> RETIRED [exhausted])" in report
    assert "the implementation is in RED" in report


def test_silently_ignored_trigger_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        row(rows, "goaway", "READY")["dest"] = None  # accepted, does nothing

    report = planted("grpc_connectivity", bug)
    assert "(READY -> IDLE) for goaway, at " in report
    assert report.endswith("grpc_connectivity.yaml:39; the implementation is in READY")


def test_refused_trigger_accepted_silently_is_caught() -> None:
    report = planted("tcp", lambda rows: None, ignore_invalid_triggers=True)
    assert "the spec refuses" in report
    assert "the implementation accepted it" in report


def test_state_changed_behind_the_machines_back_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        def sneak(event_model: Any = None, **data: Any) -> None:
            raise AssertionError  # replaced below

        row(rows, "rcv_fin", "ESTABLISHED")["after"] = "sneak"

    states, rows, initial = MACHINES["tcp"]
    rows = copy.deepcopy(rows)
    bug(rows)

    class Tcb:
        state: str

        def sneak(self, **data: Any) -> None:
            self.state = "LAST_ACK"  # not through a transition

    def make() -> TransitionsAdapter:
        model = Tcb()
        machine = Machine(
            model=model,
            states=copy.deepcopy(states),
            transitions=rows,
            initial=initial,
            auto_transitions=False,
        )
        return TransitionsAdapter(machine, model)

    with pytest.raises(Mismatch) as caught:
        check_implementation(spec_of("tcp"), make, settings=QUICK)
    assert "(ESTABLISHED -> CLOSE_WAIT) for rcv_fin, at " in str(caught.value)
    assert str(caught.value).endswith("; the implementation is in LAST_ACK")


def test_extra_edge_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        rows.append({"trigger": "connected", "source": "IDLE", "dest": "READY"})

    report = planted("grpc_connectivity", bug)
    assert report == (
        "after []: the spec refuses connected in IDLE (no row leaves it on that trigger; "
        f"states.IDLE, at {EXAMPLES / 'grpc_connectivity.yaml'}:16); the implementation "
        "accepted it and is in READY"
    )


def test_missing_edge_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        rows.remove(row(rows, "rcv_rst", "SYN_RECEIVED"))

    report = planted("tcp", bug)
    assert "the implementation refused rcv_rst in SYN_RECEIVED" in report
    # The report reads as a list of triggers, shrunk to the shortest walk: into
    # SYN_RECEIVED, then the missing edge.
    assert report.startswith(
        ("after [passive_open, rcv_syn]: ", "after [active_open, rcv_syn]: ")
    ), report


def test_non_absorbing_final_state_is_caught() -> None:
    def bug(rows: list[Row]) -> None:
        # The wildcard transitions users write first: '*' includes the final state.
        row(rows, "shutdown", "IDLE")["source"] = "*"

    report = planted("grpc_connectivity", bug)
    assert "the spec refuses shutdown in SHUTDOWN (a final state absorbs every trigger; " in report


# -- the harness itself ----------------------------------------------------------------------------


def test_spec_whose_only_state_is_final() -> None:
    spec = Spec.from_yaml("initial: DONE\nstates: {DONE: {final: true}}\ntransitions: []\n")
    check_implementation(
        spec, factory([{"name": "DONE", "final": True}], [], "DONE"), settings=QUICK
    )


def test_wrong_initial_state() -> None:
    states, rows, _ = MACHINES["tcp"]
    with pytest.raises(Mismatch, match="the spec starts in CLOSED; the implementation is in"):
        run_steps(spec_of("tcp"), factory(states, rows, "LISTEN")(), [])


def test_guard_oracle_with_event_arguments() -> None:
    # The order's real guard: payments so far plus this one cover the total.
    spec = spec_of("order_control")

    class Order:
        state: str

        def __init__(self) -> None:
            self.total, self.paid = 0, 0

        def enough(self, amount: int = 0, **data: Any) -> bool:
            return self.paid + amount >= self.total

        def record_item(self, amount: int = 0, **data: Any) -> None:
            self.total += amount

        def record_payment(self, amount: int = 0, **data: Any) -> None:
            self.paid += amount

    rows = [
        {
            "trigger": "add_to_order",
            "source": "WAITING_FOR_PAYMENT",
            "dest": None,
            "before": "record_item",
        },
        {
            "trigger": "receive_payment",
            "source": "WAITING_FOR_PAYMENT",
            "dest": "PROCESSING",
            "conditions": "enough",
            "before": "record_payment",
        },
        {
            "trigger": "receive_payment",
            "source": "WAITING_FOR_PAYMENT",
            "dest": None,
            "unless": "enough",
            "before": "record_payment",
        },
        *ORDER[3:],
    ]
    # With an oracle for the guard, the harness steps through known totals.
    steps = [Step("add_to_order", {"amount": 5}), Step("receive_payment", {"amount": 2})]
    model = Order()
    machine = Machine(
        model=model,
        states=ORDER_STATES,
        transitions=rows,
        initial="WAITING_FOR_PAYMENT",
        auto_transitions=False,
    )
    visited = run_steps(
        spec,
        TransitionsAdapter(machine, model),
        steps,
        guards={"payments_enough": lambda amount: amount >= 5},
    )
    assert visited == ["WAITING_FOR_PAYMENT"] * 3


# -- python-statemachine -------------------------------------------------------------------------


def test_python_statemachine_order_control() -> None:
    statemachine = pytest.importorskip("statemachine")
    State = statemachine.State

    class OrderControl(statemachine.StateMachine):  # type: ignore[misc]
        waiting_for_payment = State(initial=True)
        processing = State()
        shipping = State()
        completed = State(final=True)

        add_to_order = waiting_for_payment.to.itself(internal=True, before="record_item")
        receive_payment = waiting_for_payment.to(
            processing, cond="payments_enough", before="record_payment"
        ) | waiting_for_payment.to.itself(
            internal=True, unless="payments_enough", before="record_payment"
        )
        process_order = processing.to(shipping)
        ship_order = shipping.to(completed)

        def payments_enough(self, payments_enough: bool = False, **data: Any) -> bool:
            return payments_enough

        def record_item(self, amount: int = 0) -> None: ...

        def record_payment(self, amount: int = 0) -> None: ...

    spec = spec_of("order_control")
    check_implementation(
        spec, lambda: StateMachineAdapter(OrderControl(), spec_states=spec.states), settings=QUICK
    )

    class Broken(OrderControl):  # type: ignore[misc]
        def payments_enough(self, payments_enough: bool = False, **data: Any) -> bool:
            return not payments_enough  # swapped

    with pytest.raises(Mismatch, match="receive_payment"):
        check_implementation(
            spec, lambda: StateMachineAdapter(Broken(), spec_states=spec.states), settings=QUICK
        )


# -- covering paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*sorted(MACHINES), "connection"])
def test_covering_paths_take_every_edge(name: str) -> None:
    spec = Spec.default() if name == "connection" else spec_of(name)
    paths = covering_paths(spec)
    assert paths.unreachable == ()
    taken = {(source, id(row)) for path in paths for source, row in path.edges}
    assert taken == {(source, id(row)) for source, row in spec.edges()}
    for path in paths:
        assert path.states[0] == spec.initial
        assert len(path.states) == len(path.steps) + 1 == len(path.outcomes) + 1
        state, edges = spec.initial, iter(path.edges)
        for step, outcome, after in zip(path.steps, path.outcomes, path.states[1:], strict=True):
            expected = expect(spec, state, step)
            assert expected.outcome == outcome  # the guard values pick it
            if outcome == "taken":
                assert (state, expected.row) == next(edges)
            assert expected.dest == after
            state = after
        assert next(edges, None) is None
    assert covering_paths(spec) == paths  # deterministic


@pytest.mark.parametrize("name", [*sorted(MACHINES), "connection"])
def test_covering_paths_probe_every_refusal_ignore_and_blocking_guard(name: str) -> None:
    spec = Spec.default() if name == "connection" else spec_of(name)
    probed = {
        (state, step.trigger, outcome)
        for path in covering_paths(spec)
        for state, step, outcome in zip(path.states, path.steps, path.outcomes, strict=False)
        if outcome != "taken"
    }
    for state in spec.states:
        for trigger in spec.triggers:
            rows = spec.rows(state, trigger)
            if trigger in spec.states[state].ignore:
                assert (state, trigger, "ignored") in probed
            elif not rows:
                assert (state, trigger, "refused") in probed
    assert covering_paths(spec, probes=False) == covering_paths(spec, probes=False)
    assert all(set(path.outcomes) == {"taken"} for path in covering_paths(spec, probes=False))


def test_covering_paths_probe_a_guard_that_blocks_with_no_other_row() -> None:
    spec = Spec.from_yaml(
        "initial: A\nguards: {ready: {args: [level]}}\n"
        "states: {A: {}, B: {final: true}}\n"
        "transitions:\n  - {trigger: go, source: A, dest: B, conditions: [ready]}\n"
    )
    (path,) = covering_paths(spec, guards={"ready": lambda level: level >= 3})
    assert [(repr(s), o) for s, o in zip(path.steps, path.outcomes, strict=True)] == [
        ("go(level=0)", "blocked"),
        ("go(level=3)", "taken"),
        ("go(level=0)", "refused"),
    ]
    assert path.states == ("A", "A", "B", "B")


def test_covering_paths_fill_in_declared_arguments_from_guard_oracles() -> None:
    spec = spec_of("order_control")
    oracle = {"payments_enough": lambda amount: amount >= 5}
    steps = [
        repr(step)
        for path in covering_paths(spec, guards=oracle, args={"amount": [1, 5]})
        for step in path.steps
        if step.trigger in {"receive_payment", "add_to_order"}
    ]
    assert "receive_payment(amount=5)" in steps  # enough: on to PROCESSING
    assert "receive_payment(amount=1)" in steps  # not enough: stays
    assert not any("payments_enough=" in step for step in steps)
    assert "add_to_order(amount=1)" in steps  # actions' arguments are filled in too

    # Those steps drive an implementation whose guard reads the argument.
    def enough(amount: int = 0, **data: Any) -> bool:
        return amount >= 5

    rows = copy.deepcopy(ORDER)
    rows[1]["conditions"], rows[2]["unless"] = [enough], [enough]
    make = factory(ORDER_STATES, rows, "WAITING_FOR_PAYMENT")
    for path in covering_paths(spec, guards=oracle, args={"amount": [1, 5]}):
        assert run_steps(spec, make(), path.steps, oracle) == list(path.states)


def test_run_steps_names_a_missing_argument_in_one_line() -> None:
    from fsm_live.testing.harness import MissingEventData

    states, rows, initial = MACHINES["order_control"]
    with pytest.raises(MissingEventData) as caught:
        run_steps(
            spec_of("order_control"),
            factory(states, rows, initial)(),
            [Step("receive_payment", {"payments_enough": True})],
            guards={"payments_enough": lambda amount: amount >= 5},
        )
    assert str(caught.value) == (
        "step receive_payment(payments_enough=True) has no value for 'amount', which "
        "guard 'payments_enough' takes (covering_paths(spec, guards=...) fills it in)"
    )


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_covering_paths_drive_the_implementations(name: str) -> None:
    states, rows, initial = MACHINES[name]
    spec = spec_of(name)
    for path in covering_paths(spec):
        assert run_steps(spec, factory(states, rows, initial)(), path.steps) == list(path.states)


def test_covering_paths_find_a_missing_edge() -> None:
    states, rows, initial = MACHINES["traffic_light"]
    rows = [r for r in rows if r["trigger"] != "retire"]
    spec = spec_of("traffic_light")
    failures = []
    for path in covering_paths(spec):
        try:
            run_steps(spec, factory(states, rows, initial)(), path.steps)
        except Mismatch as exc:
            failures.append(str(exc))
    assert len(failures) == 1
    assert "the implementation refused retire in DARK" in failures[0]


def test_covering_paths_of_a_spec_without_edges() -> None:
    spec = Spec.from_yaml("initial: DONE\nstates: {DONE: {final: true}}\ntransitions: []\n")
    assert len(covering_paths(spec)) == 0


def test_covering_path_ids_read_as_triggers() -> None:
    (first, *_) = covering_paths(spec_of("order_control"))
    assert str(first) == "add_to_order-receive_payment-process_order-ship_order"
    taken = [
        step
        for step, outcome in zip(first.steps, first.outcomes, strict=True)
        if outcome == "taken"
    ]
    assert repr(taken[1]) == "receive_payment(amount=0, payments_enough=True)"


def test_spec_state_machine_on_a_spec_whose_only_state_is_final() -> None:
    from hypothesis.stateful import run_state_machine_as_test

    from fsm_live.testing import spec_state_machine

    spec = Spec.from_yaml("initial: DONE\nstates: {DONE: {final: true}}\ntransitions: []\n")
    run_state_machine_as_test(
        spec_state_machine(spec), settings=settings(max_examples=10, deadline=None, database=None)
    )


def test_covering_paths_take_a_path_too() -> None:
    by_path = covering_paths(EXAMPLES / "tcp.yaml")
    by_spec = covering_paths(Spec.from_path(EXAMPLES / "tcp.yaml"))
    assert [path.steps for path in by_path] == [path.steps for path in by_spec]


def test_several_failures_are_one_trimmed_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis reports several distinct failures as an ExceptionGroup (its default
    report_multiple_bugs=True): the harness raises the shortest one, alone."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import planted

    # Two bugs the covering paths do not reach (they depend on the coins' values).
    bugs = frozenset({"a guard with the wrong boundary", "a duplicated side effect"})
    loud = settings(max_examples=300, deadline=None, database=None, report_multiple_bugs=True)
    with pytest.raises(Mismatch) as caught:
        check_implementation(
            planted.SPEC,
            planted.plain(bugs),
            registry=planted.REGISTRY,
            model=planted.KioskData,
            observe=lambda k: (k.paid, k.dispensed, k.light),
            settings=loud,
        )
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert caught.value.__cause__ is None
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("after [coin(")


def test_an_implementation_whose_guards_read_its_own_data_passes_with_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry's guard runs on the implementation's own object: no drawn value to read."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import registries  # type: ignore[import-not-found]

    class Order(registries.Order):  # type: ignore[misc]
        state: str

        def enough(self, amount: int = 0) -> bool:
            return bool(sum(self.payments) + amount >= self.total)

        def record_item(self, amount: int = 0) -> None:
            self.total += amount

        def record_payment(self, amount: int = 0) -> None:
            self.payments.append(amount)

    rows = copy.deepcopy(ORDER)
    for entry in rows[:3]:
        entry["before"] = "record_item" if entry["trigger"] == "add_to_order" else "record_payment"
    rows[1]["conditions"], rows[2]["unless"] = "enough", "enough"

    def make() -> TransitionsAdapter:
        order = Order()
        machine = Machine(
            model=order,
            states=ORDER_STATES,
            transitions=rows,
            initial="WAITING_FOR_PAYMENT",
            auto_transitions=False,
        )
        return TransitionsAdapter(machine, order)

    spec = spec_of("order_control")
    check_implementation(spec, make, registry=registries.order_control, settings=QUICK)
    with pytest.raises(Mismatch, match=r"payments_enough"):
        check_implementation(spec, make, settings=QUICK)  # free guards: it ignores them


def test_a_model_needs_the_registry() -> None:
    states, rows, initial = MACHINES["tcp"]
    with pytest.raises(TypeError, match="pass registry= too"):
        check_implementation(spec_of("tcp"), factory(states, rows, initial), model=object)
