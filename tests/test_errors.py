"""fsm_live.errors: the tree its docstring draws is the real class hierarchy, and each
exception carries and shows what its docstring says."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from fsm_live import errors
from fsm_live.errors import (
    FAILURE_KINDS,
    BufferFull,
    ConfigError,
    ConnectionClosed,
    ConnectionFailed,
    Failure,
    HandshakeRejected,
    LiveConnectionError,
    NotAMember,
    SpecError,
    TransitionRefused,
    TransportError,
    UsageError,
)

#: One node of the drawing: the tree prefix (its width is the depth), the class name,
#: and the builtin bases in parentheses.  Continuation lines have no ``├──``/``└──``.
_NODE = re.compile(
    r"^(?P<prefix>[│ ]*)(?:[├└]── )(?P<name>[A-Z]\w*)"
    r"(?: \((?P<bases>[A-Za-z, ]+)\))?(?:\s|$)"
)
_ROOT = re.compile(r"^(?P<name>[A-Z]\w*)(?:\s|$)")


def drawn_tree(doc: str) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """``{class name: (drawn parent or None for the root, builtin bases drawn)}``, in the
    order drawn, parsed from the literal block after the first ``::``."""
    lines = doc.split("::", 1)[1].splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    indent = len(lines[0]) - len(lines[0].lstrip())
    tree: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    stack: list[str] = []  # stack[d] = the last node drawn at depth d
    for raw in lines:
        if raw.strip() and len(raw) - len(raw.lstrip()) < indent:
            break  # the end of the literal block
        line = raw[indent:]
        if not line.strip():
            continue
        if not tree:
            root = _ROOT.match(line)
            assert root, f"the drawing does not start with a class name: {raw!r}"
            tree[root["name"]] = (None, ())
            stack = [root["name"]]
            continue
        node = _NODE.match(line)
        if node is None:
            assert "──" not in line, f"a node of the drawing was not parsed: {raw!r}"
            continue  # a continuation of the text beside a node
        depth, rest = divmod(len(node["prefix"]), 4)
        assert rest == 0, f"misaligned node: {raw!r}"
        bases = tuple(b.strip() for b in node["bases"].split(",")) if node["bases"] else ()
        tree[node["name"]] = (stack[depth], bases)
        del stack[depth + 1 :]
        stack.append(node["name"])
    return tree


PACKAGE = Path(errors.__file__).resolve().parent
#: Where a class of fsm_live.errors says it lives: its module, or the package once
#: ``fsm_live.NAME`` was looked up (the public path, see fsm_live/__init__.py).
OURS = {errors.__name__, "fsm_live"}
TREE = drawn_tree(errors.__doc__ or "")
#: The exception classes fsm_live.errors defines.
DEFINED = {
    name: value
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ in OURS
}


def test_the_drawing_parses() -> None:
    assert next(iter(TREE)) == "FsmLiveError"
    assert TREE["NotAMember"] == ("UsageError", ("KeyError",))
    assert TREE["HandshakeRejected"] == ("TransportError", ())
    assert len(TREE) == 15


def test_the_drawing_names_every_exception_the_module_defines() -> None:
    assert set(TREE) == set(DEFINED)


def test_the_module_exports_every_exception_drawn() -> None:
    assert set(TREE) <= set(errors.__all__)


@pytest.mark.parametrize("name", list(TREE))
def test_each_class_has_exactly_the_bases_drawn(name: str) -> None:
    parent, builtin_names = TREE[name]
    cls = getattr(errors, name)
    expected = [getattr(errors, parent)] if parent else [Exception]
    expected += [getattr(builtins, base) for base in builtin_names]
    assert list(cls.__bases__) == expected


@pytest.mark.parametrize("name", list(TREE))
def test_each_class_has_exactly_the_children_drawn(name: str) -> None:
    drawn = {child for child, (parent, _) in TREE.items() if parent == name}
    real = {
        sub.__name__
        for sub in getattr(errors, name).__subclasses__()
        if sub.__module__ in OURS and sub.__name__ in vars(errors)
    }
    assert real == drawn


def test_a_wrong_drawing_is_caught() -> None:
    doc = (errors.__doc__ or "").replace(
        "│   └── NotAMember (KeyError)", "│   └── NotAMember (IndexError)"
    )
    assert doc != errors.__doc__
    assert drawn_tree(doc)["NotAMember"] == ("UsageError", ("IndexError",))
    moved = (errors.__doc__ or "").replace(
        "    └── TransportError", "    │   └── TransportError", 1
    )
    assert drawn_tree(moved)["TransportError"][0] == "LiveConnectionError"


def _package_classes() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """``{class name: [(module file, base names), ...]}`` for every class the package
    defines, read with ``ast`` (importing every module would take seconds)."""
    classes: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = tuple(
                    base.id if isinstance(base, ast.Name) else base.attr
                    for base in node.bases
                    if isinstance(base, ast.Name | ast.Attribute)
                )
                classes.setdefault(node.name, []).append(
                    (str(path.relative_to(PACKAGE.parent)), bases)
                )
    return classes


def test_every_exception_the_package_defines_derives_from_fsm_live_error() -> None:
    """Public ones: a private exception (``_Bad``) is a module's own control flow and
    never reaches a caller."""
    classes = _package_classes()

    def reaches(name: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == goal:
            return True
        if name in seen or name not in classes:
            return False
        return any(
            reaches(base, goal, seen | {name}) for _, bases in classes[name] for base in bases
        )

    def is_exception(name: str) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name in classes and any(
            is_exception(base) for _, bases in classes[name] for base in bases if base != name
        )

    found = [name for name in classes if name not in vars(builtins) and is_exception(name)]
    assert {"FsmLiveError", "TransportError", "NotAMember"} <= set(found)
    strays = [
        f"{where}: {name}"
        for name in found
        if not name.startswith("_") and not reaches(name, "FsmLiveError")
        for where, _ in classes[name]
    ]
    assert not strays, f"exceptions not under FsmLiveError: {strays}"


# -- what each exception carries --------------------------------------------------------


def test_bad_input_is_caught_as_value_error() -> None:
    with pytest.raises(ValueError, match=r"^interval: must be positive$"):
        raise ConfigError("interval", "must be positive")
    with pytest.raises(ValueError):  # noqa: PT011 - the point is the builtin base
        raise SpecError(["<mapping>: missing states"])


def test_config_error_names_its_field() -> None:
    error = ConfigError("heartbeat_timeout", "must be greater than heartbeat_interval")
    assert error.field == "heartbeat_timeout"
    assert str(error) == "heartbeat_timeout: must be greater than heartbeat_interval"


def test_spec_error_keeps_every_problem_one_per_line() -> None:
    problems = ["spec.yaml:3: unknown state 'X'", "spec.yaml:9: missing transitions"]
    error = SpecError(problems)
    assert error.problems == tuple(problems)
    assert str(error) == "spec.yaml:3: unknown state 'X'\nspec.yaml:9: missing transitions"
    problems.append("later")
    assert len(error.problems) == 2  # a copy, not the caller's list


def test_transition_refused_is_a_usage_error_naming_state_and_trigger() -> None:
    error = TransitionRefused("CONNECTING", "rotate")
    assert isinstance(error, UsageError)
    assert isinstance(error, RuntimeError)
    assert (error.state, error.trigger) == ("CONNECTING", "rotate")
    assert str(error) == "trigger 'rotate' is not allowed in state CONNECTING"


def test_not_a_member_is_a_usage_error_and_a_key_error_shown_unquoted() -> None:
    error = NotAMember("no member 'eu-1' in this fleet")
    assert isinstance(error, UsageError)
    assert isinstance(error, KeyError)
    assert isinstance(error, RuntimeError)
    assert str(error) == "no member 'eu-1' in this fleet"  # KeyError would add quotes
    assert str(NotAMember()) == ""
    with pytest.raises(KeyError):
        raise error


def test_failure_shows_its_class_and_reason() -> None:
    assert str(Failure("network", "connection refused")) == "network: connection refused"
    assert str(Failure("auth")) == "auth"
    failure = Failure("auth", "HTTP 401", http_status=401, retry_after=2.5)
    assert (failure.kind, failure.close_code) == (None, None)
    assert failure == Failure("auth", "HTTP 401", http_status=401, retry_after=2.5)
    with pytest.raises(AttributeError):
        failure.reason = "changed"  # type: ignore[misc]


def test_connection_failed_carries_its_failure() -> None:
    failure = Failure("terminal", "close code 4500", close_code=4500)
    error = ConnectionFailed(failure)
    assert isinstance(error, LiveConnectionError)
    assert error.failure is failure
    assert str(error) == "the connection failed: terminal: close code 4500"


def test_connection_closed_and_buffer_full_are_connection_errors() -> None:
    assert issubclass(ConnectionClosed, LiveConnectionError)
    assert issubclass(BufferFull, LiveConnectionError)
    assert not issubclass(LiveConnectionError, TransportError | UsageError)


def test_transport_error_carries_the_facts_to_classify() -> None:
    error = TransportError("connection refused", kind="refused")
    assert (error.reason, error.kind) == ("connection refused", "refused")
    assert (error.http_status, error.close_code, error.retry_after) == (None, None, None)
    assert str(error) == "connection refused"
    rejected = HandshakeRejected("HTTP 503", http_status=503, retry_after=7.0)
    assert isinstance(rejected, TransportError)
    assert (rejected.http_status, rejected.retry_after, rejected.kind) == (503, 7.0, None)
    closed = TransportError("closed", close_code=4001)
    assert closed.close_code == 4001
    with pytest.raises(TypeError):
        TransportError("x", "refused")  # type: ignore[call-arg]  # the facts are keyword-only


def test_failure_kinds_are_the_named_kinds() -> None:
    assert isinstance(FAILURE_KINDS, frozenset)
    assert {
        "refused",
        "reset",
        "dns",
        "timeout",
        "eof",
        "tls",
        "credentials",
        "heartbeat_timeout",
        "registration_rejected",
    } <= FAILURE_KINDS
    assert all(kind == kind.lower() and " " not in kind for kind in FAILURE_KINDS)
