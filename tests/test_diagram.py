"""Diagrams from specs: Mermaid and DOT structure, counts, determinism, SVG, docs staleness."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fsm_live.diagram import (
    DOCS_BEGIN,
    DOCS_END,
    GraphvizFailed,
    GraphvizMissing,
    find_docs_block,
    render_docs_block,
    to_dot,
    to_mermaid,
    to_svg,
)
from fsm_live.errors import FsmLiveError
from fsm_live.spec import Spec, StateSpec, TimerSpec, TransitionSpec

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "specs" / "connection.yaml"
TRAFFIC_PATH = ROOT / "specs" / "examples" / "traffic_light.yaml"
DOCS_PAGE = ROOT / "docs" / "lifecycle.md"
SIX_STATES = ("DISCONNECTED", "CONNECTING", "CONNECTED", "RECONNECTING", "FAILED", "CLOSED")
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed")


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec.from_path(SPEC_PATH)


@pytest.fixture(scope="module")
def traffic() -> Spec:
    return Spec.from_path(TRAFFIC_PATH)


def odd_spec(**names: str) -> Spec:
    """A two-state spec built directly (no validation), to feed awkward text to renderers."""
    first = names.get("first", "A")
    last = names.get("last", "B")
    trigger = names.get("trigger", "go")
    states = {
        first: StateSpec(
            name=first,
            description=names.get("description", ""),
            tasks=(names.get("task", "dial"),),
            timers=(TimerSpec(name="backoff", triggers=(trigger,)),),
        ),
        last: StateSpec(name=last, final=True),
    }
    transition = TransitionSpec(trigger=trigger, sources=(first,), dest=last)
    return Spec(
        name=names.get("name", "odd"),
        initial=first,
        states=states,
        transitions=(transition,),
        errors=Spec.default().errors,
    )


# -- a checker for the Mermaid subset to_mermaid emits ----------------------------------------

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_MERMAID_LINE = re.compile(
    rf"    (?:\[\*\] --> {_ID}|{_ID} --> \[\*\]|{_ID} --> {_ID}: [^:;#\n]+"
    rf'|state "[^"\n]+" as {_ID}|note right of {_ID}'
    rf"|classDef (?:success|failed|final|current) [a-z0-9:#,.-]+"
    rf"|class {_ID}(?:,{_ID})* (?:success|failed|final|current))"
)


def check_mermaid(text: str) -> None:
    """Every line is one of the statements to_mermaid emits; notes are closed."""
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    in_note = False
    for line in lines[1:]:
        if in_note:
            if line == "    end note":
                in_note = False
            else:
                assert line.startswith("        "), line
                assert not re.search(r"[;#\"<>{}]|end\s+note", line, re.IGNORECASE), line
            continue
        assert _MERMAID_LINE.fullmatch(line), line
        in_note = line.startswith("    note right of ")
    assert not in_note, "unterminated note"


# -- a checker for the DOT subset to_dot emits ------------------------------------------------

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_VALUE = rf"(?:{_QUOTED}|[A-Za-z0-9_.]+)"
_ATTRS = rf"\[[a-z]+={_VALUE}(?:, [a-z]+={_VALUE})*\]"
_DOT_LINE = re.compile(
    rf"    (?:(?:graph|node|edge) {_ATTRS}|{_QUOTED}(?: -> {_QUOTED})?(?: {_ATTRS})?);"
)


def check_dot(text: str) -> None:
    assert text.endswith("}\n")
    lines = text.splitlines()
    assert re.fullmatch(rf"digraph {_QUOTED} \{{", lines[0]), lines[0]
    assert lines[-1] == "}"
    for line in lines[1:-1]:
        assert _DOT_LINE.fullmatch(line), line


def dot_edge(source: str, dest: str, label: str) -> str:
    return f'    "{source}" -> "{dest}" [label="{label}"'


# -- Mermaid ----------------------------------------------------------------------------------


def test_mermaid_is_a_state_diagram_with_all_six_states(spec: Spec) -> None:
    text = to_mermaid(spec)
    check_mermaid(text)
    assert text.startswith("stateDiagram-v2\n")
    for state in SIX_STATES:
        assert re.search(rf"\b{state}\b", text), state


def test_mermaid_start_and_final_points(spec: Spec) -> None:
    lines = to_mermaid(spec).splitlines()
    assert "    [*] --> DISCONNECTED" in lines
    assert "    CLOSED --> [*]" in lines
    assert sum("[*]" in line for line in lines) == 2


def test_mermaid_has_one_labelled_line_per_edge(spec: Spec) -> None:
    lines = to_mermaid(spec, notes=False).splitlines()
    edges = list(spec.edges())
    for source, transition in edges:
        line = f"    {source} --> {transition.dest}: {transition.trigger}{transition.guard_label}"
        assert line in lines
    assert sum(": " in line for line in lines) == len(edges) == 21


def test_mermaid_shows_guard_labels(spec: Spec, traffic: Spec) -> None:
    assert "    RECONNECTING --> FAILED: give_up [exhausted]\n" in to_mermaid(spec)
    text = to_mermaid(traffic)
    assert "    FLASHING --> RED: repair [not exhausted]\n" in text
    assert "    FLASHING --> RETIRED: repair [exhausted]\n" in text


def test_mermaid_notes_list_tasks_and_timers(spec: Spec) -> None:
    text = to_mermaid(spec)
    note = text.split("    note right of CONNECTED\n", 1)[1].split("    end note\n", 1)[0]
    for task in spec.states["CONNECTED"].tasks:
        assert task in note
    assert "heartbeat_timeout fires lost" in note
    assert "stability" in note
    assert "backoff fires give_up or retry" in text
    assert "note right of DISCONNECTED" not in text  # nothing to say about it
    assert text.count("note right of") == text.count("end note") == 5


def test_mermaid_without_notes(spec: Spec) -> None:
    text = to_mermaid(spec, notes=False)
    check_mermaid(text)
    assert "note" not in text
    assert "tasks" not in text


def test_mermaid_aliases_state_names_mermaid_reads_as_keywords() -> None:
    # Mermaid's lexer takes "note" (and any id starting with "default") as keywords.
    text = to_mermaid(odd_spec(first="note", last="default_state"))
    check_mermaid(text)
    assert '    state "note" as s0\n' in text
    assert '    state "default_state" as s1\n' in text
    assert "    s0 --> s1: go\n" in text
    assert "    note right of s0\n" in text


def test_mermaid_drops_characters_that_break_it() -> None:
    text = to_mermaid(odd_spec(trigger="a:b;c#d", task='x"end note'))
    check_mermaid(text)
    assert "    A --> B: a b c d\n" in text
    assert "end-note" in text


# -- DOT --------------------------------------------------------------------------------------


def test_dot_structure(spec: Spec) -> None:
    text = to_dot(spec)
    check_dot(text)
    assert text.startswith('digraph "connection" {\n')
    for state in SIX_STATES:
        assert f'\n    "{state}" [label="{state}' in text
    assert '    "[*]" [shape=point' in text
    assert '    "[*]" -> "DISCONNECTED";\n' in text
    closed = next(line for line in text.splitlines() if line.startswith('    "CLOSED" ['))
    assert "shape=doublecircle" in closed
    assert "shape=doublecircle" not in text.replace(closed, "")


def test_dot_has_every_edge_labelled(spec: Spec) -> None:
    text = to_dot(spec)
    for source, transition in spec.edges():
        assert (
            dot_edge(source, transition.dest, f"{transition.trigger}{transition.guard_label}")
            in text
        )
    assert text.count(" -> ") == len(list(spec.edges())) + 1  # plus the start point


def test_dot_notes_are_extra_label_lines(spec: Spec) -> None:
    text = to_dot(spec)
    assert (
        '"CONNECTING" [label="CONNECTING\\ntasks: dial\\ltimers: open_timeout fires '
        'connect_failed\\l"' in text
    )
    assert 'tooltip="registered; traffic flows (log INFO)"' in text
    bare = to_dot(spec, notes=False)
    check_dot(bare)
    assert "tasks:" not in bare
    assert '"CONNECTING" [label="CONNECTING", ' in bare


def test_dot_escapes_quotes_and_backslashes() -> None:
    text = to_dot(odd_spec(name='say "hi"', description='a "quoted" \\ thing'))
    check_dot(text)
    assert 'digraph "say \\"hi\\"" {' in text
    assert 'tooltip="a \\"quoted\\" \\\\ thing (log INFO)"' in text


@needs_dot
@pytest.mark.parametrize("path", [SPEC_PATH, TRAFFIC_PATH], ids=["connection", "traffic"])
@pytest.mark.parametrize("notes", [True, False], ids=["notes", "bare"])
def test_dot_is_accepted_by_graphviz(path: Path, notes: bool) -> None:
    source = to_dot(Spec.from_path(path), notes=notes, counts={("RED", "tick", "GREEN"): 2})
    done = subprocess.run(
        ["dot", "-Tsvg"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout
    assert not done.stderr


@needs_dot
def test_dot_with_awkward_text_is_accepted_by_graphviz() -> None:
    source = to_dot(odd_spec(name='say "hi"', description='a "quoted" \\ thing \\'))
    done = subprocess.run(
        ["dot", "-Tsvg"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


# -- counts -----------------------------------------------------------------------------------


def test_counts_annotate_mermaid_labels(spec: Spec) -> None:
    counts = {
        ("RECONNECTING", "retry", "CONNECTING"): 3,
        ("RECONNECTING", "give_up", "FAILED"): 1,
        ("NOWHERE", "teleport", "CONNECTED"): 9,
    }  # names no edge: ignored
    text = to_mermaid(spec, counts=counts)
    check_mermaid(text)
    assert "    RECONNECTING --> CONNECTING: retry \u00d73\n" in text
    assert "    RECONNECTING --> FAILED: give_up [exhausted] \u00d71\n" in text
    assert "    DISCONNECTED --> CONNECTING: start \u00d70\n" in text
    assert "teleport" not in text
    assert text.count("\u00d7") == len(list(spec.edges()))


def test_counts_annotate_dot_labels(spec: Spec) -> None:
    text = to_dot(
        spec,
        counts={
            ("RECONNECTING", "retry", "CONNECTING"): 3,
            ("CONNECTING", "opened", "CONNECTED"): 1,
        },
    )
    check_dot(text)
    # The most taken edge is the heaviest; the others in proportion.
    assert dot_edge("RECONNECTING", "CONNECTING", "retry \u00d73") + ", penwidth=5.00];" in text
    assert dot_edge("CONNECTING", "CONNECTED", "opened \u00d71") + ", penwidth=2.33];" in text
    assert dot_edge("DISCONNECTED", "CONNECTING", "start \u00d70") + ", style=dashed" in text


def test_no_counts_means_no_annotation(spec: Spec) -> None:
    assert "\u00d7" not in to_mermaid(spec) + to_dot(spec)


# -- determinism ------------------------------------------------------------------------------


def test_output_is_deterministic(spec: Spec) -> None:
    again = Spec.from_path(SPEC_PATH)
    for render in (to_mermaid, to_dot):
        first = render(spec)
        assert first == render(again) == render(spec)
        assert first.endswith("\n")
        assert not first.endswith("\n\n")


# -- SVG --------------------------------------------------------------------------------------


def test_svg_without_graphviz_raises_with_install_hint(
    spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(GraphvizMissing) as caught:
        to_svg(spec)
    assert isinstance(caught.value, FsmLiveError)
    assert isinstance(caught.value, RuntimeError)
    message = str(caught.value)
    for hint in ("apt-get install graphviz", "brew install graphviz", "--format dot", "mermaid"):
        assert hint in message


def test_svg_when_dot_fails(spec: Spec, monkeypatch: pytest.MonkeyPatch) -> None:
    # Python stands in for a broken `dot`: it rejects `-Tsvg` with exit status 2.
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: sys.executable)
    with pytest.raises(GraphvizFailed, match="exited with status 2"):
        to_svg(spec)


@needs_dot
def test_svg_with_graphviz(spec: Spec) -> None:
    svg = to_svg(spec)
    assert svg.lstrip().startswith("<?xml")
    assert "</svg>" in svg
    assert svg.endswith("\n")
    for state in SIX_STATES:
        assert f">{state}<" in svg
    assert svg == to_svg(spec)


# -- a second spec ----------------------------------------------------------------------------


def test_traffic_light_example_renders(traffic: Spec) -> None:
    text = to_mermaid(traffic)
    check_mermaid(text)
    for state in ("DARK", "RED", "GREEN", "YELLOW", "FLASHING", "RETIRED"):
        assert re.search(rf"\b{state}\b", text), state
    assert "    [*] --> DARK\n" in text
    assert "    RETIRED --> [*]\n" in text
    assert "    RED --> GREEN: tick\n" in text
    assert "note" not in text  # no tasks, no timers
    dot = to_dot(traffic)
    check_dot(dot)
    assert dot.startswith('digraph "traffic_light" {\n')
    assert "shape=doublecircle" in dot


# -- docs/lifecycle.md ------------------------------------------------------------------------


def test_docs_diagram_is_up_to_date(spec: Spec) -> None:
    page = DOCS_PAGE.read_text(encoding="utf-8")
    block = find_docs_block(page)
    assert block is not None, f"{DOCS_PAGE.name} has no {DOCS_BEGIN} ... {DOCS_END} block"
    assert block == render_docs_block(spec), (
        "docs/lifecycle.md's diagram is stale: regenerate it with `python docs/update_diagrams.py`"
    )


def test_docs_page_names_every_state_and_trigger(spec: Spec) -> None:
    page = DOCS_PAGE.read_text(encoding="utf-8")
    for name in (*spec.states, *spec.triggers):
        assert f"`{name}`" in page, name


def test_docs_block_is_a_fenced_mermaid_diagram(spec: Spec) -> None:
    block = render_docs_block(spec)
    assert block.startswith(f"{DOCS_BEGIN}\n```mermaid\nstateDiagram-v2\n")
    assert block.endswith(f"\n```\n{DOCS_END}")


def test_find_docs_block() -> None:
    assert find_docs_block("no markers") is None
    assert find_docs_block(f"{DOCS_BEGIN} never closed") is None
    text = f"intro\n{DOCS_BEGIN}\nX\n{DOCS_END}\nouter\n"
    assert find_docs_block(text) == f"{DOCS_BEGIN}\nX\n{DOCS_END}"


# -- actions, internal rows, loops, roles, the current state (issue 19) --------------------------

LOOPS = Spec.from_yaml(
    """\
name: lamp
initial: UNLIT
actions: [click, glow, dim, count]
states:
  UNLIT: {on_exit: [click]}
  LIT: {on_enter: [glow], on_exit: [dim]}
  BROKEN: {failed: true}
  GONE: {final: true}
transitions:
  - {trigger: toggle, source: UNLIT, dest: LIT, before: [click], after: [count]}
  - {trigger: toggle, source: LIT, dest: UNLIT}
  - {trigger: flicker, source: LIT, dest: LIT}
  - {trigger: surge, source: LIT, dest: LIT, after: [count]}
  - {trigger: tap, source: LIT, internal: true, before: [count]}
  - {trigger: burn, source: LIT, dest: BROKEN}
  - {trigger: fix, source: BROKEN, dest: UNLIT}
  - {trigger: bin, source: [UNLIT, BROKEN], dest: GONE}
""",
    "lamp.yaml",
)


def test_actions_are_drawn_on_edges_and_in_states() -> None:
    text = to_mermaid(LOOPS)
    check_mermaid(text)
    assert "    UNLIT --> LIT: toggle / click, count\n" in text
    note = text.split("    note right of LIT\n", 1)[1].split("    end note\n", 1)[0]
    assert "entry / glow" in note
    assert "exit / dim" in note
    assert "exit / click" in text.split("    note right of UNLIT\n", 1)[1]
    dot = to_dot(LOOPS)
    check_dot(dot)
    assert '"UNLIT" -> "LIT" [label="toggle / click, count"];' in dot
    assert "entry / glow\\lexit / dim\\l" in dot


def test_loops_on_one_state_are_one_arrow_and_internal_rows_are_no_arrow() -> None:
    text = to_mermaid(LOOPS)
    loops = [line for line in text.splitlines() if line.startswith("    LIT --> LIT:")]
    assert loops == ["    LIT --> LIT: flicker | surge / count"]
    assert "internal: tap / count" in text.split("    note right of LIT\n", 1)[1]
    assert "tap" not in "".join(line for line in text.splitlines() if "-->" in line)
    dot = to_dot(LOOPS)
    assert dot.count('"LIT" -> "LIT"') == 1
    assert '"LIT" -> "LIT" [label="flicker\\nsurge / count"];' in dot
    # Without notes, the internal row joins the loop, marked as internal.
    bare = to_mermaid(LOOPS, notes=False)
    check_mermaid(bare)
    assert "    LIT --> LIT: flicker | surge / count | (internal) tap / count\n" in bare


def test_loop_counts_add_up_per_row() -> None:
    counts = {("LIT", "flicker", "LIT"): 2, ("LIT", "surge", "LIT"): 1, ("LIT", "tap", "LIT"): 5}
    text = to_mermaid(LOOPS, counts=counts)
    assert "    LIT --> LIT: flicker \u00d72 | surge / count \u00d71\n" in text
    assert "internal: tap / count \u00d75" in text
    dot = to_dot(LOOPS, counts=counts)
    assert '"LIT" -> "LIT" [label="flicker \u00d72\\nsurge / count \u00d71", penwidth=5.00];' in dot


def test_roles_are_styled_and_the_current_state_highlighted() -> None:
    text = to_mermaid(LOOPS, current="LIT")
    check_mermaid(text)
    assert "    class BROKEN failed\n" in text
    assert "    class GONE final\n" in text
    assert "    class LIT current\n" in text
    assert "classDef failed fill:" in text
    assert "class" not in to_mermaid(LOOPS).split("classDef", 1)[0]  # styles come last
    success = to_mermaid(Spec.default())
    assert "    class CONNECTED success\n" in success
    assert "    class FAILED failed\n" in success
    dot = to_dot(LOOPS, current="LIT")
    check_dot(dot)
    assert '"BROKEN" [label="BROKEN", tooltip="log INFO", color="#c0392b"' in dot
    assert 'fillcolor="#fff3a0"' in dot.split('"LIT" [', 1)[1].split("\n", 1)[0]
    with pytest.raises(KeyError):
        to_mermaid(LOOPS, current="NOWHERE")
    with pytest.raises(KeyError):
        to_dot(LOOPS, current="NOWHERE")


def test_cli_diagram_current_and_unknown_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fsm_live.cli import main

    spec = TRAFFIC_PATH
    assert main(["diagram", str(spec), "--current", "GREEN"]) == 0
    assert "    class GREEN current\n" in capsys.readouterr().out
    assert main(["diagram", str(spec), "--current", "BLUE"]) == 2  # a bad argument
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"fsm-live diagram: error: --current BLUE: no such state in {spec} "
        "(states: DARK, RED, GREEN, YELLOW, FLASHING, RETIRED)\n"
    )


def test_cli_diagram_warns_of_trace_rows_that_are_no_edge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fsm_live.cli import main

    trace = tmp_path / "T.jsonl"
    rows = [("DARK", "RED", "power_on"), ("RED", "DARK", "tick"), ("RED", "GREEN", "tick")]
    trace.write_text(
        "".join(
            json.dumps({"t": i, "from": a, "to": b, "trigger": t, "reason": ""}) + "\n"
            for i, (a, b, t) in enumerate(rows)
        )
    )
    assert main(["diagram", str(TRAFFIC_PATH), "--trace", str(trace)]) == 0
    out, err = capsys.readouterr()
    assert err == (
        f"fsm-live diagram: warning: {trace}:2: RED -tick-> DARK is not an edge of spec "
        "'traffic_light': left out of the counts\n"
    )
    assert "    RED --> GREEN: tick \u00d71\n" in out
