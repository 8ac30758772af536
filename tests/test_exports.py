"""The public surface, pinned (in the manner of websockets' ``tests/test_exports.py``).

A name added to or dropped from ``fsm_live.__all__`` fails here until this list
says so: the surface changes on purpose or not at all.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import fsm_live

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = (
    "BufferFull",
    "Config",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionFailed",
    "Counts",
    "CredentialsProvider",
    "CredentialsRejected",
    "ExponentialJitter",
    "Failure",
    "FixedDelay",
    "Fleet",
    "FleetStats",
    "FsmLiveError",
    "HandshakeRejected",
    "LiveConnection",
    "LiveConnectionError",
    "MissingExtra",
    "NotAMember",
    "ProtocolAdapter",
    "RequestTimeout",
    "Secret",
    "Spec",
    "SpecError",
    "StaticCredentials",
    "Stats",
    "TaskContext",
    "TransitionRecord",
    "TransitionRefused",
    "Transport",
    "TransportError",
    "UsageError",
    "__version__",
    "connect",
)

#: Where each public name is defined (the module that owns it, re-exported at the top).
HOMES = {
    "BufferFull": "fsm_live.errors",
    "Counts": "fsm_live.counters",
    "CredentialsRejected": "fsm_live.errors",
    "HandshakeRejected": "fsm_live.errors",
    "LiveConnectionError": "fsm_live.errors",
    "MissingExtra": "fsm_live.errors",
    "NotAMember": "fsm_live.errors",
    "RequestTimeout": "fsm_live.errors",
    "SpecError": "fsm_live.errors",
    "TaskContext": "fsm_live._runtime.task_context",
    "TransportError": "fsm_live.errors",
    "UsageError": "fsm_live.errors",
    "Config": "fsm_live.config",
    "ConfigError": "fsm_live.errors",
    "ConnectionClosed": "fsm_live.errors",
    "ConnectionFailed": "fsm_live.errors",
    "CredentialsProvider": "fsm_live.credentials",
    "ExponentialJitter": "fsm_live.core.backoff",
    "Failure": "fsm_live.errors",
    "FixedDelay": "fsm_live.core.backoff",
    "Fleet": "fsm_live.fleet",
    "FleetStats": "fsm_live.fleet.stats",
    "FsmLiveError": "fsm_live.errors",
    "LiveConnection": "fsm_live.connection",
    "ProtocolAdapter": "fsm_live.protocols.base",
    "Secret": "fsm_live.credentials",
    "Spec": "fsm_live.spec",
    "StaticCredentials": "fsm_live.credentials",
    "Stats": "fsm_live._runtime.stats",
    "TransitionRecord": "fsm_live.core.effects",
    "TransitionRefused": "fsm_live.errors",
    "Transport": "fsm_live.transport.base",
    "connect": "fsm_live.connection",
}


def test_the_public_names_are_pinned() -> None:
    assert fsm_live.__all__ == PUBLIC


def test_each_public_name_is_its_home_module_object() -> None:
    for name, home in HOMES.items():
        assert getattr(fsm_live, name) is getattr(importlib.import_module(home), name), name


def test_the_public_names_say_they_live_in_the_package() -> None:
    """As httpx does: a public class's ``__module__`` is ``fsm_live`` (tracebacks and
    reprs show the path users import), and the object is found there."""
    for name in HOMES:
        value = getattr(fsm_live, name)
        assert value.__module__ == "fsm_live", name
        assert getattr(fsm_live, value.__name__) is value


def test_the_whole_error_tree_is_exported() -> None:
    from fsm_live import errors

    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert name in fsm_live.__all__, name


def test_connect_is_the_typed_class() -> None:
    # Every keyword of connect() is typed: it is LiveConnection itself.
    assert fsm_live.connect is fsm_live.LiveConnection


def test_core_internals_stay_in_the_core() -> None:
    for name in (
        "Lifecycle",
        "LifecycleMachine",
        "Classifier",
        "default_machine",
        "ReconnectPacer",
        "backoff_policy",
        "get_protocol",
    ):
        assert not hasattr(fsm_live, name), name


def test_the_embedding_guide_uses_only_public_names() -> None:
    text = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8")
    used = set(re.findall(r"\bfsm_live\.([A-Za-z_]\w*)\b", text))
    modules = {info.name for info in pkgutil.iter_modules(fsm_live.__path__)}
    attributes = used - modules - {"transitions", "__all__"}  # a logger name; the list itself
    assert attributes, "the guide names no fsm_live attribute: the pattern is wrong"
    assert attributes <= set(PUBLIC), sorted(attributes - set(PUBLIC))


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(fsm_live.__path__, "fsm_live."):
        if ".testing" in info.name or info.name.endswith("__main__"):
            continue  # needs Hypothesis; runs the CLI
        names.append(info.name)
    return names


@pytest.mark.parametrize("module", _modules())
def test_every_module_all_is_a_tuple_of_its_names(module: str) -> None:
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        assert module.rsplit(".", 1)[-1].startswith("_"), f"{module} has no __all__"
        return
    assert isinstance(names, tuple), module
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which it lacks"


def test_testing_names_resolve_lazily() -> None:
    pytest.importorskip("hypothesis")
    import fsm_live.testing

    for name in fsm_live.testing.__all__:
        assert callable(getattr(fsm_live.testing, name)), name


def test_the_metrics_surface_is_pinned() -> None:
    # fsm_live.metrics is public (docs/diagnostics.md); prometheus-client is imported
    # only when a collector or a server is made, so importing it needs no extra.
    metrics = importlib.import_module("fsm_live.metrics")
    assert metrics.__all__ == (
        "ConnectionCollector",
        "FleetCollector",
        "MetricsServer",
        "new_registry",
        "serve_metrics",
    )
    assert not hasattr(fsm_live, "metrics") or fsm_live.metrics is metrics
