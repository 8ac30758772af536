"""Property tests of *your* implementation of a spec: the spec is the oracle.

:func:`check_implementation` drives an implementation (through a small
:class:`Adapter`: fire a trigger with event data, read the state) and the spec
side by side, first along :func:`~fsm_live.testing.covering_paths` (every edge,
every refused and ignored trigger, every guard that can block), then along
Hypothesis-generated walks, and checks after every step:

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
* final states absorb (they refuse every trigger);

and, where the adapter reports them (the ready-made adapters do):

* **actions**: the actions the step ran, in order, are the spec's: the row's
  ``before``, the source's ``on_exit``, the destination's ``on_enter``, the row's
  ``after`` (an internal row: ``before`` and ``after``; nothing for a refused,
  ignored or blocked trigger): an action run twice, or missing, is a mismatch;
* **timers** (on a :class:`~fsm_live.testing.clock.VirtualClock`): the timers
  armed are exactly those of the current state that have not expired: a timer
  left armed after its state, or never armed, is a mismatch; with a
  ``registry``, each is armed for ``timer(subject)`` seconds.  Walks let timers
  expire (``idle_timeout elapses``): the implementation's timer must fire the
  trigger the spec says, the first of the timer's triggers that takes a row;
* **tasks**: those running are the current state's;
* **the user's object**: with ``model`` (a factory of a fresh object of yours)
  and a ``registry``, the spec itself runs on such an object with the registry's
  actions (:class:`~fsm_live.runner.SpecRun`) beside the implementation, and
  ``observe(obj)`` of both must agree after every step (default: the model
  object's attributes): a side effect done twice is a mismatch.

Guards.  A guard the caller gives an oracle for (``guards={"payments_enough":
func}``) is evaluated as ``func(**args)`` with the arguments the spec declares
for it, taken from the event data.  With a ``registry``, every guard it binds
(and ``guards`` does not name) is evaluated on the implementation's own object
(the adapter's ``subject``), before the step, as ``func(subject, **args)``: the
implementation's real guard runs on its real data.  Every other guard is
*free*: the harness draws its value and passes it in the event data under the
guard's own name (``give_up(exhausted=True)``), so the implementation's guard
must read it from there.  Declared arguments are drawn from ``args``
strategies (default: small integers).

A failure is always one :class:`Mismatch`, its walk shrunk by Hypothesis and
then stripped of every step it does not need (several distinct failures in
one run: the shortest), naming the spec's file, row and line::

    Mismatch: after [passive_open, rcv_syn]: the implementation refused rcv_rst in
    SYN_RECEIVED; the spec takes transitions.8 (SYN_RECEIVED -> LISTEN) for
    rcv_rst, at specs/examples/tcp.yaml:58

Walks favour triggers the current state accepts (three times in four; the
fourth, one it refuses), so deep states are reached in few examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fsm_live.errors import FsmLiveError, TransitionRefused
from fsm_live.spec import Registry, Spec, TransitionSpec

__all__ = (
    "Adapter",
    "Expected",
    "Mismatch",
    "MissingEventData",
    "Step",
    "TimerNotArmed",
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
    """An implementation under test, as the harness sees it.

    Two methods are required.  The harness also uses, when present: ``subject``
    (the implementation's object, for a registry's guard oracles and ``model``
    comparisons), ``observe(action_names)`` then ``actions()`` (the spec's
    actions run since the last call, in order), ``timers()`` (armed timers:
    name -> seconds left) with ``advance(seconds)``, and ``tasks()`` (names of
    the tasks running).  A method returning None reports nothing.
    """

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
class _Oracles:
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
    oracles = _Oracles(spec, guards or {}, registry)
    if step.elapse:
        timer = next((t for t in spec.states[state].timers if t.name == step.trigger), None)
        if timer is None:
            raise TimerNotArmed(f"step {step!r}: {state} has no timer {step.trigger}")
        for trigger in timer.triggers:
            found = _expect(spec, state, Step(trigger, step.data, True), oracles, subject)
            if found.outcome == "taken":
                return found
        return Expected("blocked", state, trigger=step.trigger)
    return _expect(spec, state, step, oracles, subject)


def _expect(spec: Spec, state: str, step: Step, oracles: _Oracles, subject: Any) -> Expected:
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


# -- running steps ------------------------------------------------------------------------------


class _Walk:
    """An implementation and the spec, stepped side by side (see :func:`run_steps`)."""

    def __init__(
        self,
        spec: Spec,
        adapter: Adapter,
        oracles: _Oracles,
        model: Callable[[], Any] | None,
        observe: Callable[[Any], Any] | None,
    ) -> None:
        self.spec = spec
        self.adapter = adapter
        self.oracles = oracles
        self.done: list[Step] = []
        self.subject = getattr(adapter, "subject", None)
        actions = spec.known.names("action")
        observe_actions = getattr(adapter, "observe", None)
        if observe_actions is not None:
            observe_actions(actions)
        self.state = adapter.state()
        if self.state != spec.initial:
            raise self.fail(
                f"the spec starts in {spec.initial}; the implementation is in {self.state}"
                f" ({self.where_state(spec.initial)})"
            )
        self._actions()  # what construction ran is not compared (libraries differ)
        self.armed = {t.name for t in spec.states[self.state].timers}
        #: The reference run's clock: it moves only when a timer expires.
        self.reference_now = 0.0
        self.reference = self._reference(model)
        self.observe = observe
        #: True when the adapter reports its timers: walks may let them expire.
        self.clocked = self._timers() is not None
        self.check_timers(entered=True)
        self.check_tasks()
        self.check_model()

    # -- the reference run of the spec on the user's object --------------------------------

    def _reference(self, model: Callable[[], Any] | None) -> Any:
        if model is None:
            return None
        registry = self.oracles.registry
        if registry is None:
            raise TypeError("check_implementation(model=...) needs the registry= to run")
        from fsm_live.runner import SpecRun, run_machine

        run = SpecRun(run_machine(self.spec, registry), model())
        run.start(self.reference_now)
        return run

    # -- messages -------------------------------------------------------------------------

    def fail(self, message: str, step: Step | None = None) -> Mismatch:
        walk = [*self.done, step] if step is not None else self.done
        return Mismatch(f"after {list(self.done)!r}: {message}", walk)

    def where_state(self, state: str) -> str:
        line = self.spec.states[state].line
        return f"states.{state}, at {self.spec.source}:{line}" if line else f"states.{state}"

    def where_row(self, row: TransitionSpec) -> str:
        return f"at {self.spec.source}:{row.line}" if row.line else f"in {self.spec.source}"

    def describe(self, expected: Expected, state: str, step: Step) -> str:
        values = ", ".join(f"{name}={value}" for name, value in expected.guards.items())
        with_guards = f" with {values}" if values else ""
        what = repr(step)
        if expected.outcome == "ignored":
            return f"ignores {what} in {state} (nothing changes; {self.where_state(state)})"
        if expected.outcome == "blocked":
            return (
                f"takes no row for {what} from {state}{with_guards} (nothing changes; "
                f"{self.where_state(state)})"
            )
        row = expected.row
        assert row is not None
        dest = state if row.internal else row.dest
        fired = f" (it fires {expected.trigger})" if step.elapse else ""
        return (
            f"takes {row.item} ({state} -> {dest}{row.guard_label}) for {what}{fired}"
            f"{with_guards}, {self.where_row(row)}"
        )

    # -- one step ---------------------------------------------------------------------------

    def step(self, step: Step) -> str:
        try:
            return self._step(step)
        except Mismatch as exc:
            if not exc.walk or exc.walk[-1] is not step:
                exc.walk = (*self.done, step)
            raise

    def _step(self, step: Step) -> str:
        spec, adapter, state = self.spec, self.adapter, self.state
        if step.elapse:
            if step.trigger not in self.armed:
                raise TimerNotArmed(f"step {step!r}: the spec has no {step.trigger} armed now")
            expected = self._expect_elapse(step)
            accepted = self._elapse(step)
        else:
            expected = _expect(spec, state, step, self.oracles, self.subject)
            try:
                accepted = adapter.fire(step.trigger, step.data)
            except Exception as exc:
                raise self.fail(
                    f"the implementation raised {type(exc).__name__}: {exc} on {step!r} in "
                    f"{state}; the spec {self.describe(expected, state, step)}"
                ) from exc
        now = adapter.state()
        if expected.outcome == "refused":
            why = (
                "a final state absorbs every trigger"
                if spec.states[state].final
                else "no row leaves it on that trigger"
            )
            if accepted:
                raise self.fail(
                    f"the spec refuses {step!r} in {state} ({why}; {self.where_state(state)}); "
                    f"the implementation accepted it and is in {now}"
                )
            if now != state:
                raise self.fail(
                    f"the implementation refused {step!r} in {state} but its state changed to {now}"
                )
        elif not accepted:
            raise self.fail(
                f"the implementation refused {step!r} in {state}; the spec "
                f"{self.describe(expected, state, step)}"
            )
        elif now != expected.dest:
            raise self.fail(
                f"the spec {self.describe(expected, state, step)}; the implementation is in {now}"
            )
        self.check_actions(expected, state, step)
        entered = expected.outcome == "taken" and not (
            expected.row is not None and expected.row.internal
        )
        if step.elapse:
            self.armed.discard(step.trigger)
        if entered:
            self.armed = {t.name for t in spec.states[now].timers}
        self.step_reference(step, expected)
        self.done.append(step)
        self.state = now
        self.check_timers(entered=entered)
        self.check_tasks()
        self.check_model()
        return now

    def _expect_elapse(self, step: Step) -> Expected:
        return expect(
            self.spec,
            self.state,
            step,
            self.oracles.guards,
            registry=self.oracles.registry,
            subject=self.subject,
        )

    def _elapse(self, step: Step) -> bool:
        timers = self._timers()
        if timers is None or step.trigger not in timers:
            raise self.fail(
                f"the spec has timer {step.trigger} armed in {self.state} "
                f"({self.where_state(self.state)}); the implementation has "
                f"{sorted(timers or {}) or 'none'} armed"
            )
        advance = getattr(self.adapter, "advance", None)
        assert advance is not None  # timers() without advance(): an adapter's mistake
        try:
            advance(timers[step.trigger])
        except Exception as exc:
            raise self.fail(
                f"the implementation raised {type(exc).__name__}: {exc} when its timer "
                f"{step.trigger} expired in {self.state}"
            ) from exc
        return True

    # -- what else is compared ------------------------------------------------------------

    def _actions(self) -> list[str] | None:
        actions = getattr(self.adapter, "actions", None)
        return None if actions is None else actions()

    def _timers(self) -> Mapping[str, float] | None:
        timers = getattr(self.adapter, "timers", None)
        return None if timers is None else timers()

    def check_actions(self, expected: Expected, state: str, step: Step) -> None:
        ran = self._actions()
        if ran is None:
            return
        row = expected.row
        wanted: list[str] = []
        if expected.outcome == "taken" and row is not None:
            wanted += row.before
            if not row.internal:
                wanted += [*self.spec.states[state].on_exit, *self.spec.states[row.dest].on_enter]
            wanted += row.after
        if list(ran) != wanted:
            spec_says = (
                f"{self.describe(expected, state, step)} and runs {wanted}"
                if wanted
                else f"{self.describe(expected, state, step)} and runs no action"
            )
            raise self.fail(f"the implementation ran {list(ran)}; the spec {spec_says}")

    def check_timers(self, *, entered: bool) -> None:
        timers = self._timers()
        if timers is None:
            return
        state = self.state
        armed = set(timers)
        if armed != self.armed:
            extra, missing = sorted(armed - self.armed), sorted(self.armed - armed)
            parts = [f"{name} is still armed" for name in extra] + [
                f"{name} is not armed" for name in missing
            ]
            raise self.fail(
                f"in {state}, the implementation's timer {'; '.join(parts)}: the spec arms "
                f"{sorted(self.armed) or 'none'} there ({self.where_state(state)})"
            )
        registry = self.oracles.registry
        if not entered or registry is None:
            return
        for name in sorted(armed):
            if ("timer", name) not in registry:
                continue
            seconds = float(registry.lookup("timer", name)(self.subject))
            if not math.isclose(timers[name], seconds, rel_tol=1e-6, abs_tol=1e-9):
                raise self.fail(
                    f"entering {state}, the implementation armed {name} for "
                    f"{timers[name]:g} s; the registry's {name}(subject) says {seconds:g} s "
                    f"({self.where_state(state)})"
                )

    def check_tasks(self) -> None:
        tasks = getattr(self.adapter, "tasks", None)
        running: Collection[str] | None = None if tasks is None else tasks()
        if running is None:
            return
        wanted = set(self.spec.states[self.state].tasks)
        if set(running) != wanted:
            raise self.fail(
                f"in {self.state}, the implementation runs the tasks {sorted(running)}; the "
                f"spec runs {sorted(wanted)} there ({self.where_state(self.state)})"
            )

    def step_reference(self, step: Step, expected: Expected) -> None:
        run = self.reference
        if run is None:
            return
        try:
            if step.elapse:
                deadline = run.timers.get(step.trigger)
                if deadline is not None:
                    self.reference_now = max(self.reference_now, deadline)
                    run.expire(step.trigger, self.reference_now)
            else:
                run.fire(step.trigger, self.reference_now, **step.data)
        except TransitionRefused:
            pass

    def check_model(self) -> None:
        run = self.reference
        if run is None:
            return
        observe = self.observe or _attributes(run.subject)
        mine, theirs = observe(self.subject), observe(run.subject)
        if mine != theirs:
            raise self.fail(
                f"in {self.state}, the implementation's object reads {mine!r}; the spec run "
                f"on the model with the registry's actions reads {theirs!r}"
            )


def _attributes(model: Any) -> Callable[[Any], Any]:
    """Compare an object's values of the model's attributes (``vars`` of the model)."""
    names = sorted(vars(model)) if hasattr(model, "__dict__") else []

    def observe(obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name, "<missing>") for name in names}

    return observe


def run_steps(
    spec: Spec,
    adapter: Adapter,
    steps: Sequence[Step],
    guards: Mapping[str, GuardOracle] | None = None,
    *,
    registry: Registry | None = None,
    model: Callable[[], Any] | None = None,
    observe: Callable[[Any], Any] | None = None,
) -> list[str]:
    """Fire ``steps`` on ``adapter``, checking each against the spec; the states visited
    (the initial one, then one per step).

    ``guards``, ``registry``, ``model`` and ``observe`` are described in the
    module docstring.  Raises :class:`Mismatch` at the first disagreement.
    """
    walk = _Walk(spec, adapter, _Oracles(spec, guards or {}, registry), model, observe)
    return [walk.state, *(walk.step(step) for step in steps)]


# -- walks --------------------------------------------------------------------------------------


def _event_data(
    spec: Spec,
    trigger: str,
    oracles: _Oracles,
    args: Mapping[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """Values for a trigger's free guards (booleans) and declared arguments."""
    free = sorted(
        {g for t in spec.transitions if t.trigger == trigger for g in t.guards if oracles.free(g)}
    )
    fields: dict[str, st.SearchStrategy[Any]] = dict.fromkeys(free, st.booleans())
    for name in spec.event_args(trigger):
        fields[name] = args.get(name, st.integers(min_value=0, max_value=5))
    return st.fixed_dictionaries(fields)


def _timers_that_can_elapse(spec: Spec, state: str, oracles: _Oracles) -> list[str]:
    """A state's timers whose triggers' guards need no value from event data (the
    implementation's own timer fires them without any)."""
    names = []
    for timer in spec.states[state].timers:
        rows = [r for t in timer.triggers for r in spec.rows(state, t)]
        if not any(oracles.free(g) for row in rows for g in row.guards):
            names.append(timer.name)
    return names


def walks(
    spec: Spec,
    *,
    guards: Mapping[str, GuardOracle] | None = None,
    args: Mapping[str, st.SearchStrategy[Any]] | None = None,
    max_steps: int = 25,
) -> st.SearchStrategy[list[Step]]:
    """Walks of up to ``max_steps`` steps from the spec's initial state, drawn ahead
    of running them (free guards and oracles of ``guards`` only: a walk whose
    guards read an object is drawn step by step, as :func:`check_implementation`
    does).

    Each step's trigger is, three times in four, one the current state (by the
    spec) accepts, else one it refuses; free guards and declared arguments are
    drawn as the module docstring says.  A walk ends one step after reaching a
    final state.
    """
    oracles = _Oracles(spec, guards or {})
    args = args or {}
    triggers = spec.triggers
    data = {trigger: _event_data(spec, trigger, oracles, args) for trigger in triggers}

    @st.composite
    def draw_walk(draw: st.DrawFn) -> list[Step]:
        steps: list[Step] = []
        if not triggers:
            return steps
        state = spec.initial
        for _ in range(draw(st.integers(min_value=0, max_value=max_steps))):
            step = _draw_step(draw, spec, state, triggers, data, [])
            steps.append(step)
            if spec.states[state].final:
                break  # one refusal shows it absorbs; more would only repeat it
            state = _expect(spec, state, step, oracles, None).dest
        return steps

    return draw_walk()


def _draw_step(
    draw: Callable[..., Any],
    spec: Spec,
    state: str,
    triggers: Sequence[str],
    data: Mapping[str, st.SearchStrategy[dict[str, Any]]],
    timers: Sequence[str],
) -> Step:
    if timers and draw(st.integers(0, 3)) == 0:
        return Step(draw(st.sampled_from(timers)), elapse=True)
    accepted = [t for t in triggers if spec.accepts(state, t)]
    refused = [t for t in triggers if t not in accepted]
    pool = accepted if accepted and (not refused or draw(_MOSTLY_ACCEPTED)) else refused
    trigger = draw(st.sampled_from(pool))
    return Step(trigger, draw(data[trigger]))


# -- the check ----------------------------------------------------------------------------------


def check_implementation(
    spec: Spec | str,
    make: Callable[[], Adapter],
    *,
    guards: Mapping[str, GuardOracle] | None = None,
    registry: Registry | None = None,
    model: Callable[[], Any] | None = None,
    observe: Callable[[Any], Any] | None = None,
    args: Mapping[str, st.SearchStrategy[Any] | Sequence[Any]] | None = None,
    max_steps: int = 25,
    settings: hypothesis_settings | None = None,
) -> None:
    """Check an implementation against ``spec`` (a :class:`Spec` or a path).

    ``make`` returns a fresh :class:`Adapter` around a new instance of the
    implementation, in its initial state, for every walk.  ``guards``,
    ``registry``, ``model``, ``observe`` and ``args`` are described in the module
    docstring (an argument's values may also be listed: ``args={"amount": [0, 5,
    10]}``); ``max_steps`` bounds a walk.  ``settings`` defaults to 100 examples,
    no deadline and no example database.  The covering paths run first
    (:func:`~fsm_live.testing.covering_paths`, with ``guards``), then the
    generated walks.  Raises :class:`Mismatch` (shrunk, one line) when the
    implementation and the spec disagree.
    """
    from fsm_live.testing.paths import covering_paths

    spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
    settings = settings or hypothesis_settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings = hypothesis_settings(settings, report_multiple_bugs=False)
    oracles = _Oracles(spec, guards or {}, registry)
    strategies = {
        name: value if isinstance(value, st.SearchStrategy) else st.sampled_from(list(value))
        for name, value in (args or {}).items()
    }
    data = {t: _event_data(spec, t, oracles, strategies) for t in spec.triggers}
    failing: list[list[Step]] = []

    def run(steps: Sequence[Step]) -> None:
        run_steps(spec, make(), steps, guards, registry=registry, model=model, observe=observe)

    # The covering paths first: every edge, refusal and blocking guard, in few steps
    # (their argument values are the lists given in args, else the default values,
    # so not when a strategy draws an argument: the implementation may not take them).
    listed = {n: v for n, v in (args or {}).items() if not isinstance(v, st.SearchStrategy)}
    seeds = [] if _drawn(args or {}) else list(covering_paths(spec, guards=guards, args=listed))
    for path in seeds:
        # Guards valued on the implementation's object take nothing from the data.
        steps = [
            Step(s.trigger, {k: v for k, v in s.data.items() if not oracles.on_subject(k)})
            for s in path.steps
        ]
        try:
            run(steps)
        except Mismatch as exc:
            failing.append(list(exc.walk))
            shorter = _shortest_walk_to(spec, exc.walk, guards)
            if shorter is not None:
                failing.append(shorter)
            break
        except MissingEventData:
            continue  # a path drawn with free guard values the oracles do not need

    @settings
    @given(st.data())
    def walk(draw: st.DataObject) -> None:
        walk = _Walk(spec, make(), oracles, model, observe)
        length = draw.draw(st.integers(min_value=0, max_value=max_steps), label="length")
        triggers = spec.triggers
        if not triggers:
            return
        steps: list[Step] = []
        for _ in range(length):
            before = walk.state
            timers = _timers_that_can_elapse(spec, before, oracles) if walk.clocked else []
            armed = [name for name in timers if name in walk.armed]
            step = _draw_step(draw.draw, spec, before, triggers, data, armed)
            steps.append(step)
            try:
                walk.step(step)
            except Mismatch:
                failing.append(steps)
                raise
            if spec.states[before].final:
                break  # one refusal shows it absorbs; more would only repeat it

    try:
        if not failing:  # a failing covering path has its shortest walk already
            walk()
    except Mismatch:
        pass
    except BaseExceptionGroup as group:  # settings that report several failures
        if not failing or group.subgroup(Mismatch) is None:
            raise
    if not failing:
        return
    # The shortest failing walk, stripped of the steps it does not need (a walk's
    # steps depend on the states before them, which shrinking keeps).
    candidates = [_without_needless_steps(run, walk) for walk in failing if _fails(run, walk)]
    if not candidates:  # pragma: no cover - every recorded walk failed once
        raise Mismatch(
            f"after {min(failing, key=len)!r}: the implementation failed this walk once "
            f"and passed it again (does it keep state between instances?)"
        )
    shortest = min(candidates, key=len)
    try:
        run(shortest)
    except Mismatch as exc:
        raise Mismatch(str(exc), exc.walk) from None
    raise AssertionError("unreachable")  # pragma: no cover - _fails said it fails


def _fails(run: Callable[[Sequence[Step]], None], steps: Sequence[Step]) -> bool:
    try:
        run(steps)
    except Mismatch:
        return True
    except (MissingEventData, TimerNotArmed):  # a step lost what an earlier one gave it
        return False
    return False


def _shortest_walk_to(
    spec: Spec, walk: Sequence[Step], guards: Mapping[str, GuardOracle] | None
) -> list[Step] | None:
    """The shortest walk (by the spec, free guards valued as the walk's steps give
    them) to the state the failing step of ``walk`` was fired in, then that step."""
    from fsm_live.testing.paths import shortest_route

    state = spec.initial
    oracles = _Oracles(spec, guards or {})
    try:
        for step in walk[:-1]:
            state = _expect(spec, state, step, oracles, None).dest
    except MissingEventData:
        return None
    route = shortest_route(spec, state, guards=guards)
    return None if route is None else [*route, walk[-1]]


def _drawn(args: Mapping[str, Any]) -> bool:
    """True when some argument is drawn by a strategy (not listed as values)."""
    return any(isinstance(value, st.SearchStrategy) for value in args.values())


def _without_needless_steps(run: Callable[[Sequence[Step]], None], steps: list[Step]) -> list[Step]:
    """A failing walk with each step removed whose removal keeps it failing."""
    i = 0
    while i < len(steps):
        candidate = steps[:i] + steps[i + 1 :]
        if _fails(run, candidate):
            steps = candidate
        else:
            i += 1
    return steps
