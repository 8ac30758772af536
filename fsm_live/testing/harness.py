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
  actions (:class:`~fsm_live.runner.UserRun`) beside the implementation, and
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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fsm_live.spec import Registry, Spec
from fsm_live.testing.steps import (
    Expected,
    GuardOracle,
    Mismatch,
    MissingEventData,
    Oracles,
    Step,
    TimerNotArmed,
    expect,
    expect_step,
)
from fsm_live.testing.walk import Adapter, Walk, run_steps

__all__ = (
    "Adapter",
    "Expected",
    "GuardOracle",
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


# -- walks --------------------------------------------------------------------------------------


def _event_data(
    spec: Spec,
    trigger: str,
    oracles: Oracles,
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


def _timers_that_can_elapse(spec: Spec, state: str, oracles: Oracles) -> list[str]:
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
    oracles = Oracles(spec, guards or {})
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
            state = expect_step(spec, state, step, oracles, None).dest
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
    implementation and the spec disagree, and ``TypeError`` for ``model`` without
    ``registry``.
    """
    from fsm_live.testing.paths import covering_paths

    spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
    if model is not None and registry is None:
        raise TypeError(
            "check_implementation(model=...): the model runs the registry's actions; "
            "pass registry= too"
        )
    settings = settings or hypothesis_settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings = hypothesis_settings(settings, report_multiple_bugs=False)
    oracles = Oracles(spec, guards or {}, registry)
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
        walk = Walk(spec, make(), oracles, model, observe)
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
    oracles = Oracles(spec, guards or {})
    try:
        for step in walk[:-1]:
            state = expect_step(spec, state, step, oracles, None).dest
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
