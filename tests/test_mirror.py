"""The tests mirror the package: one test module per module.

The rule: every module ``fsm_live/.../NAME.py`` has a test module
``tests/test_NAME.py`` that imports it (the module, or a name it defines).  A module
covered elsewhere instead (by behaviour-level tests that drive it through the public
API or the command line, or by a test module of another name) is listed in
:data:`TESTED_IN` with the test modules that cover it, and each of those must reach
it: import it or a name it defines, mention its dotted name, import a module of the
package that imports it (transitively), or run ``python -m fsm_live``.  Package
``__init__`` modules and ``__main__`` are left out.

The map cannot rot: every module and test module it names must exist, each named
test module must reach its module, and an entry whose module has since got its own
``tests/test_NAME.py`` must go.  Everything is read with ``ast``; nothing is imported
but the packages ``pkgutil.walk_packages`` walks.

A new module fails :func:`test_every_module_has_a_test_module` until it gets its test
module or a map entry; the message says which.
"""

from __future__ import annotations

import ast
import functools
import pkgutil
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import fsm_live
from fsm_live import cli

TESTS = Path(__file__).resolve().parent
PACKAGE = Path(fsm_live.__path__[0]).resolve()

#: Modules without a ``tests/test_NAME.py`` of their own (or whose ``test_NAME.py`` is
#: about another module of the same name) -> the test modules that cover them.
TESTED_IN: Mapping[str, tuple[str, ...]] = {
    "fsm_live.cli.views.cluster": ("test_cluster_placement",),
    "fsm_live.cluster._etcd": ("test_cluster_etcd",),
    "fsm_live.cluster.clock": ("test_cluster_etcd",),
    "fsm_live.cluster.coordinator": ("test_cluster_hooks",),
    "fsm_live.cluster.etcd": ("test_cluster_etcd",),
    "fsm_live.cluster.hashing": ("test_cluster_placement",),
    "fsm_live.cluster.keys": ("test_cluster_placement",),
    "fsm_live.cluster.ownership": ("test_cluster_placement",),
    "fsm_live.cluster.placement": ("test_cluster_placement",),
    "fsm_live.cluster.settings": ("test_cluster_placement",),
    "fsm_live.cluster.url": ("test_cluster_placement",),
    "fsm_live.testing.etcd": ("test_cluster_etcd",),
    "fsm_live.testing.recorder": ("test_cluster_hooks",),
    "fsm_live._runtime.requests": ("test_delivery",),
    "fsm_live._runtime.task_context": ("test_subscribing", "test_spec_live"),
    "fsm_live.counters": ("test_stats", "test_diagnostics", "test_metrics"),
    "fsm_live.cli.metrics_endpoint": ("test_metrics",),
    "fsm_live.cli.report": ("test_diagnostics",),
    "fsm_live.cli.verify": ("test_diagnostics",),
    "fsm_live.cli.views.report": ("test_diagnostics",),
    "fsm_live.diagnostics.files": ("test_diagnostics",),
    "fsm_live.diagnostics.html": ("test_diagnostics", "test_html_report"),
    "fsm_live.diagnostics.percentiles": ("test_diagnostics",),
    "fsm_live.diagnostics.records": ("test_diagnostics",),
    "fsm_live.diagnostics.report": ("test_diagnostics",),
    "fsm_live.diagnostics.summary": ("test_diagnostics",),
    "fsm_live.diagnostics.verify": ("test_diagnostics",),
    "fsm_live.metrics.collector": ("test_metrics",),
    "fsm_live.metrics.histogram": ("test_metrics",),
    "fsm_live.metrics.server": ("test_metrics",),
    "fsm_live.metrics.snapshot": ("test_metrics",),
    "fsm_live._runtime.links": ("test_transport", "test_backpressure", "test_connection"),
    "fsm_live.cli._output": ("test_cli",),
    "fsm_live.cli._signals": ("test_cli_interrupts",),
    "fsm_live.cli.connect": ("test_connect_cli",),
    "fsm_live.cli.fleet": ("test_fleet_cli",),  # test_fleet is fsm_live.fleet's
    "fsm_live.cli.serve": ("test_serve_cli",),
    "fsm_live.cli.spec_commands": ("test_cli",),
    "fsm_live.cli.views.connection": ("test_connect_cli",),  # test_connection: the class
    "fsm_live.cli.views.fleet": ("test_fleet_view", "test_fleet_cli"),
    "fsm_live.cli._specs": ("test_cli", "test_diagnostics"),
    "fsm_live.core.events": ("test_effects", "test_lifecycle"),
    "fsm_live.core.settings": ("test_lifecycle",),  # a Protocol: Config provides it
    "fsm_live.demo.environments": ("test_demo",),
    "fsm_live.demo.story": ("test_demo",),
    "fsm_live.fault_proxy": ("test_proxy", "test_fault_matrix"),
    "fsm_live.fleet._fleet": ("test_fleet",),
    "fsm_live.fleet.config": ("test_fleet", "test_fleet_cli"),  # test_config: Config's
    "fsm_live.fleet.stats": ("test_fleet", "test_fleet_cli"),  # test_stats: a connection's
    "fsm_live.lwp.faults": ("test_fault_schedule", "test_lwp_server"),
    "fsm_live.lwp.memory": ("test_lwp_server",),
    "fsm_live.lwp.protocol": ("test_lwp",),
    "fsm_live.lwp.server": ("test_lwp_server",),
    "fsm_live.lwp.service": ("test_lwp_server",),
    "fsm_live.lwp.token": ("test_token_http", "test_account_credentials"),
    "fsm_live.protocols.base": ("test_ping_protocol", "test_json_protocol"),
    "fsm_live.protocols.json": ("test_json_protocol",),
    "fsm_live.protocols.ping": ("test_ping_protocol",),
    "fsm_live.spec.checks": ("test_spec_checks", "test_spec"),
    "fsm_live.spec.loader": ("test_spec_checks", "test_spec"),
    "fsm_live.spec.model": ("test_spec",),
    "fsm_live.spec.reserved": ("test_spec_checks",),
    "fsm_live.spec.validate": ("test_spec", "test_spec_checks"),
    "fsm_live.spec.vocabulary": ("test_spec_checks",),
    "fsm_live.runner.run": ("test_runner_run",),
    "fsm_live.runner.driver": ("test_runner",),
    "fsm_live.testing.adapters": ("test_harness",),
    "fsm_live.testing.steps": ("test_harness",),
    "fsm_live.testing.walk": ("test_harness", "test_harness_planted"),
    "fsm_live.testing.paths": ("test_harness", "test_spec_live"),
    "fsm_live.transport.base": ("test_transport",),
    "fsm_live.transport.errors": ("test_transport", "test_classify"),  # test_errors: the tree's
    "fsm_live.transport.memory": ("test_transport",),
    "fsm_live.transport.tcp": ("test_transport",),
}

#: How a test runs the command line in a child process.
_RUNS_CLI = re.compile(r"""["']-m["'],\s*["']fsm_live["']""")


# -- the package and the tests, read with ast ------------------------------------------


@functools.cache
def package_files() -> dict[str, Path]:
    """Every module and package of fsm_live (``fsm_live`` itself included) -> its file."""
    files = {"fsm_live": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages(fsm_live.__path__, "fsm_live."):
        where = Path(info.module_finder.path)  # type: ignore[union-attr]
        last = info.name.rpartition(".")[2]
        files[info.name] = where / last / "__init__.py" if info.ispkg else where / f"{last}.py"
    return files


def mirrored_modules() -> list[str]:
    """The modules the rule is about: not packages' ``__init__``, not ``__main__``."""
    return sorted(
        name
        for name, path in package_files().items()
        if path.name != "__init__.py" and name.rpartition(".")[2] != "__main__"
    )


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


@functools.cache
def _defined(module: str) -> frozenset[str]:
    """The names ``module`` defines at its top level (classes, functions, assignments)."""
    names: set[str] = set()
    for node in _tree(package_files()[module]).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def _origin(module: str, name: str, hops: int = 0) -> str | None:
    """The module of the package that ``from module import name`` really gets ``name``
    from: ``module`` if it defines it, a submodule of that name, or wherever it
    re-exports it from."""
    if module not in package_files() or hops > 10:
        return None
    if name in _defined(module):
        return module
    if f"{module}.{name}" in package_files():
        return f"{module}.{name}"
    for node in ast.walk(_tree(package_files()[module])):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _origin(node.module, alias.name, hops + 1)
    return None


@functools.cache
def _imports(path: Path) -> frozenset[str]:
    """The modules of the package the file at ``path`` imports, names resolved to the
    modules that define them (``from fsm_live import Config`` imports fsm_live.config)."""
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in package_files())
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.partition(".")[0] != "fsm_live":
                continue
            for alias in node.names:
                found.add(_origin(node.module, alias.name) or node.module)
    return frozenset(found)


def _closure(modules: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen or module not in package_files():
            continue
        seen.add(module)
        todo.extend(_imports(package_files()[module]))
        if module == "fsm_live.cli":  # its commands' modules are imported by name
            todo.extend(f"fsm_live.cli.{name}" for _, name, _ in cli._SUBCOMMANDS)
    return seen


def _source(test: str) -> str:
    return (TESTS / f"{test}.py").read_text(encoding="utf-8")


def imports_directly(test: str, module: str) -> bool:
    """True when the test module imports ``module`` or a name it defines, or names it."""
    mentioned = re.search(rf"\b{re.escape(module)}\b(?!\.\w)", _source(test))
    return module in _imports(TESTS / f"{test}.py") or mentioned is not None


def reaches(test: str, module: str) -> bool:
    """True when the test module imports ``module`` (see :func:`imports_directly`), or a
    module of the package that imports it, or runs the command line that does."""
    if imports_directly(test, module):
        return True
    start = set(_imports(TESTS / f"{test}.py"))
    if _RUNS_CLI.search(_source(test)):
        start.add("fsm_live.__main__")
    return module in _closure(start)


def own_test(module: str) -> str:
    return f"test_{module.rpartition('.')[2]}"


def problems(modules: Iterable[str], tested_in: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One line per module that follows neither rule, saying what to add."""
    lines = []
    for module in modules:
        if module in tested_in:
            continue
        test = own_test(module)
        if not (TESTS / f"{test}.py").is_file():
            lines.append(
                f"{module}: add tests/{test}.py, or a TESTED_IN entry in "
                f"tests/test_mirror.py naming the test modules that cover it"
            )
        elif not imports_directly(test, module):
            lines.append(
                f"{module}: tests/{test}.py does not import it (another module of "
                f"that name?): import it there, or add a TESTED_IN entry"
            )
    return lines


# -- the rule ----------------------------------------------------------------------------


def test_the_walk_finds_the_package() -> None:
    modules = mirrored_modules()
    assert {
        "fsm_live.errors",
        "fsm_live._runtime.engine",
        "fsm_live.cli.views.styles",
        "fsm_live.transport.url",
    } <= set(modules)
    assert "fsm_live.__main__" not in modules
    assert "fsm_live.spec" not in modules  # a package: its __init__ is left out
    assert all(package_files()[m].is_file() for m in modules)


def test_every_module_has_a_test_module() -> None:
    lines = problems(mirrored_modules(), TESTED_IN)
    assert not lines, "modules without tests:\n" + "\n".join(lines)


def test_the_map_names_only_modules_of_the_package() -> None:
    modules = set(mirrored_modules())
    stale = [
        f"{module}: no such module (remove or rename its TESTED_IN entry)"
        for module in TESTED_IN
        if module not in modules
    ]
    assert not stale, "\n".join(stale)


def test_the_map_names_only_test_modules_that_exist() -> None:
    missing = [
        f"{module}: tests/{test}.py does not exist"
        for module, tests in TESTED_IN.items()
        for test in tests
        if not (TESTS / f"{test}.py").is_file()
    ]
    assert all(tests for tests in TESTED_IN.values()), "an entry names no test module"
    assert not missing, "\n".join(missing)


def test_each_test_module_in_the_map_reaches_its_module() -> None:
    unreached = [
        f"{module}: tests/{test}.py neither imports nor runs it"
        for module, tests in TESTED_IN.items()
        for test in tests
        if (TESTS / f"{test}.py").is_file() and not reaches(test, module)
    ]
    assert not unreached, "\n".join(unreached)


def test_no_entry_for_a_module_with_its_own_test_module() -> None:
    redundant = [
        f"{module}: tests/{own_test(module)}.py imports it; remove its TESTED_IN entry"
        for module in TESTED_IN
        if (TESTS / f"{own_test(module)}.py").is_file()
        and imports_directly(own_test(module), module)
    ]
    assert not redundant, "\n".join(redundant)


# -- the checks can fail -----------------------------------------------------------------


def test_a_new_module_fails_with_a_one_line_message() -> None:
    [line] = problems(["fsm_live.metrics.exporter"], TESTED_IN)
    assert line.startswith("fsm_live.metrics.exporter: add tests/test_exporter.py")
    assert "TESTED_IN" in line
    assert "\n" not in line
    assert (
        problems(
            ["fsm_live.metrics.exporter"],
            {**TESTED_IN, "fsm_live.metrics.exporter": ("test_fleet",)},
        )
        == []
    )


def test_a_test_module_of_another_module_of_the_same_name_does_not_count() -> None:
    # tests/test_config.py tests fsm_live.config, not fsm_live.fleet.config.
    assert imports_directly("test_config", "fsm_live.config")
    [line] = problems(["fsm_live.fleet.config"], {})
    assert "does not import it" in line


def test_reaching_is_not_everything() -> None:
    assert not reaches("test_styles", "fsm_live.lwp.server")
    assert not reaches("test_errors", "fsm_live._runtime.engine")
    assert reaches("test_connection", "fsm_live._runtime.engine")  # through LiveConnection
    assert not imports_directly("test_connection", "fsm_live._runtime.engine")


@pytest.mark.parametrize(
    ("module", "name", "origin"),
    [
        ("fsm_live", "Config", "fsm_live.config"),
        ("fsm_live.fleet", "Fleet", "fsm_live.fleet._fleet"),
        ("fsm_live.cli", "spec_commands", "fsm_live.cli.spec_commands"),
        ("fsm_live.errors", "ConfigError", "fsm_live.errors"),
        ("fsm_live", "no_such_name", None),
    ],
)
def test_names_are_traced_to_the_module_defining_them(
    module: str, name: str, origin: str | None
) -> None:
    assert _origin(module, name) == origin
