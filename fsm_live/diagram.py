"""Diagrams of a lifecycle spec: Mermaid, Graphviz DOT, and SVG (through Graphviz).

Every function here is a pure function of a validated :class:`~fsm_live.spec.Spec`
(plus options): the same spec always gives the same text, byte for byte, ending
with a newline, so generated diagrams can be committed and checked for staleness
(see ``docs/update_diagrams.py``).  Only :func:`to_svg` does I/O: it runs the
Graphviz ``dot`` program.

What a diagram shows:

- every state; the initial state entered from a start point; final states
  leading to an end point (Mermaid ``[*]``) or drawn as a double circle (DOT);
- one arrow per (source, transition) pair of :meth:`Spec.edges`, labelled as in
  UML, ``trigger [guards] / actions``: e.g. ``give_up [exhausted]``,
  ``receive_payment [payments_enough] / record_payment`` (the row's ``before``
  then ``after`` actions);
- the rows that leave a state for itself as ONE arrow, its parts' labels joined
  (Mermaid draws several loops on one state on top of each other);
- internal rows (no exit, no entry) are no arrow: they are listed in the state,
  ``internal: add_to_order / record_item``, as UML lists internal transitions;
- with ``notes=True`` (the default), each state's entry and exit actions
  (``entry / ...``, ``exit / ...``), internal rows, tasks, timers and ignored
  events: a Mermaid note beside the state, extra lines of the node's label in DOT;
- roles styled (Mermaid ``classDef``; DOT attributes): ``success`` bold,
  ``failed`` red, ``final`` grey (and a double circle in DOT); with
  ``current=STATE`` that state is highlighted (yellow);
- with ``counts`` (a mapping ``(source, trigger, dest) -> times taken``, e.g.
  from a trace), each label ends with the count after a multiplication sign,
  e.g. ``retry \u00d73``.  Edges missing from ``counts`` show ``\u00d70`` (and
  are drawn dashed in DOT, and the others heavier the more they were taken);
  keys that name no edge of the spec are ignored.  :func:`read_trace_counts`
  reads them from JSONL trace files, with a warning for each row that is no
  edge of the spec.

Mermaid refuses to render text longer than its ``maxTextSize`` setting
(:data:`MERMAID_MAX_TEXT`, 50,000 characters by default): callers may warn when
:func:`to_mermaid`'s output is longer (``fsm-live diagram`` does).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs

from fsm_live.diagnostics.records import BadLine, Transition, parse_line
from fsm_live.errors import FsmLiveError
from fsm_live.spec import Spec, StateSpec, TransitionSpec

__all__ = (
    "DOCS_BEGIN",
    "DOCS_END",
    "MERMAID_MAX_TEXT",
    "EdgeCounts",
    "GraphvizFailed",
    "GraphvizMissing",
    "TraceCounts",
    "TraceUnreadable",
    "find_docs_block",
    "read_trace_counts",
    "render_docs_block",
    "to_dot",
    "to_mermaid",
    "to_svg",
    "trace_counts",
)

#: How many times each edge was taken, keyed by ``(source, trigger, dest)``.
EdgeCounts = Mapping[tuple[str, str, str], int]

#: Markers around a generated diagram embedded in a Markdown page.
DOCS_BEGIN = "<!-- diagram:begin -->"
DOCS_END = "<!-- diagram:end -->"

_INSTALL_HINT = (
    "install Graphviz (`apt-get install graphviz` on Debian/Ubuntu, "
    "`brew install graphviz` on macOS), or use `--format dot` or `--format mermaid`"
)
#: Note lines are wrapped at this width so notes stay narrower than the diagram.
_NOTE_WIDTH = 48
_INDENT = "    "
_TIMES = "\u00d7"  # the multiplication sign of "retry \u00d73"
#: Mermaid's default ``maxTextSize``: longer diagrams render as an error message.
MERMAID_MAX_TEXT = 50_000
#: The heaviest pen width of a DOT edge (the most taken edge of a trace).
_MAX_PEN = 5.0


class GraphvizMissing(FsmLiveError, RuntimeError):
    """SVG was asked for, but Graphviz's ``dot`` program is not on ``PATH``.

    The message says how to install it, or which text formats need no Graphviz.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or f"Graphviz's `dot` program was not found on PATH; to render SVG, {_INSTALL_HINT}"
        )


class GraphvizFailed(FsmLiveError, RuntimeError):
    """Graphviz's ``dot`` ran but failed (non-zero exit, timeout, or could not start)."""


class TraceUnreadable(FsmLiveError, ValueError):
    """A trace file cannot be read or a row is not a transition; the message is
    one line, ``FILE:LINE: what is wrong`` (``FILE: why`` when it cannot be opened)."""


@attrs.frozen
class TraceCounts:
    """What :func:`read_trace_counts` read: ``counts`` of the spec's edges, and
    ``strays``, one ``FILE:LINE: ...`` warning per transition row that is no edge
    of the spec (left out of ``counts``)."""

    counts: Counter[tuple[str, str, str]]
    strays: tuple[str, ...] = ()


def read_trace_counts(spec: Spec, paths: Iterable[str | Path]) -> TraceCounts:
    """Edge counts of ``spec`` from JSONL trace files, and a warning per row that is
    not an edge of it.

    Lines are read as ``fsm-live verify`` reads them
    (:mod:`fsm_live.diagnostics.records`): transition rows are counted, failure
    and stats records skipped.  A line verify refuses as no record (not JSON, a
    key missing, a value of the wrong type) is refused here too, with the same
    words: :class:`TraceUnreadable` ``FILE:LINE: problem``; so is a file that
    cannot be read.  Counts of several files add up.  The order of the rows is
    not checked (``fsm-live verify`` does that).
    """
    edges = {(source, t.trigger, t.dest) for source, t in spec.edges()}
    counts: Counter[tuple[str, str, str]] = Counter()
    strays: list[str] = []
    for path in paths:
        for number, row in _transitions(path):
            if row in edges:
                counts[row] += 1
            else:
                source, trigger, dest = row
                strays.append(
                    f"{path}:{number}: {source} -{trigger}-> {dest} is not an edge of spec "
                    f"{spec.name!r}: left out of the counts"
                )
    return TraceCounts(counts, tuple(strays))


def trace_counts(paths: Iterable[str | Path]) -> Counter[tuple[str, str, str]]:
    """Counts ``(from, trigger, to) -> times`` of every transition row of JSONL trace
    files, read as :func:`read_trace_counts` reads them (no spec: no row is left
    out).  Raises :class:`TraceUnreadable`."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for path in paths:
        counts.update(row for _, row in _transitions(path))
    return counts


def _transitions(path: str | Path) -> Iterator[tuple[int, tuple[str, str, str]]]:
    """``(line, (from, trigger, to))`` of each transition row of a trace file."""
    try:
        with Path(path).open(encoding="utf-8") as file:
            lines = list(file)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TraceUnreadable(f"{path}: cannot read: {why}") from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        record = parse_line(text, number)
        if isinstance(record, BadLine):
            raise TraceUnreadable(f"{path}:{record.line}: {record.problem}")
        if isinstance(record, Transition):
            yield number, record.edge


# -- shared helpers --------------------------------------------------------------------------


def _row_label(transition: TransitionSpec) -> str:
    """``trigger [guards] / actions`` (UML's transition label); internal rows say so."""
    actions = [*transition.before, *transition.after]
    label = f"{transition.trigger}{transition.guard_label}"
    if actions:
        label += f" / {', '.join(actions)}"
    return f"(internal) {label}" if transition.internal else label


def _edge_label(source: str, transition: TransitionSpec, counts: EdgeCounts | None) -> str:
    """``trigger [guards] / actions``, plus ``" \u00d7N"`` when counts are given."""
    label = _row_label(transition)
    if counts is not None:
        label += f" {_TIMES}{counts.get((source, transition.trigger, transition.dest), 0)}"
    return label


@attrs.frozen
class _Arrow:
    """One arrow drawn: its rows (several for a state's loops onto itself)."""

    source: str
    dest: str
    rows: tuple[TransitionSpec, ...]

    def labels(self, counts: EdgeCounts | None) -> list[str]:
        return [_edge_label(self.source, row, counts) for row in self.rows]

    def taken(self, counts: EdgeCounts) -> int:
        return sum(counts.get((self.source, row.trigger, row.dest), 0) for row in self.rows)


def _arrows(spec: Spec, *, internal: bool = False) -> list[_Arrow]:
    """The arrows, in table order, loops merged at the first; internal rows only with
    ``internal`` (when no note lists them), as parts of their state's loop."""
    arrows: list[_Arrow] = []
    loops: dict[str, int] = {}
    for source, transition in spec.edges():
        if transition.internal and not internal:
            continue
        if transition.dest != source:
            arrows.append(_Arrow(source, transition.dest, (transition,)))
        elif source in loops:
            loop = arrows[loops[source]]
            arrows[loops[source]] = _Arrow(source, source, (*loop.rows, transition))
        else:
            loops[source] = len(arrows)
            arrows.append(_Arrow(source, source, (transition,)))
    return arrows


def _note_lines(spec: Spec, state: StateSpec, counts: EdgeCounts | None = None) -> list[str]:
    """The state's actions, internal rows, tasks, timers and ignored events as short
    lines; empty when it has none."""
    lines: list[str] = []
    if state.on_enter:
        lines += _wrap(f"entry / {', '.join(state.on_enter)}")
    if state.on_exit:
        lines += _wrap(f"exit / {', '.join(state.on_exit)}")
    for transition in spec.transitions_from(state.name):
        if transition.internal:
            label = _edge_label(state.name, transition, counts).removeprefix("(internal) ")
            lines += _wrap(f"internal: {label}")
    if state.tasks:
        lines += _wrap(f"tasks: {', '.join(state.tasks)}")
    if state.timers:
        timers = [
            f"{timer.name} fires {' or '.join(timer.triggers)}" if timer.triggers else timer.name
            for timer in state.timers
        ]
        lines += _wrap(f"timers: {', '.join(timers)}")
    if state.ignore:
        lines += _wrap(f"ignores: {', '.join(state.ignore)}")
    return lines


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=_NOTE_WIDTH,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


# -- Mermaid ---------------------------------------------------------------------------------

_MERMAID_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Words Mermaid's state-diagram lexer (case-insensitively) takes as keywords
#: where a state id is expected; it also takes any word starting with "default".
_MERMAID_KEYWORDS = frozenset(
    {
        "state",
        "note",
        "class",
        "classdef",
        "scale",
        "statediagram",
        "direction",
        "hide",
        "acctitle",
        "accdescr",
        "end",
        "as",
        "root",
        "root_start",
        "root_end",
    }
)
#: Characters that end or break a label or note in Mermaid (``:`` and ``;`` end a
#: label, ``#`` starts a comment or an entity, quotes/brackets/braces get eaten).
_MERMAID_UNSAFE = re.compile(r'[:;#"<>{}\r\n]+')
_MERMAID_UNSAFE_IN_NOTE = re.compile(r'[;#"<>{}\r\n]+')


def _mermaid_text(text: str) -> str:
    return " ".join(_MERMAID_UNSAFE.sub(" ", text).split())


def _mermaid_ids(spec: Spec) -> dict[str, str]:
    """State name -> Mermaid id: the name itself when Mermaid reads it as an id, else an alias."""

    def safe(name: str) -> bool:
        lowered = name.lower()
        return (
            bool(_MERMAID_ID.match(name))
            and lowered not in _MERMAID_KEYWORDS
            and not lowered.startswith("default")
        )

    ids: dict[str, str] = {}
    taken = set(spec.states)
    for index, name in enumerate(spec.states):
        if safe(name):
            ids[name] = name
            continue
        alias = f"s{index}"
        while alias in taken:
            alias += "_"
        taken.add(alias)
        ids[name] = alias
    return ids


def to_mermaid(
    spec: Spec,
    *,
    notes: bool = True,
    counts: EdgeCounts | None = None,
    current: str | None = None,
) -> str:
    """Render ``spec`` as a Mermaid ``stateDiagram-v2`` (renders in GitHub Markdown).

    Lines, in this order: aliases for state names Mermaid cannot use as ids
    (``state "NAME" as s3``; none for ordinary names), ``[*] --> INITIAL``, one
    ``SOURCE --> DEST: label`` per arrow in table order (a state's loops onto
    itself merged into one, their labels joined by ``|``), ``FINAL --> [*]`` per
    final state, then (if ``notes``) one ``note right of STATE`` ... ``end note``
    block per state that has something to list, then the role styles
    (``classDef`` and ``class`` lines for the roles the spec uses, and
    ``current``).  Text Mermaid would misread (``:``, ``;``, ``#``, quotes,
    brackets, braces) is dropped from labels and notes.

    ``counts`` is described in the module docstring; ``current`` names a state
    to highlight (``KeyError`` if the spec has no such state).  Returns text
    ending with a newline.
    """
    ids = _mermaid_ids(spec)
    if current is not None and current not in ids:
        raise KeyError(current)
    lines = ["stateDiagram-v2"]
    for name, node_id in ids.items():
        if node_id != name:
            lines.append(f'{_INDENT}state "{_mermaid_text(name)}" as {node_id}')
    lines.append(f"{_INDENT}[*] --> {ids[spec.initial]}")
    for arrow in _arrows(spec, internal=not notes):
        label = " | ".join(_mermaid_text(part) for part in arrow.labels(counts))
        lines.append(f"{_INDENT}{ids[arrow.source]} --> {ids[arrow.dest]}: {label}")
    lines.extend(
        f"{_INDENT}{ids[name]} --> [*]" for name, state in spec.states.items() if state.final
    )
    if notes:
        for name, state in spec.states.items():
            note = [_mermaid_note_text(line) for line in _note_lines(spec, state, counts)]
            if note:
                lines.append(f"{_INDENT}note right of {ids[name]}")
                lines.extend(f"{_INDENT * 2}{line}" for line in note)
                lines.append(f"{_INDENT}end note")
    for role, members in _roles(spec, current).items():
        lines.append(f"{_INDENT}classDef {role} {_MERMAID_STYLES[role]}")
        lines.append(f"{_INDENT}class {','.join(ids[name] for name in members)} {role}")
    return "\n".join(lines) + "\n"


#: Mermaid styles of the roles (``classDef``); ``current`` is the highlighted state.
_MERMAID_STYLES: Final = {
    "success": "stroke-width:3px,font-weight:bold",
    "failed": "fill:#fde2e2,stroke:#c0392b,color:#922b21",
    "final": "fill:#eeeeee,stroke:#888888,color:#555555",
    "current": "fill:#fff3a0,stroke:#b7950b,stroke-width:3px",
}


def _roles(spec: Spec, current: str | None) -> dict[str, list[str]]:
    """Role -> its states, for the roles the spec uses (and ``current``), in order."""
    roles: dict[str, list[str]] = {}
    for name, state in spec.states.items():
        for role in ("success", "failed", "final"):
            if getattr(state, role):
                roles.setdefault(role, []).append(name)
    if current is not None:
        roles["current"] = [current]
    return roles


def _mermaid_note_text(line: str) -> str:
    # Inside a multi-line note, ":" is plain text; the note ends at the first "end note".
    text = " ".join(_MERMAID_UNSAFE_IN_NOTE.sub(" ", line).split())
    return re.sub(r"(?i)end\s+note", "end-note", text)


# -- Graphviz DOT ----------------------------------------------------------------------------

#: Id of the start point; brackets cannot occur in a state name, so it never collides.
_DOT_START = "[*]"
_DOT_FONT = "Helvetica,Arial,sans-serif"


def _dot_escape(text: str) -> str:
    """Escape text for the inside of a DOT double-quoted string (no escapes of our own)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")


def _dot_string(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot_attrs(attrs: Mapping[str, str]) -> str:
    """``[k=v, ...]``; values are emitted as they are (already quoted where needed)."""
    return "[" + ", ".join(f"{key}={value}" for key, value in attrs.items()) + "]"


def to_dot(
    spec: Spec,
    *,
    notes: bool = True,
    counts: EdgeCounts | None = None,
    current: str | None = None,
) -> str:
    """Render ``spec`` as a Graphviz ``digraph`` (DOT source, for ``dot -Tsvg`` and friends).

    Every id and label is a double-quoted, escaped string.  The spec's name is the
    graph's title; a point node ``"[*]"`` leads to the initial state; final states
    are grey double circles; success states have a thicker outline; failed states
    are red; ``current`` (a state name; ``KeyError`` if unknown) is filled yellow.
    With ``notes``, a node's label lists the state's actions, internal rows,
    tasks and timers under its name (left aligned); every node's tooltip (shown
    on hover in SVG) gives the state's description and log level.  A state's
    loops onto itself are one edge, one line of its label per row.  With
    ``counts``, each label part ends with ``\u00d7N`` and edges never taken are
    dashed and grey; the others get a pen width from 1 to 5 in proportion to
    their count (the most taken edge is the heaviest).

    Returns text ending with a newline.
    """
    if current is not None and current not in spec.states:
        raise KeyError(current)
    font = _dot_string(_DOT_FONT)
    graph = {"label": _dot_string(spec.name), "labelloc": "t", "fontname": font}
    node = {"shape": "box", "style": "rounded", "fontname": font, "fontsize": "11"}
    edge = {"fontname": font, "fontsize": "10"}
    start = {"shape": "point", "width": "0.2", "label": '""', "tooltip": _dot_string("start")}
    lines = [
        f"digraph {_dot_string(spec.name)} {{",
        f"{_INDENT}graph {_dot_attrs(graph)};",
        f"{_INDENT}node {_dot_attrs(node)};",
        f"{_INDENT}edge {_dot_attrs(edge)};",
        f"{_INDENT}{_dot_string(_DOT_START)} {_dot_attrs(start)};",
    ]
    for name, state in spec.states.items():
        attrs = _dot_node(spec, state, counts if notes else None, notes, current=name == current)
        lines.append(f"{_INDENT}{_dot_string(name)} {_dot_attrs(attrs)};")
    lines.append(f"{_INDENT}{_dot_string(_DOT_START)} -> {_dot_string(spec.initial)};")
    arrows = _arrows(spec, internal=not notes)
    hottest = max((a.taken(counts) for a in arrows), default=0) if counts is not None else 0
    for arrow in arrows:
        attrs = {"label": _dot_string("\n".join(arrow.labels(counts)))}
        taken = arrow.taken(counts) if counts else 0
        if counts is not None and not taken:
            attrs.update(style="dashed", color='"gray50"', fontcolor='"gray50"')
        elif taken:
            attrs["penwidth"] = f"{1 + (_MAX_PEN - 1) * taken / hottest:.2f}"
        lines.append(
            f"{_INDENT}{_dot_string(arrow.source)} -> {_dot_string(arrow.dest)} "
            f"{_dot_attrs(attrs)};"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(
    spec: Spec, state: StateSpec, counts: EdgeCounts | None, notes: bool, *, current: bool
) -> dict[str, str]:
    note = _note_lines(spec, state, counts) if notes else []
    # "\n" centres the line before it and "\l" left-aligns it: name centred, notes aligned.
    label = _dot_escape(state.name)
    if note:
        label += "\\n" + "".join(_dot_escape(line) + "\\l" for line in note)
    tooltip = (
        f"{state.description} (log {state.log_level})"
        if state.description
        else f"log {state.log_level}"
    )
    attrs = {"label": f'"{label}"', "tooltip": _dot_string(tooltip)}
    if state.final:
        attrs.update(shape="doublecircle", color='"gray45"', fontcolor='"gray30"')
    if state.success:
        attrs["penwidth"] = "2"
    if state.failed:
        attrs.update(color='"#c0392b"', fontcolor='"#922b21"')
    if current:
        attrs.update(style='"rounded,filled"', fillcolor='"#fff3a0"', penwidth="3")
    return attrs


# -- SVG -------------------------------------------------------------------------------------


def to_svg(
    spec: Spec,
    *,
    notes: bool = True,
    counts: EdgeCounts | None = None,
    current: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Render ``spec`` as SVG by running Graphviz's ``dot -Tsvg`` on :func:`to_dot`'s output.

    Raises :class:`GraphvizMissing` when ``dot`` is not on ``PATH`` (the message
    says how to get it), and :class:`GraphvizFailed` when it cannot be started,
    exits non-zero, or runs longer than ``timeout`` seconds.  Deterministic for a
    given Graphviz version.  Returns text ending with a newline.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing
    source = to_dot(spec, notes=notes, counts=counts, current=current)
    try:
        completed = subprocess.run(
            [dot, "-Tsvg"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GraphvizFailed(f"Graphviz `dot` did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise GraphvizFailed(f"could not run Graphviz `dot` ({dot}): {exc}") from exc
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", "replace").strip()
        raise GraphvizFailed(
            f"Graphviz `dot` exited with status {completed.returncode}"
            + (f": {detail}" if detail else "")
        )
    svg = completed.stdout.decode("utf-8")
    return svg if svg.endswith("\n") else svg + "\n"


# -- Markdown pages --------------------------------------------------------------------------


def render_docs_block(spec: Spec) -> str:
    """The block embedded in a Markdown page: markers around a fenced Mermaid diagram.

    From :data:`DOCS_BEGIN` to :data:`DOCS_END` inclusive, with no newline after
    the end marker, so a page's block can be compared with (or replaced by) it as is.
    """
    return f"{DOCS_BEGIN}\n```mermaid\n{to_mermaid(spec)}```\n{DOCS_END}"


def find_docs_block(text: str) -> str | None:
    """The first block from :data:`DOCS_BEGIN` to :data:`DOCS_END` in ``text``, or None."""
    begin = text.find(DOCS_BEGIN)
    if begin < 0:
        return None
    end = text.find(DOCS_END, begin)
    if end < 0:
        return None
    return text[begin : end + len(DOCS_END)]
