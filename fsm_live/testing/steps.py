"""The steps of a walk and what the spec says each does: the harness's oracle.

A :class:`Step` fires a trigger with event data, or lets a timer expire;
:func:`expect` says what the spec does with it from a state (:class:`Expected`),
valuing each guard by an oracle of ``guards``, a registry's guard on the
implementation's object, or (a *free* guard) the step's own data.  The errors a
walk can end with are here too: :class:`Mismatch` (the implementation and the
spec disagree), :class:`MissingEventData` and :class:`TimerNotArmed` (the walk
itself lacks something).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from fsm_live.errors import FsmLiveError
from fsm_live.spec import Registry, Spec, TransitionSpec

__all__ = (
    "Expected",
    "GuardOracle",
    "Mismatch",
    "MissingEventData",
    "Oracles",
    "Step",
    "TimerNotArmed",
    "expect",
    "expect_step",
)

#: A guard's reference definition: called with its declared arguments by keyword.
GuardOracle = Callable[..., bool]


@attrs.frozen
class Step:
    """One step of a walk: a trigger with its event data, read as
    ``give_up(exhausted=True)``; or, with ``elapse``, the timer named ``trigger``
    left to expire, read as ``idle_timeout elapses``."""

    trigger: str
    data: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    elapse: bool = False

    def __repr__(self) -> str:
        if self.elapse:
            return f"{self.trigger} elapses"
        if not self.data:
            return self.trigger
        args = ", ".join(f"{key}={value!r}" for key, value in self.data.items())
        return f"{self.trigger}({args})"


@attrs.frozen
class Expected:
    """What the spec says a step does from a state.

    ``outcome``: ``taken`` (``row`` is taken, to ``dest``), ``blocked`` (rows
    exist but no row's guards pass: accepted, no change), ``ignored`` (the state
    ignores the trigger) or ``refused``.  ``guards`` are the guard values used;
    ``trigger`` the trigger that decided (a timer's: the one it fired).
    """

    outcome: Literal["taken", "blocked", "ignored", "refused"]
    dest: str
    row: TransitionSpec | None = None
    guards: Mapping[str, bool] = attrs.field(factory=dict, hash=False)
    trigger: str = ""


class Mismatch(FsmLiveError, AssertionError):
    """The implementation and the spec disagree; the message names the walk so far,
    and the spec's file, row and line.  ``walk`` holds the steps, the failing one
    last.

    An ``AssertionError``, so test runners report it as a failed check."""

    def __init__(self, message: str, walk: Sequence[Step] = ()) -> None:
        super().__init__(message)
        self.walk = tuple(walk)


class MissingEventData(FsmLiveError, KeyError):
    """A step lacks a value the spec needs to say what it does: a free guard's
    value, or an argument a guard oracle takes.  The message is one line."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else ""


class TimerNotArmed(FsmLiveError, ValueError):
    """A step lets a timer expire that the spec has not armed in the state the walk
    is in (its state has no such timer, or it expired already)."""


@attrs.frozen
class Oracles:
    """How each guard's value is found: an oracle of ``guards``, the registry's guard
    on the subject, or (free) the step's data."""

    spec: Spec
    guards: Mapping[str, GuardOracle] = attrs.field(factory=dict, hash=False)
    registry: Registry | None = None

    def on_subject(self, name: str) -> bool:
        return (
            name not in self.guards
            and self.registry is not None
            and ("guard", name) in self.registry
        )

    def free(self, name: str) -> bool:
        return name not in self.guards and not self.on_subject(name)

    def value(self, name: str, step: Step, subject: Any) -> bool:
        declaration = self.spec.known.get("guard", name)
        args = declaration.args if declaration is not None else ()
        if self.free(name):
            if name not in step.data:
                raise MissingEventData(
                    f"step {step!r} has no value for the free guard {name!r} (give it in "
                    f"the step's data, or an oracle in guards=...)"
                )
            return bool(step.data[name])
        missing = [arg for arg in args if arg not in step.data]
        if missing and not step.elapse:
            raise MissingEventData(
                f"step {step!r} has no value for {missing[0]!r}, which guard {name!r} takes "
                f"(covering_paths(spec, guards=...) fills it in)"
            )
        values = {arg: step.data.get(arg) for arg in args}
        if name in self.guards:
            return bool(self.guards[name](**values))
        assert self.registry is not None
        return bool(self.registry.lookup("guard", name)(subject, **values))


def expect(
    spec: Spec,
    state: str,
    step: Step,
    guards: Mapping[str, GuardOracle] | None = None,
    *,
    registry: Registry | None = None,
    subject: Any = None,
) -> Expected:
    """The spec's answer to ``step`` in ``state`` (rows in table order, first passing wins).

    Guards are valued as the module docstring says (``registry`` guards on
    ``subject``).  A timer's expiry (``step.elapse``) fires the timer's triggers
    in order until one takes a row.  Raises :class:`MissingEventData` naming a
    free guard's value or a guard oracle's argument missing from the step's data.
    """
    oracles = Oracles(spec, guards or {}, registry)
    if step.elapse:
        timer = next((t for t in spec.states[state].timers if t.name == step.trigger), None)
        if timer is None:
            raise TimerNotArmed(f"step {step!r}: {state} has no timer {step.trigger}")
        for trigger in timer.triggers:
            found = expect_step(spec, state, Step(trigger, step.data, True), oracles, subject)
            if found.outcome == "taken":
                return found
        return Expected("blocked", state, trigger=step.trigger)
    return expect_step(spec, state, step, oracles, subject)


def expect_step(spec: Spec, state: str, step: Step, oracles: Oracles, subject: Any) -> Expected:
    if step.trigger in spec.states[state].ignore:
        return Expected("ignored", state, trigger=step.trigger)
    rows = spec.rows(state, step.trigger)
    if not rows:
        return Expected("refused", state, trigger=step.trigger)
    values: dict[str, bool] = {}
    for row in rows:
        for name in row.guards:
            if name not in values:
                values[name] = oracles.value(name, step, subject)
        if all(values[c] for c in row.conditions) and not any(values[u] for u in row.unless):
            return Expected("taken", row.dest, row, values, step.trigger)
    return Expected("blocked", state, None, values, step.trigger)
