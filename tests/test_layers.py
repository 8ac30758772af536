"""The house's layers, enforced from the import graph (read with ``ast``, not by importing).

Each room of ``fsm_live`` may import only the rooms listed for it in
:data:`ALLOWED` (docs/architecture.md draws them); some third-party libraries
are confined to the rooms that exist for them (:data:`CONFINED`).  The second
half of this module plants each violation the layering exists to prevent and
checks the rules catch it, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fsm_live"

#: The rooms each room may import (itself always).  ``""`` is the package's
#: ``__init__`` (the public re-exports).  Read bottom-up: errors, spec, core, ...
ALLOWED: Mapping[str, frozenset[str]] = {
    "errors": frozenset(),
    # counters: the counts a connection keeps, declared once (a leaf: attrs only).
    "counters": frozenset(),
    "spec": frozenset({"errors"}),
    "core": frozenset({"errors", "spec"}),
    # diagnostics: a trace's rows are read as `fsm-live verify` reads them.
    "diagram": frozenset({"errors", "spec", "diagnostics"}),
    "credentials": frozenset({"errors"}),
    "transport": frozenset({"errors"}),
    "config": frozenset({"errors", "core"}),
    "fault_proxy": frozenset(),
    "protocols": frozenset({"errors", "credentials", "transport"}),
    "lwp": frozenset({"errors", "credentials", "transport", "protocols"}),
    # Which worker holds which account: the seam a fleet drives, etcd behind it.
    "cluster": frozenset({"errors"}),
    # diagnostics: the trace format's keys, defined once with their reader.
    "_runtime": frozenset(
        {
            "counters",
            "errors",
            "spec",
            "core",
            "config",
            "credentials",
            "transport",
            "protocols",
            "diagnostics",
        }
    ),
    "connection": frozenset(
        {
            "counters",
            "errors",
            "spec",
            "core",
            "config",
            "credentials",
            "transport",
            "protocols",
            "lwp",
            "_runtime",
        }
    ),
    "fleet": frozenset(
        {
            "cluster",
            "counters",
            "errors",
            "spec",
            "core",
            "config",
            "credentials",
            "transport",
            "protocols",
            "lwp",
            "_runtime",
            "connection",
        }
    ),
    "demo": frozenset(
        {
            "counters",
            "errors",
            "spec",
            "core",
            "config",
            "credentials",
            "transport",
            "protocols",
            "lwp",
            "_runtime",
            "connection",
            "fault_proxy",
        }
    ),
    # Reads traces back (report, verify): pure functions of a spec and text.
    "diagnostics": frozenset({"counters", "errors", "spec"}),
    # Reads connections' and fleets' stats at scrape time.
    "metrics": frozenset(
        {"counters", "errors", "spec", "core", "_runtime", "connection", "fleet", "cluster"}
    ),
    "": frozenset(
        {
            "cluster",
            "counters",
            "errors",
            "spec",
            "core",
            "config",
            "credentials",
            "transport",
            "protocols",
            "_runtime",
            "connection",
            "fleet",
        }
    ),
    "cli": frozenset(
        {
            "cluster",
            "counters",
            "",
            "errors",
            "spec",
            "core",
            "diagram",
            "config",
            "credentials",
            "transport",
            "protocols",
            "lwp",
            "_runtime",
            "connection",
            "fleet",
            "demo",
            "fault_proxy",
            "diagnostics",
            "metrics",
        }
    ),
    "__main__": frozenset({"cli"}),
    # Runs users' specs on their own objects (the package itself never runs one).
    "runner": frozenset({"errors", "spec", "core"}),
    # Used by tests and by users, never by the package (no room lists it):
    "testing": frozenset(
        {
            "cluster",
            "counters",
            "errors",
            "spec",
            "core",
            "config",
            "credentials",
            "transport",
            "protocols",
            "lwp",
            "_runtime",
            "connection",
            "fleet",
            "fault_proxy",
            "runner",
        }
    ),
}

#: Third-party (and standard) modules only some rooms may import.
CONFINED: Mapping[str, frozenset[str]] = {
    "rich": frozenset({"cli"}),
    "hypothesis": frozenset({"testing"}),
    # testing: the recording server of the cluster's tests (fsm_live.testing.recorder).
    "websockets": frozenset({"transport", "_runtime", "lwp", "testing"}),
    "python_socks": frozenset({"transport"}),
    "transitions": frozenset({"core"}),
    "yaml": frozenset({"spec"}),
    "prometheus_client": frozenset({"metrics"}),
    "plotly": frozenset({"diagnostics"}),
    "aetcd": frozenset({"cluster"}),
    "grpc": frozenset({"cluster"}),
}

#: What the sans-I/O core never imports: event loops, sockets, clocks, threads.
CORE_FORBIDDEN = frozenset(
    {
        "anyio",
        "asyncio",
        "trio",
        "sniffio",
        "websockets",
        "socket",
        "ssl",
        "select",
        "selectors",
        "time",
        "threading",
        "rich",
    }
)


def room_of(module: str) -> str:
    """``fsm_live.core.lifecycle`` -> ``core``; ``fsm_live`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions and TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            if node.module == "fsm_live":  # from fsm_live import name-or-submodule
                found.update(
                    f"fsm_live.{alias.name}"
                    if (PACKAGE / alias.name).exists() or (PACKAGE / f"{alias.name}.py").exists()
                    else "fsm_live"
                    for alias in node.names
                )
            else:
                found.add(node.module)
    return found


@functools.cache
def _graph() -> Mapping[str, frozenset[str]]:
    return {
        module_name(path): frozenset(imports_of(path)) for path in sorted(PACKAGE.rglob("*.py"))
    }


def package_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules it imports (a fresh copy)."""
    return {module: set(imported) for module, imported in _graph().items()}


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Each import that breaks a rule, as ``"importer -> imported: rule"``."""
    found = []
    for module, imported in graph.items():
        room = room_of(module)
        for name in sorted(imported):
            top = name.split(".")[0]
            if top == "fsm_live":
                target = room_of(name)
                if target != room and target not in ALLOWED[room]:
                    found.append(
                        f"{module} -> {name}: {room or 'fsm_live'} may not import "
                        f"{target or 'fsm_live'}"
                    )
            elif top in CONFINED and room not in CONFINED[top]:
                found.append(f"{module} -> {name}: only {sorted(CONFINED[top])} import {top}")
            elif room == "core" and top in CORE_FORBIDDEN:
                found.append(f"{module} -> {name}: the core does no I/O")
    return found


def test_every_room_is_known() -> None:
    rooms = {room_of(module) for module in package_graph()}
    assert rooms == set(ALLOWED), rooms.symmetric_difference(ALLOWED)


def test_the_package_keeps_its_layers() -> None:
    assert violations(package_graph()) == []


def test_nothing_in_the_package_imports_testing() -> None:
    assert not [
        room for room, allowed in ALLOWED.items() if "testing" in allowed and room != "testing"
    ]


# -- the rules catch what they exist for -----------------------------------------------------

PLANTED = {
    "the core imports the config object": ("fsm_live.core.lifecycle", "fsm_live.config"),
    "the core imports an event loop": ("fsm_live.core.lifecycle", "anyio"),
    "the core reads the clock": ("fsm_live.core.backoff", "time"),
    "errors imports the core (a cycle)": ("fsm_live.errors", "fsm_live.core.classify"),
    "the spec imports the core": ("fsm_live.spec", "fsm_live.core.lifecycle"),
    "the transport imports the core": ("fsm_live.transport.errors", "fsm_live.core.classify"),
    "the demo imports testing": ("fsm_live.demo.story", "fsm_live.testing.properties"),
    "serve imports testing": ("fsm_live.cli.serve", "fsm_live.testing"),
    "a top-level module imports websockets": ("fsm_live.credentials", "websockets.frames"),
    "rich outside the CLI": ("fsm_live.connection", "rich.text"),
    "the runtime imports the connection": ("fsm_live._runtime.engine", "fsm_live.connection"),
    "the core imports the runtime": ("fsm_live.core.lifecycle", "fsm_live._runtime.engine"),
    "the package imports the CLI": ("fsm_live", "fsm_live.cli"),
    "diagnostics imports the runtime": ("fsm_live.diagnostics.records", "fsm_live._runtime.trace"),
    "diagnostics imports the CLI": ("fsm_live.diagnostics.report", "fsm_live.cli.views.report"),
    "diagnostics imports the connection": ("fsm_live.diagnostics.report", "fsm_live.connection"),
    "the runtime imports metrics": ("fsm_live._runtime.engine", "fsm_live.metrics.collector"),
    "the package imports metrics": ("fsm_live", "fsm_live.metrics"),
    "prometheus_client outside metrics": ("fsm_live.connection", "prometheus_client"),
    "plotly outside diagnostics": ("fsm_live.cli.report", "plotly.graph_objects"),
}


@pytest.mark.parametrize(("importer", "imported"), PLANTED.values(), ids=PLANTED.keys())
def test_a_planted_violation_is_caught(importer: str, imported: str) -> None:
    graph = package_graph()
    graph[importer] = {*graph.get(importer, ()), imported}
    assert [v for v in violations(graph) if v.startswith(f"{importer} -> {imported}:")]


def test_the_documented_table_is_the_enforced_one() -> None:
    """docs/architecture.md's table of rooms says what :data:`ALLOWED` enforces."""
    doc = PACKAGE.parent / "docs" / "architecture.md"
    documented: dict[str, frozenset[str]] = {}
    text = doc.read_text(encoding="utf-8")
    section = text.split("## Rooms and who may import whom", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        room = cells[0].strip("`").strip('"')
        imports = cells[2]
        documented[room] = (
            frozenset()
            if imports == "—"
            else frozenset(name.strip().strip('"') for name in imports.split(","))
        )
    assert documented == ALLOWED
