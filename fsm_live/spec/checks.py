"""Rules on the shape of a spec's graph, run once its structure is valid.

Each rule returns problems as ``(path, message)``; the validator locates them
(``FILE:LINE: item: message``).  The rules:

* every state is reachable from the initial state;
* final states absorb: no transition leaves them (not even an internal one);
* a non-final state has a way out;
* when the spec has final states, every state can reach one (no trap cycle).
  The same rule as python-statemachine's ``validate_final_reachability``
  (``statemachine/factory.py``, ``_check_reachable_final_states``), which also
  applies it only when some state is final;
* a timer fires only triggers that have a transition from its state;
* no row is shadowed: for a trigger and a source, rows are tried in table order
  and the first whose guards pass is taken (transitions'
  ``Event._process``), so a row is dead when every guard assignment that lets it
  pass also lets an earlier row pass (an unguarded row before it, an earlier row
  with a subset of its guards, or earlier rows that between them cover every
  case).  Guards are treated as independent booleans; groups with more than
  :data:`MAX_GUARDS` distinct guards are not searched.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Final

from fsm_live.spec.model import StateSpec, TransitionSpec

__all__ = ("MAX_GUARDS", "Problem", "graph_problems", "guard_assignment")

#: A problem: the item's path (keys and indexes) and the message.
Problem = tuple[tuple[Any, ...], str]
#: Above this many distinct guards in one (source, trigger) group, shadowing is not searched.
MAX_GUARDS: Final = 12


def graph_problems(
    states: Mapping[str, StateSpec], transitions: tuple[TransitionSpec, ...], initial: str
) -> list[Problem]:
    """Every graph problem of a structurally valid spec, in a stable order."""
    outgoing: dict[str, list[TransitionSpec]] = {name: [] for name in states}
    incoming: dict[str, set[str]] = {name: set() for name in states}
    for transition in transitions:
        for source in transition.sources:
            outgoing[source].append(transition)
            incoming[transition.dest].add(source)
    problems: list[Problem] = []
    reached = _closure(initial, lambda name: (t.dest for t in outgoing[name]))
    finals = [name for name, state in states.items() if state.final]
    reaches_final: set[str] = set()
    for final in finals:
        reaches_final |= _closure(final, lambda name: incoming[name])
    for name, state in states.items():
        path = ("states", name)
        if name not in reached:
            problems.append((path, f"state {name} is unreachable from {initial}"))
        if state.final and outgoing[name]:
            problems.append(
                (
                    path,
                    f"final state {name} has outgoing transitions "
                    f"({', '.join(t.trigger for t in outgoing[name])})",
                )
            )
        if not state.final and not outgoing[name]:
            problems.append((path, f"state {name} is not final and has no way out"))
        elif finals and name not in reaches_final:
            problems.append(
                (
                    path,
                    f"state {name} cannot reach a final state "
                    f"({', '.join(finals)}): once in it, the machine never ends",
                )
            )
        triggers = {t.trigger for t in outgoing[name]}
        problems.extend(
            (
                (*path, "timers", timer.name),
                f"timer {timer.name} fires {trigger!r}, which has no transition from {name}",
            )
            for timer in state.timers
            for trigger in timer.triggers
            if trigger not in triggers
        )
    problems += _shadowed(outgoing)
    return problems


def _closure(start: str, step: Any) -> set[str]:
    reached = {start}
    frontier = [start]
    while frontier:
        for name in step(frontier.pop()):
            if name not in reached:
                reached.add(name)
                frontier.append(name)
    return reached


def _shadowed(outgoing: Mapping[str, list[TransitionSpec]]) -> list[Problem]:
    problems: list[Problem] = []
    for source, rows in outgoing.items():
        groups: dict[str, list[TransitionSpec]] = {}
        for row in rows:
            groups.setdefault(row.trigger, []).append(row)
        for trigger, group in groups.items():
            for k in range(1, len(group)):
                message = _shadow_message(source, trigger, group[:k], group[k])
                if message:
                    problems.append((("transitions", group[k].index), message))
    return problems


def _shadow_message(
    source: str, trigger: str, earlier: list[TransitionSpec], row: TransitionSpec
) -> str | None:
    """Why ``row`` is never taken from ``source`` after ``earlier`` rows, or None."""
    first = next((e for e in earlier if not e.guarded), None)
    if first is not None and not row.guarded:
        return (
            f"second unconditional transition for trigger {trigger!r} from {source} "
            f"(first at {_at(first)}): it can never be taken"
        )
    covering = next(
        (
            e
            for e in earlier
            if set(e.conditions) <= set(row.conditions) and set(e.unless) <= set(row.unless)
        ),
        None,
    )
    if covering is not None:
        why = (
            "has no guards"
            if not covering.guarded
            else f"passes whenever this row's guards pass ({covering.guard_label.strip(' []')})"
        )
        return (
            f"shadowed: never taken from {source}, because {_at(covering)} for "
            f"{trigger!r} comes first and {why}"
        )
    if guard_assignment(earlier, row) is None:
        rows = ", ".join(_at(e) for e in earlier)
        return (
            f"shadowed: never taken from {source}, because the earlier rows for "
            f"{trigger!r} ({rows}) between them pass in every case this row does"
        )
    return None


def guard_assignment(
    earlier: list[TransitionSpec] | tuple[TransitionSpec, ...], row: TransitionSpec
) -> dict[str, bool] | None:
    """Guard values under which ``row`` is the row taken after ``earlier`` (its
    guards pass, each earlier row's fail); None if there are none.

    Every guard of the rows gets a value (True or False).  With more than
    :data:`MAX_GUARDS` distinct guards, the search is skipped: the row's own
    guards are made to pass and the others left False, which may not make the
    earlier rows fail.
    """
    names = list(dict.fromkeys(g for r in (*earlier, row) for g in r.guards))
    if len(names) > MAX_GUARDS:
        values = dict.fromkeys(names, False)
        values.update(dict.fromkeys(row.conditions, True))
        return values
    for bits in itertools.product((True, False), repeat=len(names)):
        values = dict(zip(names, bits, strict=True))
        if _passes(row, values) and not any(_passes(e, values) for e in earlier):
            return values
    return None


def _at(row: TransitionSpec) -> str:
    """``transitions.3, line 40`` (without the line for specs built from data)."""
    return row.item if row.line is None else f"{row.item}, line {row.line}"


def _passes(row: TransitionSpec, values: Mapping[str, bool]) -> bool:
    return all(values[c] for c in row.conditions) and not any(values[u] for u in row.unless)
