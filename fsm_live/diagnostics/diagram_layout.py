"""Where the report's diagram draws each state, edge and label, in pixels: pure geometry.

The HTML page (:mod:`fsm_live.diagnostics.html`) draws the spec's diagram as a
Plotly figure of a fixed size whose axes are pixels, so what is decided here is
what the browser shows.  The rules:

* **states** sit in columns by their distance from the initial state; final
  states in a last column of their own, each at the height where the fewest
  straight edges into it would cross another state's box;
* a state's **box** is as wide as its name (estimated from its characters, bold,
  :data:`NODE_FONT` px; the page draws the box around the name, so the name never
  leaves it);
* each **edge** is a cubic Bézier curve bending to one side (opposite edges to
  opposite sides, parallel ones fanning out; an edge from a state to itself is a
  loop above it); its arrowhead ends where the curve enters the target's box;
* **labels** are placed one by one, the most taken edge first: at the first point
  along its curve (from the middle outwards) where the label's box overlaps no
  state and no label placed before it.  An edge never taken gets a label only
  where one fits (its name stays in the hover text); a taken edge with no free
  point keeps the middle.

Text widths are estimates (characters times an average advance that is generous
for the sans-serif fonts a browser falls back to): boxes may be a little wider
than the text, never narrower.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import attrs

from fsm_live.spec import Spec

__all__ = (
    "LABEL_FONT",
    "NODE_FONT",
    "Box",
    "DiagramLayout",
    "EdgeLayout",
    "columns",
    "layout_diagram",
    "text_width",
)

Point = tuple[float, float]
Edge = tuple[str, str, str]

#: Font sizes (px) of a state's name and of an edge's label.
NODE_FONT = 13
LABEL_FONT = 11
_NODE_PAD = 8  # px between a state's name and its box
_LABEL_PAD = 3
_MARGIN = 70  # px around the states
_ROW = 150  # px between two states of a column, at most
_LOOP = 55  # px a loop rises above its state
_EDGE_ROOM = 16  # px between a curve and the figure's edge, at least
#: Where a label is tried along its curve (0: where it leaves its source, 1: where it
#: enters its target), from the middle outwards; then as far beside the curve (px).
_CANDIDATES = tuple(0.5 + sign * 0.04 * step for step in range(11) for sign in (1, -1))[1:]
_SHIFTS = (0.0, 13.0, -13.0, 26.0, -26.0, 39.0, -39.0)


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """The width (px) of ``text`` at ``size`` px, estimated: 0.62 em a character
    (0.72 em bold), above the average advance of Arial, Helvetica, DejaVu Sans and
    Open Sans for letters, digits and ``_``."""
    return len(text) * size * (0.72 if bold else 0.62)


@attrs.frozen
class Box:
    """An axis-aligned box: centre ``(x, y)`` and size, in px (y grows downwards)."""

    x: float
    y: float
    width: float
    height: float

    def overlaps(self, other: Box, margin: float = 0.0) -> bool:
        """Whether the two boxes, each grown by ``margin`` px on every side, overlap."""
        return (
            abs(self.x - other.x) * 2 < self.width + other.width + 4 * margin
            and abs(self.y - other.y) * 2 < self.height + other.height + 4 * margin
        )

    def contains(self, point: Point, margin: float = 0.0) -> bool:
        """Whether ``point`` lies inside the box grown by ``margin`` px."""
        return (
            abs(point[0] - self.x) <= self.width / 2 + margin
            and abs(point[1] - self.y) <= self.height / 2 + margin
        )

    def crosses(self, start: Point, end: Point) -> bool:
        """Whether the segment from ``start`` to ``end`` passes through the box."""
        steps = max(2, int(math.dist(start, end) / 4))
        return any(
            self.contains((start[0] + (end[0] - start[0]) * i / steps,
                           start[1] + (end[1] - start[1]) * i / steps))
            for i in range(steps + 1)
        )  # fmt: skip


@attrs.frozen
class EdgeLayout:
    """One edge: the curve (``curve``: start, two control points, end), its
    arrowhead (from ``tail`` to ``tip``) and its label (``text`` in ``label``; None
    when no free place was found for an edge never taken)."""

    edge: Edge
    count: int
    curve: tuple[Point, Point, Point, Point]
    tip: Point
    tail: Point
    text: str
    label: Box | None

    def point(self, t: float) -> Point:
        """The curve's point at ``t`` (0: start, 1: end)."""
        return _bezier(self.curve, t)

    def svg_path(self) -> str:
        """The curve as an SVG path (``M x,y C ...``)."""
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = self.curve
        return f"M {x0:.1f},{y0:.1f} C {x1:.1f},{y1:.1f} {x2:.1f},{y2:.1f} {x3:.1f},{y3:.1f}"


@attrs.frozen
class DiagramLayout:
    """The whole diagram: its size (px), a box per state, an :class:`EdgeLayout`
    per edge (in the order of the ``counts`` given)."""

    width: float
    height: float
    nodes: dict[str, Box]
    edges: tuple[EdgeLayout, ...]


def columns(spec: Spec) -> dict[str, tuple[int, int]]:
    """Each state's column (its distance from the initial state by the spec's
    transitions; final states in a last column of their own; states not reachable
    without one there too) and its row in that column (spec order)."""
    final = spec.final_states
    depth = {spec.initial: 0}
    queue = deque([spec.initial])
    while queue:
        state = queue.popleft()
        for transition in spec.transitions_from(state):
            if transition.dest not in depth and transition.dest not in final:
                depth[transition.dest] = depth[state] + 1
                queue.append(transition.dest)
    last = max(depth.values(), default=0) + 1
    placed: dict[str, tuple[int, int]] = {}
    rows: dict[int, int] = {}
    for name in spec.states:
        column = depth.get(name, last)
        placed[name] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    return placed


def _box(name: str, x: float, y: float) -> Box:
    return Box(
        x,
        y,
        text_width(name, NODE_FONT, bold=True) + 2 * _NODE_PAD + 6,
        NODE_FONT * 1.4 + 2 * _NODE_PAD + 6,
    )


def _bezier(curve: Sequence[Point], t: float) -> Point:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = curve
    u = 1 - t
    a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
    return (a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3)


def _node_boxes(spec: Spec, width: float) -> tuple[dict[str, Box], float]:
    """The states' boxes and the diagram's height."""
    placed = columns(spec)
    count = max(column for column, _ in placed.values()) + 1
    tallest = max(sum(1 for c, _ in placed.values() if c == column) for column in range(count))
    height = max(300.0, 2 * _MARGIN + (tallest - 1) * _ROW)
    step = (width - 2 * _MARGIN) / max(1, count - 1)
    boxes: dict[str, Box] = {}
    final = spec.final_states
    for name, (column, row) in placed.items():
        if name in final:
            continue
        rows = sum(1 for c, _ in placed.values() if c == column)
        y = height / 2 + (row - (rows - 1) / 2) * _ROW
        boxes[name] = _box(name, _MARGIN + column * step, y)
    for name in spec.states:
        if name in final:
            boxes[name] = _final_box(spec, name, boxes, _MARGIN + placed[name][0] * step, height)
    # Wide names at the edges: keep every box inside the figure.
    for name, box in boxes.items():
        x = min(max(box.x, box.width / 2 + 8), width - box.width / 2 - 8)
        boxes[name] = attrs.evolve(box, x=x)
    return {name: boxes[name] for name in spec.states}, height


def _final_box(spec: Spec, name: str, boxes: dict[str, Box], x: float, height: float) -> Box:
    """A final state's box at ``x``, at the height where the fewest straight edges
    into it cross another state's box (the centre on a tie)."""
    sources = {source for source, transition in spec.edges() if transition.dest == name}
    best: tuple[int, float, Box] | None = None
    for y in range(_MARGIN, int(height - _MARGIN) + 1, 10):
        candidate = _box(name, x, float(y))
        if any(candidate.overlaps(box, 10) for box in boxes.values()):
            continue
        crossings = sum(
            other.crosses((boxes[source].x, boxes[source].y), (x, y))
            for source in sources
            if source in boxes
            for key, other in boxes.items()
            if key != source
        )
        score = (crossings, abs(y - height / 2), candidate)
        if best is None or score[:2] < best[:2]:
            best = score
    return best[2] if best is not None else _box(name, x, height / 2)


def _curve(source: Box, dest: Box, bend: float) -> tuple[Point, Point, Point, Point]:
    if source == dest:  # a loop above the state
        left = (source.x - source.width / 4, source.y - source.height / 2)
        right = (source.x + source.width / 4, source.y - source.height / 2)
        return (
            left,
            (left[0] - 25, left[1] - _LOOP),
            (right[0] + 25, right[1] - _LOOP),
            right,
        )
    p0, p3 = (source.x, source.y), (dest.x, dest.y)
    dx, dy = p3[0] - p0[0], p3[1] - p0[1]
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    offset = bend * length
    p1 = (p0[0] + dx / 3 + nx * offset, p0[1] + dy / 3 + ny * offset)
    p2 = (p0[0] + 2 * dx / 3 + nx * offset, p0[1] + 2 * dy / 3 + ny * offset)
    return (p0, p1, p2, p3)


def _arrow(curve: tuple[Point, Point, Point, Point], dest: Box) -> tuple[Point, Point, float]:
    """Where the curve enters ``dest`` (the arrow's tip), a point 14 px back along
    the curve (its tail), and the tip's ``t``."""
    inside, t = 1.0, 1.0
    while t > 0.5 and dest.contains(_bezier(curve, t), 2):
        inside, t = t, t - 0.01
    for _ in range(20):  # bisect to the border, within a fraction of a pixel
        middle = (t + inside) / 2
        if dest.contains(_bezier(curve, middle), 2):
            inside = middle
        else:
            t = middle
    tip = _bezier(curve, t)
    back = t
    while back > 0 and math.dist(_bezier(curve, back), tip) < 14:
        back -= 0.005
    return tip, _bezier(curve, back), t


def layout_diagram(
    spec: Spec, counts: Sequence[tuple[Edge, int]], width: float = 1100
) -> DiagramLayout:
    """Lay out ``spec``'s diagram ``width`` px wide, with each edge of ``counts``
    (``((source, trigger, dest), times taken)``, as
    :func:`~fsm_live.diagnostics.report.edge_counts` gives them)."""
    nodes, height = _node_boxes(spec, width)
    shapes = _shapes(nodes, counts)
    # A long edge bends far: grow the figure (and move everything down) so that
    # every curve stays inside it.
    ys = [_bezier(curve, i / 20)[1] for curve, *_ in shapes for i in range(21)]
    above = max(0.0, _EDGE_ROOM - min(ys, default=_EDGE_ROOM))
    below = max(0.0, max(ys, default=0.0) + above - (height - _EDGE_ROOM))
    if above or below:
        nodes = {name: attrs.evolve(box, y=box.y + above) for name, box in nodes.items()}
        height += above + below
        shapes = _shapes(nodes, counts)
    texts = [f"{trigger} ({count})" if count else trigger for (_, trigger, _), count in counts]
    labels: dict[int, Box | None] = {}
    placed: list[Box] = []
    for index in sorted(range(len(counts)), key=lambda i: (-counts[i][1], i)):
        curve, _, _, end = shapes[index]
        label = _place_label(texts[index], curve, end, nodes, placed, required=counts[index][1] > 0)
        labels[index] = label
        if label is not None:
            placed.append(label)
    edges = tuple(
        EdgeLayout(
            edge=edge,
            count=count,
            curve=shapes[index][0],
            tip=shapes[index][1],
            tail=shapes[index][2],
            text=texts[index],
            label=labels[index],
        )
        for index, (edge, count) in enumerate(counts)
    )
    return DiagramLayout(width, height, nodes, edges)


def _shapes(
    nodes: dict[str, Box], counts: Sequence[tuple[Edge, int]]
) -> list[tuple[tuple[Point, Point, Point, Point], Point, Point, float]]:
    """Each edge's curve, arrow tip and tail, and the tip's ``t``.  ``nodes`` are in
    spec order, which decides how edges bend (never the states' names)."""
    order = {name: index for index, name in enumerate(nodes)}
    pairs: dict[frozenset[str], list[int]] = {}
    for index, ((source, _, dest), _) in enumerate(counts):
        pairs.setdefault(frozenset((source, dest)), []).append(index)
    shapes = []
    for index, ((source, _, dest), _) in enumerate(counts):
        group = pairs[frozenset((source, dest))]
        rank = group.index(index) - (len(group) - 1) / 2
        # A lone edge bends gently; the edges between two states (either way) fan
        # out symmetrically.  The bend is measured on the normal of one direction
        # (from the state first in the spec), so that opposite edges part; an edge
        # forward in that order (most go left to right) bends up, one back down.
        bend = 0.12 if len(group) == 1 else 0.24 * rank
        if order[source] < order[dest]:
            bend = -bend
        curve = _curve(nodes[source], nodes[dest], bend)
        tip, tail, end = _arrow(curve, nodes[dest])
        shapes.append((curve, tip, tail, end))
    return shapes


def _place_label(
    text: str,
    curve: tuple[Point, Point, Point, Point],
    end: float,
    nodes: dict[str, Box],
    placed: list[Box],
    *,
    required: bool,
) -> Box | None:
    """The label's box: at the first free candidate place (between where the curve
    leaves its source and ``end``, where it enters its target): on the curve from
    its middle outwards, then beside it (:data:`_SHIFTS` px along its normal; the
    first two only for a label that is not ``required``).  With no free place: None,
    or for a ``required`` label the place it overlaps least."""
    size = (
        text_width(text, LABEL_FONT) + 2 * _LABEL_PAD,
        LABEL_FONT * 1.3 + 2 * _LABEL_PAD,
    )
    start = 0.0
    while start < 0.5 and any(box.contains(_bezier(curve, start)) for box in nodes.values()):
        start += 0.01
    best: tuple[float, Box] | None = None
    # A label that may be left out stays close to its curve: far from it, it would
    # read as another edge's.
    for shift in _SHIFTS if required else _SHIFTS[:3]:
        for t in _CANDIDATES:
            at = start + (end - start) * t
            (x, y), (nx, ny) = _bezier(curve, at), _normal(curve, at)
            box = Box(x + nx * shift, y + ny * shift, *size)
            if box.x - box.width / 2 < 0 or box.y - box.height / 2 < 0:
                continue
            overlap = sum(_overlap(box, node, 2) for node in nodes.values()) + sum(
                _overlap(box, label, 1) for label in placed
            )
            if overlap == 0:
                return box
            if best is None or overlap < best[0]:
                best = (overlap, box)
    return best[1] if required and best is not None else None


def _normal(curve: Sequence[Point], t: float) -> Point:
    """The curve's unit normal at ``t``."""
    (x0, y0), (x1, y1) = _bezier(curve, max(0.0, t - 0.01)), _bezier(curve, min(1.0, t + 0.01))
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    return (-(y1 - y0) / length, (x1 - x0) / length)


def _overlap(a: Box, b: Box, margin: float) -> float:
    """The area (px²) the two boxes, each grown by ``margin``, share."""
    dx = (a.width + b.width) / 2 + 2 * margin - abs(a.x - b.x)
    dy = (a.height + b.height) / 2 + 2 * margin - abs(a.y - b.y)
    return dx * dy if dx > 0 and dy > 0 else 0.0
