"""Does a trace conform to its spec?  ``fsm-live verify SPEC TRACE...``.

The rules, checked in file order; the first line that breaks one is the
:class:`Violation`:

* every line is a record (:mod:`fsm_live.diagnostics.records`);
* the first transition leaves the spec's initial state;
* each transition's ``from`` is the previous transition's ``to``;
* each ``(from, trigger, to)`` is an edge of the spec;
* ``t`` never goes back within a run;
* a final state is never left.  A file may hold several runs one after the
  other (a fleet appends to its trace files): after a transition into a final
  state, the next run starts with a transition out of the initial state, and
  its ``t`` starts again;
* a failure record names an error class of the spec; a stats record names the
  state the transitions left the connection in.

Pure functions over parsed lines; :func:`verify_file` reads the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import attrs

from fsm_live.diagnostics.records import (
    BadLine,
    FailureRecord,
    Line,
    StatsRecord,
    Transition,
    read_trace_file,
)
from fsm_live.spec import Spec

__all__ = ("Verdict", "Violation", "verify_file", "verify_lines")


@attrs.frozen
class Violation:
    """The first rule a trace breaks: on which line, and how."""

    line: int
    message: str


@attrs.frozen
class Verdict:
    """What :func:`verify_lines` found: how many transitions and runs it checked
    (up to the violation, if any), and the ``violation`` or None."""

    transitions: int
    runs: int
    violation: Violation | None

    @property
    def ok(self) -> bool:
        return self.violation is None


def verify_lines(spec: Spec, lines: Iterable[Line]) -> Verdict:
    """Check parsed trace ``lines`` against ``spec``; stop at the first violation."""
    edges = {(source, t.trigger, t.dest) for source, t in spec.edges()}
    final = spec.final_states
    state: str | None = None  # where the transitions so far left the connection
    entered_at = 0  # the line of the transition that entered it
    last_t: float | None = None
    last_t_line = 0
    transitions = runs = 0

    def verdict(line: int, message: str) -> Verdict:
        return Verdict(transitions, runs, Violation(line, message))

    for item in lines:
        if isinstance(item, BadLine):
            return verdict(item.line, item.problem)
        if isinstance(item, Transition):
            if state is None or (state in final and item.source == spec.initial):
                if item.source != spec.initial:
                    return verdict(
                        item.line,
                        f"the first transition leaves {item.source}, not "
                        f"the initial state {spec.initial}",
                    )
                runs += 1
                last_t = None  # a new run: its clock starts again
            elif state in final:
                return verdict(
                    item.line,
                    f"{state} is final (entered on line {entered_at}), "
                    f"but this transition leaves {item.source}",
                )
            elif item.source != state:
                return verdict(
                    item.line,
                    f"from {item.source}, but the previous transition "
                    f"(line {entered_at}) entered {state}",
                )
            if item.edge not in edges:
                known = sorted(
                    f"{t.trigger} -> {t.dest}" for t in spec.transitions_from(item.source)
                )
                return verdict(
                    item.line,
                    f"{item.source} -{item.trigger}-> {item.dest} is not "
                    f"an edge of spec {spec.name!r} (from "
                    f"{item.source}: {', '.join(known) or 'none'})",
                )
            state, entered_at = item.dest, item.line
            transitions += 1
        elif state is None:
            return verdict(item.line, "a record before the first transition")
        elif isinstance(item, FailureRecord) and item.error_class not in spec.errors.classes:
            return verdict(
                item.line,
                f"failure class {item.error_class!r} is not an error class of spec {spec.name!r}",
            )
        elif isinstance(item, StatsRecord) and item.state != state:
            return verdict(
                item.line,
                f"the stats record says {item.state}, but the previous "
                f"transition (line {entered_at}) entered {state}",
            )
        if last_t is not None and item.t < last_t:
            return verdict(
                item.line, f"t goes back: {item.t:g} after {last_t:g} (line {last_t_line})"
            )
        last_t, last_t_line = item.t, item.line
    return Verdict(transitions, runs, None)


def verify_file(spec: Spec, path: str | Path) -> Verdict:
    """Read trace ``path`` and check it against ``spec``.  Raises OSError (it cannot be
    read) and UnicodeDecodeError (not UTF-8 text)."""
    return verify_lines(spec, read_trace_file(path).lines)
