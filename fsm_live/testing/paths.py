"""Model-based test paths: walks from the initial state that take every edge, and probe
every guard that can block and every trigger a state refuses.

:func:`covering_paths` returns a few walks (lists of
:class:`~fsm_live.testing.harness.Step`) that between them:

* take every edge of the spec, that is every (source state, row) pair, so every
  guarded alternative too, at least once;
* with ``probes`` (the default), fire in each state they visit every trigger
  the state refuses or ignores, and, for each trigger whose rows there are all
  guarded, one step whose guards all fail (the trigger is accepted and nothing
  happens).  These steps change no state, so they sit inside the walks.

Each path starts in the initial state; it is built greedily (the shortest way
to the nearest edge not yet taken, repeated until none is reachable from where
the path stands, or it enters a final state).  Use them to parametrize a test::

    @pytest.mark.parametrize("path", covering_paths(spec), ids=str)
    def test_every_edge(path):
        assert run_steps(spec, make_adapter(), path.steps) == list(path.states)

Event data.  Every step carries a value for each argument its trigger's guards
and actions declare (:meth:`Spec.event_args`), taken from ``args`` (candidate
values by argument name; default :data:`DEFAULT_VALUES`).  A guard with an
oracle in ``guards`` (``{"payments_enough": lambda amount: amount >= 5}``, as
:func:`~fsm_live.testing.check_implementation` takes them) is evaluated on the
candidates, which are searched for values that make the wanted row the one
taken; any other guard is *free*, and the step carries its value under its own
name (``give_up(exhausted=True)``), as the harness's free guards.  Edges no
walk can take (unreachable in a spec that failed its checks, or no candidate
makes the row win) are left out and listed in :attr:`CoveringPaths.unreachable`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from fsm_live.spec import Spec, TransitionSpec
from fsm_live.testing.steps import GuardOracle, Step

__all__ = (
    "DEFAULT_VALUES",
    "CoveringPath",
    "CoveringPaths",
    "Edge",
    "covering_paths",
    "shortest_route",
)

#: An edge: the source state and the row taken from it.
Edge = tuple[str, TransitionSpec]
#: What a step of a path does: take a row, accepted with no row passing, ignored, refused.
Outcome = Literal["taken", "blocked", "ignored", "refused"]
#: Candidate values of a declared argument when ``args`` names none (the harness
#: draws arguments from the same range by default).
DEFAULT_VALUES: Final = (0, 1, 2, 3, 4, 5)
#: At most this many combinations of argument values are tried for one step.
_MAX_COMBINATIONS: Final = 4096


@attrs.frozen
class CoveringPath:
    """One walk: its steps, the states it visits (initial first, then one per step),
    what each step does (``outcomes``: taken, blocked, ignored, refused) and the
    edges its taken steps take, in order."""

    steps: tuple[Step, ...]
    states: tuple[str, ...]
    edges: tuple[Edge, ...]
    outcomes: tuple[Outcome, ...] = ()

    def __str__(self) -> str:
        """The triggers of the steps that take an edge, for test ids: ``start-opened-lost``."""
        taken = [
            step.trigger
            for step, outcome in zip(
                self.steps, self.outcomes or ["taken"] * len(self.steps), strict=True
            )
            if outcome == "taken"
        ]
        return "-".join(taken) or "(empty)"


@attrs.frozen
class CoveringPaths:
    """The paths of :func:`covering_paths`, iterable; ``unreachable`` edges were not covered."""

    paths: tuple[CoveringPath, ...]
    unreachable: tuple[Edge, ...] = ()

    def __iter__(self) -> Iterator[CoveringPath]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


class _Data:
    """Finds the event data of a step: argument values and free guard values."""

    def __init__(
        self,
        spec: Spec,
        guards: Mapping[str, GuardOracle],
        args: Mapping[str, Sequence[Any]],
    ) -> None:
        self.spec = spec
        self.guards = guards
        self.args = args
        self.known = spec.known

    def guard_args(self, name: str) -> tuple[str, ...]:
        declaration = self.known.get("guard", name)
        return declaration.args if declaration is not None else ()

    def find(self, rows: Sequence[TransitionSpec], want: TransitionSpec | None) -> Step | None:
        """A step for ``rows``' trigger under which ``want`` is the first row whose
        guards pass (None: no row passes); None if no candidate data does that."""
        trigger = rows[0].trigger
        names = list(dict.fromkeys(g for row in rows for g in row.guards))
        oracles = [g for g in names if g in self.guards]
        free = [g for g in names if g not in self.guards]
        event_args = self.spec.event_args(trigger)
        # Only the arguments the oracles read are searched; the others take their first value.
        searched = list(dict.fromkeys(a for g in oracles for a in self.guard_args(g)))
        fixed = {a: self.candidates(a)[0] for a in event_args if a not in searched}
        combos = itertools.product(*(self.candidates(a) for a in searched))
        for combo in itertools.islice(combos, _MAX_COMBINATIONS):
            data = {**fixed, **dict(zip(searched, combo, strict=True))}
            values = {
                g: bool(self.guards[g](**{a: data.get(a) for a in self.guard_args(g)}))
                for g in oracles
            }
            for bits in itertools.product((True, False), repeat=len(free)):
                values.update(zip(free, bits, strict=True))
                if _first_passing(rows, values) is want:
                    ordered = {name: data[name] for name in event_args if name in data}
                    ordered.update({g: values[g] for g in free})
                    return Step(trigger, ordered)
        return None

    def plain(self, trigger: str) -> Step:
        """A step for a trigger whose rows need no guard values (or that has none)."""
        return Step(trigger, {a: self.candidates(a)[0] for a in self.spec.event_args(trigger)})

    def candidates(self, arg: str) -> Sequence[Any]:
        values = self.args.get(arg, DEFAULT_VALUES)
        return values if values else DEFAULT_VALUES


def _first_passing(
    rows: Iterable[TransitionSpec], values: Mapping[str, bool]
) -> TransitionSpec | None:
    for row in rows:
        if all(values[c] for c in row.conditions) and not any(values[u] for u in row.unless):
            return row
    return None


def covering_paths(
    spec: Spec | str | Path,
    *,
    guards: Mapping[str, GuardOracle] | None = None,
    args: Mapping[str, Iterable[Any]] | None = None,
    probes: bool = True,
) -> CoveringPaths:
    """Walks from ``spec.initial`` that take every reachable edge at least once.

    ``spec`` is a :class:`Spec` or a path to one; ``guards`` and ``args`` are
    described in the module docstring; ``probes=False`` leaves out the steps that
    take no edge (refused, ignored and blocked triggers).

    Deterministic: the same spec gives the same paths.  A spec with no edges
    gives no paths.
    """
    spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
    data = _Data(spec, guards or {}, {name: tuple(v) for name, v in (args or {}).items()})
    edges: list[Edge] = list(spec.edges())
    steps: dict[tuple[str, int], Step | None] = {}  # (source, id(row)) -> its step

    def step_for(edge: Edge) -> Step | None:
        source, row = edge
        key = (source, id(row))
        if key not in steps:
            rows = spec.rows(source, row.trigger)
            needs_data = any(r.guarded for r in rows)
            steps[key] = data.find(rows, row) if needs_data else data.plain(row.trigger)
        return steps[key]

    outgoing: dict[str, list[Edge]] = {name: [] for name in spec.states}
    for edge in edges:
        if step_for(edge) is not None:
            outgoing[edge[0]].append(edge)
    covered: dict[int, set[str]] = {id(row): set() for _, row in edges}  # row -> sources
    probed: set[str] = set()

    def is_covered(edge: Edge) -> bool:
        return edge[0] in covered[id(edge[1])]

    def route(start: str) -> list[Edge] | None:
        """The shortest list of edges from ``start`` ending with an uncovered edge."""
        previous: dict[str, Edge | None] = {start: None}
        queue = deque([start])
        while queue:
            state = queue.popleft()
            for edge in outgoing[state]:
                if not is_covered(edge):
                    path = [edge]
                    back = previous[state]
                    while back is not None:
                        path.append(back)
                        back = previous[back[0]]
                    return path[::-1]
            for edge in outgoing[state]:
                dest = edge[1].dest
                if dest not in previous:
                    previous[dest] = edge
                    queue.append(dest)
        return None

    def probes_in(state: str) -> list[tuple[Step, Outcome]]:
        """Steps that take no edge from ``state``, the first time a path is there."""
        if not probes or state in probed:
            return []
        probed.add(state)
        found: list[tuple[Step, Outcome]] = []
        for trigger in spec.triggers:
            rows = spec.rows(state, trigger)
            if trigger in spec.states[state].ignore:
                found.append((data.plain(trigger), "ignored"))
            elif not rows:
                found.append((data.plain(trigger), "refused"))
            elif all(row.guarded for row in rows):
                blocked = data.find(rows, None)
                if blocked is not None:
                    found.append((blocked, "blocked"))
        return found

    paths: list[CoveringPath] = []
    while any(not is_covered(edge) for edge in _outgoing_edges(outgoing)):
        state = spec.initial
        taken: list[Edge] = []
        walk: list[tuple[Step, Outcome, str]] = [
            (step, outcome, state) for step, outcome in probes_in(state)
        ]
        while not spec.states[state].final:
            more = route(state)
            if more is None:
                break
            for edge in more:
                covered[id(edge[1])].add(edge[0])
                step = step_for(edge)
                assert step is not None  # only edges with a step are routed
                state = edge[1].dest
                walk.append((step, "taken", state))
                walk += [(probe, outcome, state) for probe, outcome in probes_in(state)]
            taken += more
        if not taken:
            break  # what is left is unreachable from the initial state
        paths.append(
            CoveringPath(
                steps=tuple(step for step, _, _ in walk),
                states=(spec.initial, *(after for _, _, after in walk)),
                edges=tuple(taken),
                outcomes=tuple(outcome for _, outcome, _ in walk),
            )
        )
    unreachable = tuple(edge for edge in edges if not is_covered(edge))
    return CoveringPaths(paths=tuple(paths), unreachable=unreachable)


def _outgoing_edges(outgoing: Mapping[str, list[Edge]]) -> Iterator[Edge]:
    for edges in outgoing.values():
        yield from edges


def shortest_route(
    spec: Spec,
    state: str,
    *,
    guards: Mapping[str, GuardOracle] | None = None,
    args: Mapping[str, Iterable[Any]] | None = None,
) -> list[Step] | None:
    """The fewest steps from ``spec.initial`` to ``state`` (event data as in
    :func:`covering_paths`); None if no walk gets there."""
    data = _Data(spec, guards or {}, {name: tuple(v) for name, v in (args or {}).items()})
    previous: dict[str, tuple[str, Step] | None] = {spec.initial: None}
    queue = deque([spec.initial])
    while queue:
        here = queue.popleft()
        if here == state:
            route: list[Step] = []
            back = previous[here]
            while back is not None:
                route.append(back[1])
                back = previous[back[0]]
            return route[::-1]
        for row in spec.transitions_from(here):
            if row.dest in previous:
                continue
            rows = spec.rows(here, row.trigger)
            step = data.find(rows, row) if any(r.guarded for r in rows) else data.plain(row.trigger)
            if step is not None:
                previous[row.dest] = (here, step)
                queue.append(row.dest)
    return None
