"""The HTML report's diagram geometry (fsm_live/diagnostics/diagram_layout.py): every
state's name inside its box, no label over a state or another label, every curve
inside the figure, every arrowhead outside the state it points at.  Pure geometry:
no browser (the page itself was looked at in headless Chromium)."""

from __future__ import annotations

import itertools
import random
import re
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from fsm_live.diagnostics.diagram_layout import (
    NODE_FONT,
    Box,
    DiagramLayout,
    columns,
    layout_diagram,
    text_width,
)
from fsm_live.spec import Spec

pytestmark = pytest.mark.timeout(60)

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
SPECS = sorted(SPECS_DIR.rglob("*.yaml"))


def _spec(path: Path) -> Spec:
    return Spec.from_path(path)


def _counts(spec: Spec, taken: bool) -> list[tuple[tuple[str, str, str], int]]:
    return [
        ((source, t.trigger, t.dest), (index + 1) * 10 if taken else 0)
        for index, (source, t) in enumerate(spec.edges())
    ]


def _check(layout: DiagramLayout, spec: Spec) -> None:
    assert set(layout.nodes) == set(spec.states)
    for name, box in layout.nodes.items():
        assert box.width >= text_width(name, NODE_FONT, bold=True) + 16, name
        assert box.x - box.width / 2 >= 0, name
        assert box.x + box.width / 2 <= layout.width, name
    for a, b in itertools.combinations(layout.nodes.values(), 2):
        assert not a.overlaps(b), (a, b)
    labels = [edge.label for edge in layout.edges if edge.label is not None]
    for label in labels:
        for name, node in layout.nodes.items():
            assert not label.overlaps(node), (label, name)
    for a, b in itertools.combinations(labels, 2):
        assert not a.overlaps(b), (a, b)
    for edge in layout.edges:
        for i in range(21):
            x, y = edge.point(i / 20)
            assert 0 <= y <= layout.height, edge.edge
            assert 0 <= x <= layout.width, edge.edge
        dest = layout.nodes[edge.edge[2]]
        assert not dest.contains(edge.tip), edge.edge  # the arrowhead shows
        assert dest.contains(edge.tip, 4), edge.edge  # ... at the box's border
        if edge.count:
            assert edge.label is not None, edge.edge  # a taken edge is always labelled


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_no_edge_taken(path: Path) -> None:
    spec = _spec(path)
    _check(layout_diagram(spec, _counts(spec, taken=False)), spec)


def _renamed(spec: Spec, path: Path, new: Callable[[str], str]) -> Spec:
    names = re.compile(r"\b(" + "|".join(map(re.escape, spec.states)) + r")\b")
    text = path.read_text(encoding="utf-8")
    return Spec.from_yaml(names.sub(lambda m: new(m.group(1)), text), source=str(path))


def _random_names(seed: int) -> Callable[[str], str]:
    rng = random.Random(seed)
    made: dict[str, str] = {}

    def new(name: str) -> str:
        if name not in made:
            letters = rng.choices(string.ascii_lowercase + "_", k=rng.randint(2, 18))
            made[name] = "".join(letters) + str(len(made))
        return made[name]

    return new


@pytest.mark.parametrize(
    "new",
    [
        str,
        str.lower,
        lambda name: name[::-1],
        lambda name: f"{name}_{name}",
        *(_random_names(seed) for seed in range(12)),
    ],
    ids=["as-is", "lower", "reversed", "twice-as-long", *(f"random-{s}" for s in range(12))],
)
def test_every_edge_of_the_lifecycle_taken_whatever_its_states_are_called(
    new: Callable[[str], str],
) -> None:
    spec = _renamed(Spec.default(), SPECS_DIR / "connection.yaml", new)
    layout = layout_diagram(spec, _counts(spec, taken=True))
    _check(layout, spec)
    assert all(edge.label is not None for edge in layout.edges)


def test_columns_follow_the_distance_from_the_initial_state() -> None:
    spec = Spec.default()
    placed = columns(spec)
    assert placed[spec.initial] == (0, 0)
    (final,) = spec.final_states
    assert placed[final][0] == max(column for column, _ in placed.values())
    first = spec.transitions_from(spec.initial)[0].dest
    assert placed[first][0] == 1


def test_boxes() -> None:
    box = Box(100, 50, 40, 20)
    assert box.contains((119, 59))
    assert not box.contains((121, 50))
    assert box.contains((121, 50), margin=2)
    assert box.overlaps(Box(139, 50, 40, 20))
    assert not box.overlaps(Box(141, 50, 40, 20))
    assert box.crosses((0, 50), (200, 50))
    assert not box.crosses((0, 0), (200, 0))
