"""Property tests of *your* implementation of a spec: the spec is the oracle.

:func:`check_implementation` drives an implementation (through a small
:class:`Adapter`: fire a trigger with event data, read the state) and the spec
side by side with Hypothesis-generated walks, and checks after every step:

* the implementation is in the state the spec says;
* where the spec refuses the trigger (no row from this state, not ignored;
  final states refuse everything), the implementation refuses it too and
  nothing changed;
* where the spec has rows, the first row whose guards pass is the one taken
  (the implementation ends in that row's destination; an internal row stays),
  and where no row's guards pass, the implementation accepts the trigger and
  stays;
* where the state ignores the trigger, the implementation accepts it and
  nothing changed;
* final states absorb (they refuse every trigger).

Guards.  A guard the caller gives an oracle for (``guards={"payments_enough":
func}``) is evaluated as ``func(**args)`` with the arguments the spec declares
for it, taken from the event data.  Every other guard is *free*: the harness
draws its value and passes it in the event data under the guard's own name
(``give_up(exhausted=True)``), so the implementation's guard must read it from
there.  Declared arguments are drawn from ``args`` strategies (default: small
integers).

A walk is a list of :class:`Step`; a failure raises :class:`Mismatch`, whose
message starts with the triggers that led there, and Hypothesis shrinks the
walk, so a report reads::

    Mismatch: after [start, opened, lost]: the spec refuses 'opened' in
    RECONNECTING; the implementation accepted it and is in CONNECTED

Walks favour triggers the current state accepts (three times in four; the
fourth, one it refuses), so deep states are reached in few examples.  A spec
without triggers (a single final state, say) is checked for its initial state
only.

Adapters for ``transitions`` and python-statemachine are in
:mod:`fsm_live.testing.adapters`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fsm_live.errors import FsmLiveError
from fsm_live.spec import Spec, TransitionSpec

__all__ = (
    "Adapter",
    "Expected",
    "Mismatch",
    "MissingEventData",
    "Step",
    "check_implementation",
    "expect",
    "run_steps",
    "walks",
)

#: Three draws in four pick a trigger the state accepts, the fourth one it refuses.
_MOSTLY_ACCEPTED = st.sampled_from((True, True, True, False))
#: A guard's reference definition: called with its declared arguments by keyword.
GuardOracle = Callable[..., bool]


class Adapter(Protocol):
    """An implementation under test, as the harness sees it."""

    def fire(self, trigger: str, data: Mapping[str, Any]) -> bool:
        """Fire ``trigger`` with ``data`` (keyword event data).

        Returns True if the implementation accepted it (whether or not its state
        changed), False if it refused it (raised its "not allowed here" error).
        """
        ...

    def state(self) -> str:
        """The implementation's current state, by its spec name."""
        ...


@attrs.frozen
class Step:
    """One trigger of a walk, with its event data; reads as ``give_up(exhausted=True)``."""

    trigger: str
    data: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    def __repr__(self) -> str:
        if not self.data:
            return self.trigger
        args = ", ".join(f"{key}={value!r}" for key, value in self.data.items())
        return f"{self.trigger}({args})"


@attrs.frozen
class Expected:
    """What the spec says a step does from a state.

    ``outcome``: ``taken`` (``row`` is taken, to ``dest``), ``blocked`` (rows
    exist but no row's guards pass: accepted, no change), ``ignored`` (the state
    ignores the trigger) or ``refused``.  ``guards`` are the guard values used.
    """

    outcome: Literal["taken", "blocked", "ignored", "refused"]
    dest: str
    row: TransitionSpec | None = None
    guards: Mapping[str, bool] = attrs.field(factory=dict, hash=False)


class Mismatch(FsmLiveError, AssertionError):
    """The implementation and the spec disagree; the message names the walk so far.

    An ``AssertionError``, so test runners report it as a failed check."""


class MissingEventData(FsmLiveError, KeyError):
    """A step lacks a value the spec needs to say what it does: a free guard's
    value, or an argument a guard oracle takes.  The message is one line."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else ""


def expect(
    spec: Spec, state: str, step: Step, guards: Mapping[str, GuardOracle] | None = None
) -> Expected:
    """The spec's answer to ``step`` in ``state`` (rows in table order, first passing wins).

    Raises :class:`MissingEventData` naming a free guard's value or a guard
    oracle's argument missing from the step's data.
    """
    if step.trigger in spec.states[state].ignore:
        return Expected("ignored", state)
    rows = spec.rows(state, step.trigger)
    if not rows:
        return Expected("refused", state)
    values: dict[str, bool] = {}
    for row in rows:
        for name in row.guards:
            if name not in values:
                values[name] = _guard_value(spec, name, step, guards or {})
        if all(values[c] for c in row.conditions) and not any(values[u] for u in row.unless):
            return Expected("taken", row.dest, row, values)
    return Expected("blocked", state, None, values)


def _guard_value(spec: Spec, name: str, step: Step, guards: Mapping[str, GuardOracle]) -> bool:
    oracle = guards.get(name)
    if oracle is None:
        if name not in step.data:
            raise MissingEventData(
                f"step {step!r} has no value for the free guard {name!r} (give it in the "
                f"step's data, or an oracle in guards=...)"
            )
        return bool(step.data[name])
    declaration = spec.known.get("guard", name)
    args = declaration.args if declaration is not None else ()
    missing = [arg for arg in args if arg not in step.data]
    if missing:
        raise MissingEventData(
            f"step {step!r} has no value for {missing[0]!r}, which guard {name!r} takes "
            f"(covering_paths(spec, guards=...) fills it in)"
        )
    return bool(oracle(**{arg: step.data[arg] for arg in args}))


def run_steps(
    spec: Spec,
    adapter: Adapter,
    steps: Sequence[Step],
    guards: Mapping[str, GuardOracle] | None = None,
) -> list[str]:
    """Fire ``steps`` on ``adapter``, checking each against the spec; the states visited.

    Raises :class:`Mismatch` at the first disagreement (see the module docstring).
    """
    done: list[Step] = []

    def fail(message: str) -> Mismatch:
        return Mismatch(f"after {list(done)!r}: {message}")

    state = adapter.state()
    if state != spec.initial:
        raise fail(f"the spec starts in {spec.initial}; the implementation is in {state}")
    visited = [state]
    for step in steps:
        expected = expect(spec, state, step, guards)
        accepted = adapter.fire(step.trigger, step.data)
        now = adapter.state()
        trigger = repr(step)
        if expected.outcome == "refused":
            why = (
                "a final state absorbs every trigger"
                if spec.states[state].final
                else "no row leaves it on that trigger"
            )
            if accepted:
                raise fail(
                    f"the spec refuses {trigger} in {state} ({why}); the implementation "
                    f"accepted it and is in {now}"
                )
            if now != state:
                raise fail(
                    f"the implementation refused {trigger} in {state} but its state "
                    f"changed to {now}"
                )
        elif not accepted:
            raise fail(
                f"the implementation refused {trigger} in {state}; the spec "
                f"{_describe(expected, state, trigger)}"
            )
        elif now != expected.dest:
            raise fail(
                f"the spec {_describe(expected, state, trigger)}; the implementation is in {now}"
            )
        done.append(step)
        state = now
        visited.append(state)
    return visited


def _describe(expected: Expected, state: str, trigger: str) -> str:
    values = ", ".join(f"{name}={value}" for name, value in expected.guards.items())
    with_guards = f" with {values}" if values else ""
    if expected.outcome == "ignored":
        return f"ignores {trigger} in {state} (nothing changes)"
    if expected.outcome == "blocked":
        return f"takes no row for {trigger} from {state}{with_guards} (nothing changes)"
    row = expected.row
    assert row is not None
    where = row.item if row.line is None else f"{row.item}, line {row.line}"
    return f"takes {where} ({state} -> {row.dest}{row.guard_label}) for {trigger}{with_guards}"


def _event_data(
    spec: Spec,
    trigger: str,
    guards: Mapping[str, GuardOracle],
    args: Mapping[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """Values for a trigger's free guards (booleans) and declared arguments."""
    free = sorted(
        {g for t in spec.transitions if t.trigger == trigger for g in t.guards if g not in guards}
    )
    declared = spec.event_args(trigger)
    fields: dict[str, st.SearchStrategy[Any]] = dict.fromkeys(free, st.booleans())
    for name in declared:
        fields[name] = args.get(name, st.integers(min_value=0, max_value=5))
    return st.fixed_dictionaries(fields)


def walks(
    spec: Spec,
    *,
    guards: Mapping[str, GuardOracle] | None = None,
    args: Mapping[str, st.SearchStrategy[Any]] | None = None,
    max_steps: int = 25,
) -> st.SearchStrategy[list[Step]]:
    """Walks of up to ``max_steps`` steps from the spec's initial state.

    Each step's trigger is, three times in four, one the current state (by the
    spec) accepts, else one it refuses; free guards and declared
    arguments are drawn as the module docstring says.  A walk ends one step
    after reaching a final state.
    """
    guards = guards or {}
    args = args or {}
    triggers = spec.triggers
    data = {trigger: _event_data(spec, trigger, guards, args) for trigger in triggers}

    @st.composite
    def draw_walk(draw: st.DrawFn) -> list[Step]:
        steps: list[Step] = []
        if not triggers:
            return steps
        state = spec.initial
        for _ in range(draw(st.integers(min_value=0, max_value=max_steps))):
            accepted = [t for t in triggers if spec.accepts(state, t)]
            refused = [t for t in triggers if t not in accepted]
            pool = accepted if accepted and (not refused or draw(_MOSTLY_ACCEPTED)) else refused
            trigger = draw(st.sampled_from(pool))
            step = Step(trigger, draw(data[trigger]))
            steps.append(step)
            if spec.states[state].final:
                break  # one refusal shows it absorbs; more would only repeat it
            state = expect(spec, state, step, guards).dest
        return steps

    return draw_walk()


def check_implementation(
    spec: Spec | str,
    make: Callable[[], Adapter],
    *,
    guards: Mapping[str, GuardOracle] | None = None,
    args: Mapping[str, st.SearchStrategy[Any]] | None = None,
    max_steps: int = 25,
    settings: hypothesis_settings | None = None,
) -> None:
    """Check an implementation against ``spec`` (a :class:`Spec` or a path) with Hypothesis.

    ``make`` returns a fresh :class:`Adapter` around a new instance of the
    implementation, in its initial state, for every walk.  ``guards``, ``args``
    and ``max_steps`` are described in :func:`walks`; ``settings`` defaults to
    100 examples, no deadline and no example database.  Raises :class:`Mismatch`
    (after shrinking) when the implementation and the spec disagree.
    """
    spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
    settings = settings or hypothesis_settings(max_examples=100, deadline=None, database=None)

    failing: list[list[Step]] = []

    @settings
    @given(walks(spec, guards=guards, args=args, max_steps=max_steps))
    def walk(steps: list[Step]) -> None:
        try:
            run_steps(spec, make(), steps, guards)
        except Mismatch:
            failing.append(steps)
            raise

    try:
        walk()
    except Mismatch:
        # Hypothesis ran the shrunk walk last; drop the steps it could not (a
        # walk's steps depend on the states before them, which shrinking keeps).
        steps = _without_needless_steps(spec, make, failing[-1], guards)
        run_steps(spec, make(), steps, guards)
        raise  # pragma: no cover - run_steps raised the shorter report


def _without_needless_steps(
    spec: Spec,
    make: Callable[[], Adapter],
    steps: list[Step],
    guards: Mapping[str, GuardOracle] | None,
) -> list[Step]:
    """A failing walk with each step removed whose removal keeps it failing."""

    def fails(candidate: list[Step]) -> bool:
        try:
            run_steps(spec, make(), candidate, guards)
        except Mismatch:
            return True
        except MissingEventData:  # a free guard lost its value with the step that drew it
            return False
        return False

    i = 0
    while i < len(steps):
        candidate = steps[:i] + steps[i + 1 :]
        if fails(candidate):
            steps = candidate
        else:
            i += 1
    return steps
