"""Model-based test paths: walks from the initial state that take every edge.

:func:`covering_paths` returns a few walks (lists of
:class:`~fsm_live.testing.harness.Step`) that between them take every edge of a
spec, that is every (source state, row) pair, so every guarded alternative too,
at least once.  Each path starts in the initial state; it is built greedily (the
shortest way to the nearest edge not yet taken, repeated until none is
reachable from where the path stands, or it enters a final state).  Use them to
parametrize a test::

    @pytest.mark.parametrize("path", covering_paths(spec), ids=str)
    def test_every_edge(path):
        run_steps(spec, make_adapter(), path.steps)

A step that must take a guarded row carries the values of the guards (as the
harness's free guards: in the event data, under each guard's name) that make
that row the first whose guards pass; guards with declared arguments get the
same treatment, their arguments are not filled in.  Edges no walk reaches (in a
spec that failed its checks, say) are left out and listed in
:attr:`CoveringPaths.unreachable`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

import attrs

from fsm_live.spec import Spec, TransitionSpec
from fsm_live.spec.checks import guard_assignment
from fsm_live.testing.harness import Step

__all__ = ("CoveringPath", "CoveringPaths", "Edge", "covering_paths")

#: An edge: the source state and the row taken from it.
Edge = tuple[str, TransitionSpec]


@attrs.frozen
class CoveringPath:
    """One walk: its steps, the states it visits (initial first) and its edges."""

    steps: tuple[Step, ...]
    states: tuple[str, ...]
    edges: tuple[Edge, ...]

    def __str__(self) -> str:
        """The triggers, for test ids: ``start-opened-lost``."""
        return "-".join(step.trigger for step in self.steps) or "(empty)"


@attrs.frozen
class CoveringPaths:
    """The paths of :func:`covering_paths`, iterable; ``unreachable`` edges were not covered."""

    paths: tuple[CoveringPath, ...]
    unreachable: tuple[Edge, ...] = ()

    def __iter__(self) -> Iterator[CoveringPath]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def _step(spec: Spec, source: str, row: TransitionSpec) -> Step:
    """The step that takes ``row`` from ``source`` (guard values in its data)."""
    earlier = []
    for candidate in spec.rows(source, row.trigger):
        if candidate is row:
            break
        earlier.append(candidate)
    values = guard_assignment(earlier, row) if row.guarded or earlier else {}
    return Step(row.trigger, dict(values or {}))


def covering_paths(spec: Spec | str | Path) -> CoveringPaths:
    """Walks from ``spec.initial`` that take every reachable edge at least once.

    ``spec`` is a :class:`Spec` or a path to one.

    Deterministic: the same spec gives the same paths.  A spec with no edges
    gives no paths.
    """
    spec = spec if isinstance(spec, Spec) else Spec.from_path(spec)
    edges: list[Edge] = list(spec.edges())
    outgoing: dict[str, list[Edge]] = {name: [] for name in spec.states}
    for edge in edges:
        outgoing[edge[0]].append(edge)
    covered: dict[int, set[str]] = {id(row): set() for _, row in edges}  # row -> sources

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

    paths: list[CoveringPath] = []
    while any(not is_covered(edge) for edge in edges):
        state, taken = spec.initial, []
        while not spec.states[state].final:
            more = route(state)
            if more is None:
                break
            for edge in more:
                covered[id(edge[1])].add(edge[0])
            taken += more
            state = taken[-1][1].dest
        if not taken:
            break  # what is left is unreachable from the initial state
        states = (spec.initial, *(row.dest for _, row in taken))
        paths.append(
            CoveringPath(
                steps=tuple(_step(spec, s, r) for s, r in taken), states=states, edges=tuple(taken)
            )
        )
    unreachable = tuple(edge for edge in edges if not is_covered(edge))
    return CoveringPaths(paths=tuple(paths), unreachable=unreachable)
