"""Lifecycle specs: load, validate, and hold them as frozen values.

A spec is the declarative table of a connection's lifecycle (see
``specs/connection.yaml``): states with their log level, tasks and timers;
transitions with their guards; and the error classification table.  It is the
only place states and transitions are written: the core's Machine, the diagrams
and the property tests all read a :class:`Spec`.

Loading validates everything and reports every problem at once in one
:class:`~fsm_live.errors.SpecError`, each problem located as ``FILE:LINE: ...``.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import yaml

from fsm_live.errors import FAILURE_KINDS, SpecError

__all__ = (
    "ACTIONS",
    "FAILURE_KINDS",
    "GUARDS",
    "LOG_LEVELS",
    "TASKS",
    "TIMERS",
    "ErrorClassSpec",
    "ErrorRule",
    "ErrorTable",
    "Spec",
    "StateSpec",
    "TimerSpec",
    "TransitionSpec",
    "default_spec_path",
)

#: Tasks the runner knows how to run while a state is active.
TASKS: Final = frozenset(
    {"dial", "reader", "heartbeat", "token_refresh", "cookie_refresh", "cleanup", "flush",
     "escalation"}
)
#: Deadlines the core keeps while a state is active (see ``fsm_live.core.lifecycle``).
TIMERS: Final = frozenset(
    {"open_timeout", "heartbeat_timeout", "stability", "backoff", "failed_retry"}
)
#: Guards a transition may name in ``conditions`` / ``unless``.
GUARDS: Final = frozenset({"exhausted", "retryable"})
LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
#: What an error class makes the machine do.
ACTIONS: Final = frozenset({"retry", "refresh", "planned", "fail"})

Action = Literal["retry", "refresh", "planned", "fail"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The roles a state may carry (see :class:`StateSpec`).
_ROLES: Final = ("final", "success", "failed")
_MAPPING_SOURCE = "<mapping>"


@attrs.frozen
class TimerSpec:
    """A deadline kept while in a state; on expiry it fires the first accepted trigger.

    ``triggers`` is empty for a timer that only updates the core (``stability``).
    """

    name: str
    triggers: tuple[str, ...]


@attrs.frozen
class StateSpec:
    """One state: its log level on entry, its tasks, its timers and its roles.

    Roles let code speak of states without naming them: ``final`` (absorbing:
    nothing leaves it), ``success`` (the connection is up: a connect is counted)
    and ``failed`` (the connection is failing: waiters and stats report why).
    """

    name: str
    log_level: str = "INFO"
    tasks: tuple[str, ...] = ()
    timers: tuple[TimerSpec, ...] = ()
    final: bool = False
    success: bool = False
    failed: bool = False
    description: str = ""


@attrs.frozen
class TransitionSpec:
    """One row of the transition table (several sources share one row)."""

    trigger: str
    sources: tuple[str, ...]
    dest: str
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    reset_failures: bool = False

    @property
    def guarded(self) -> bool:
        """True when the transition has conditions or unless guards."""
        return bool(self.conditions or self.unless)

    @property
    def guard_label(self) -> str:
        """The guards as a diagram label suffix, e.g. ``" [exhausted]"``; empty if none."""
        parts = [*self.conditions, *(f"not {name}" for name in self.unless)]
        return f" [{', '.join(parts)}]" if parts else ""


@attrs.frozen
class ErrorClassSpec:
    """What the machine does with a failure of this class."""

    name: str
    action: Action
    retry_after: bool = False
    min_delay: float = 0.0


@attrs.frozen
class ErrorRule:
    """Failures matching any of these kinds, statuses or close codes belong to ``error_class``."""

    error_class: str
    kinds: frozenset[str] = frozenset()
    http_status: frozenset[int] = frozenset()
    close_codes: frozenset[int] = frozenset()


@attrs.frozen
class ErrorTable:
    """The error classification table: classes, ordered rules, and the default class."""

    # Mappings take part in ==, not in hash() (a dict is unhashable; equal tables
    # still hash alike through their rules).
    classes: Mapping[str, ErrorClassSpec] = attrs.field(hash=False)
    rules: tuple[ErrorRule, ...]
    default: str


@attrs.frozen
class Spec:
    """A validated lifecycle spec.  Build it with :meth:`from_path` or :meth:`from_mapping`."""

    name: str
    initial: str
    states: Mapping[str, StateSpec] = attrs.field(hash=False)  # see ErrorTable.classes
    transitions: tuple[TransitionSpec, ...]
    errors: ErrorTable
    source: str = _MAPPING_SOURCE

    @classmethod
    def from_path(cls, path: str | Path) -> Spec:
        """Load and validate a YAML spec file.

        Raises :class:`SpecError` (every problem, each with file and line; a file
        that is not UTF-8 text too) or :class:`OSError` when it cannot be read.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> Spec:
        """Parse and validate YAML text; ``source`` names it in error messages."""
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            lines: dict[tuple[Any, ...], int] = {}
            data = None if node is None else _to_python(loader, node, (), lines)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError([f"{where}: not valid YAML: {problem}"]) from None
        finally:
            loader.dispose()
        if node is None:
            raise SpecError([f"{source}:1: the spec is empty"])
        return _Validator(data, source, lines).build(cls)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = _MAPPING_SOURCE) -> Spec:
        """Validate a spec given as plain data (as YAML would load it)."""
        return _Validator(data, source, {}).build(cls)

    @classmethod
    def default(cls) -> Spec:
        """The packaged ``connection.yaml`` spec fsm_live's connections run on."""
        return cls.from_path(default_spec_path())

    # -- derived views -----------------------------------------------------------------

    @property
    def final_states(self) -> frozenset[str]:
        """Names of the final (absorbing) states."""
        return frozenset(name for name, state in self.states.items() if state.final)

    @property
    def failed_states(self) -> frozenset[str]:
        """Names of the states with the ``failed`` role."""
        return frozenset(name for name, state in self.states.items() if state.failed)

    @property
    def success_states(self) -> frozenset[str]:
        """Names of the states with the ``success`` role."""
        return frozenset(name for name, state in self.states.items() if state.success)

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every trigger name, in order of first appearance."""
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def edges(self) -> Iterator[tuple[str, TransitionSpec]]:
        """Every (source, transition) pair, in table order."""
        for transition in self.transitions:
            for source in transition.sources:
                yield source, transition

    def transitions_from(self, state: str) -> tuple[TransitionSpec, ...]:
        """The transitions whose sources include ``state``, in table order."""
        return tuple(t for t in self.transitions if state in t.sources)


def default_spec_path() -> Path:
    """Path of the packaged ``connection.yaml``.

    In a wheel the specs live in the package (``fsm_live/specs``); in a source
    checkout or editable install they are the repository's ``specs/`` folder.
    """
    packaged = importlib.resources.files("fsm_live") / "specs" / "connection.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "specs" / "connection.yaml"


# -- YAML with line numbers -----------------------------------------------------------------


def _to_python(loader: yaml.SafeLoader, node: yaml.Node, path: tuple[Any, ...],
               lines: dict[tuple[Any, ...], int]) -> Any:
    """Convert a composed YAML node to plain data, recording each item's line by path."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(loader, key_node, (*path, "<key>"), lines)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            result[key] = _to_python(loader, value_node, (*path, key), lines)
            # An entry is located at its key (a block value starts on the next line).
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


# -- validation -----------------------------------------------------------------------------


class _Validator:
    """Collects every problem in a spec; builds the :class:`Spec` only if there are none."""

    def __init__(
        self, data: Any, source: str, lines: Mapping[tuple[Any, ...], int]
    ) -> None:
        self.data = data
        self.source = source
        self.lines = lines
        self.problems: list[str] = []

    # reporting

    def problem(self, path: tuple[Any, ...], message: str) -> None:
        line = None
        for depth in range(len(path), -1, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                break
        where = f"{self.source}:{line}" if line is not None else self.source
        item = ".".join(str(part) for part in path) or "spec"
        self.problems.append(f"{where}: {item}: {message}")

    def expect(self, value: Any, kind: type | tuple[type, ...], path: tuple[Any, ...],
               what: str) -> bool:
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            ok = False
        else:
            ok = isinstance(value, kind)
        if not ok:
            self.problem(path, f"expected {what}, got {type(value).__name__} {value!r}")
        return ok

    def known_keys(self, mapping: Mapping[Any, Any], allowed: Iterable[str],
                   path: tuple[Any, ...]) -> None:
        allowed = set(allowed)
        for key in mapping:
            if key not in allowed:
                self.problem((*path, key), f"unknown key {key!r} (allowed: "
                                           f"{', '.join(sorted(allowed))})")

    def names(self, value: Any, path: tuple[Any, ...], what: str) -> tuple[str, ...]:
        """A name or a list of names; reports malformed ones."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.problem(path, f"expected {what} (a name or a list of names), "
                               f"got {type(value).__name__}")
            return ()
        result = []
        for i, item in enumerate(items):
            item_path = path if isinstance(value, str) else (*path, i)
            if isinstance(item, str) and _NAME.match(item):
                result.append(item)
            else:
                self.problem(item_path, f"expected {what} name, got {item!r}")
        return tuple(result)

    def vocabulary(self, names: tuple[str, ...], allowed: frozenset[str],
                   path: tuple[Any, ...], what: str) -> None:
        for name in names:
            if name not in allowed:
                self.problem(path, f"unknown {what} {name!r} (known: "
                                   f"{', '.join(sorted(allowed))})")

    # building

    def build(self, cls: type[Spec]) -> Spec:
        data = self.data
        if not isinstance(data, Mapping):
            self.problem((), f"a spec is a mapping, got {type(data).__name__}")
            raise SpecError(self.problems)
        self.known_keys(data, ("name", "initial", "states", "transitions", "errors"), ())
        name = data.get("name", "spec")
        if not self.expect(name, str, ("name",), "a string"):
            name = "spec"
        states = self.states(data.get("states"))
        transitions = self.transitions(data.get("transitions"), states)
        initial = self.initial(data.get("initial"), states)
        errors = self.errors(data.get("errors"))
        if states and initial is not None and not self.problems:
            self.graph(states, transitions, initial)
        if self.problems or initial is None or errors is None:
            raise SpecError(self.problems)
        return cls(name=name, initial=initial, states=states, transitions=transitions,
                   errors=errors, source=self.source)

    def initial(self, value: Any, states: Mapping[str, StateSpec]) -> str | None:
        if value is None:
            self.problem(("initial",), "missing initial state")
            return None
        if not self.expect(value, str, ("initial",), "a state name"):
            return None
        if states and value not in states:
            self.problem(("initial",), f"unknown initial state {value!r}")
            return None
        return str(value)

    def states(self, value: Any) -> dict[str, StateSpec]:
        path: tuple[Any, ...] = ("states",)
        if value is None:
            self.problem(path, "missing states")
            return {}
        if not self.expect(value, dict, path, "a mapping of state names"):
            return {}
        if not value:
            self.problem(path, "a spec needs at least one state")
        states = {}
        for name, body in value.items():
            state_path = (*path, name)
            if not isinstance(name, str) or not _NAME.match(name):
                hint = " (YAML reads ON/OFF/YES/NO as booleans: quote the name)" \
                    if isinstance(name, bool) else ""
                self.problem(state_path, f"invalid state name {name!r}{hint}")
                continue
            body = {} if body is None else body
            if not self.expect(body, dict, state_path, "a mapping"):
                continue
            states[name] = self.state(name, body, state_path)
        return states

    def state(self, name: str, body: Mapping[str, Any], path: tuple[Any, ...]) -> StateSpec:
        self.known_keys(body, ("log", "tasks", "timers", *_ROLES, "description"), path)
        log = body.get("log", "INFO")
        if self.expect(log, str, (*path, "log"), "a log level") and log not in LOG_LEVELS:
            self.problem((*path, "log"), f"unknown log level {log!r} (known: "
                                         f"{', '.join(sorted(LOG_LEVELS))})")
        tasks = self.names(body.get("tasks", []), (*path, "tasks"), "a task")
        self.vocabulary(tasks, TASKS, (*path, "tasks"), "task")
        timers = self.timers(body.get("timers", {}), (*path, "timers"))
        flags = {}
        for flag in _ROLES:
            flags[flag] = body.get(flag, False)
            self.expect(flags[flag], bool, (*path, flag), "true or false")
        description = body.get("description", "")
        self.expect(description, str, (*path, "description"), "a string")
        if sum(flags[role] is True for role in _ROLES) > 1:
            self.problem(path, f"a state has at most one role of {', '.join(_ROLES)}")
        return StateSpec(name=name, log_level=str(log), tasks=tasks, timers=timers,
                         final=flags["final"] is True, success=flags["success"] is True,
                         failed=flags["failed"] is True, description=str(description))

    def timers(self, value: Any, path: tuple[Any, ...]) -> tuple[TimerSpec, ...]:
        if not self.expect(value, dict, path, "a mapping of timer -> trigger(s)"):
            return ()
        timers = []
        for name, triggers in value.items():
            self.vocabulary((str(name),), TIMERS, (*path, name), "timer")
            fired = () if triggers is None else self.names(triggers, (*path, name), "a trigger")
            timers.append(TimerSpec(name=str(name), triggers=fired))
        return tuple(timers)

    def transitions(self, value: Any, states: Mapping[str, StateSpec]
                    ) -> tuple[TransitionSpec, ...]:
        path: tuple[Any, ...] = ("transitions",)
        if value is None:
            self.problem(path, "missing transitions")
            return ()
        if not self.expect(value, list, path, "a list of transitions"):
            return ()
        result = []
        unconditional: dict[tuple[str, str], int] = {}
        for i, row in enumerate(value):
            row_path = (*path, i)
            if not self.expect(row, dict, row_path, "a mapping"):
                continue
            self.known_keys(row, ("trigger", "source", "dest", "conditions", "unless",
                                  "reset_failures"), row_path)
            missing = [key for key in ("trigger", "source", "dest") if key not in row]
            if missing:
                self.problem(row_path, f"missing {', '.join(missing)}")
                continue
            trigger = self.names(row["trigger"], (*row_path, "trigger"), "a trigger")
            sources = self.names(row["source"], (*row_path, "source"), "a source state")
            dest = self.names(row["dest"], (*row_path, "dest"), "a dest state")
            conditions = self.names(row.get("conditions", []), (*row_path, "conditions"),
                                    "a guard")
            unless = self.names(row.get("unless", []), (*row_path, "unless"), "a guard")
            self.vocabulary((*conditions, *unless), GUARDS, row_path, "guard")
            reset = row.get("reset_failures", False)
            self.expect(reset, bool, (*row_path, "reset_failures"), "true or false")
            if len(trigger) != 1 or len(dest) != 1 or not sources:
                if len(trigger) > 1 or len(dest) > 1:
                    self.problem(row_path, "trigger and dest take a single name")
                continue
            for source in sources:
                if states and source not in states:
                    self.problem((*row_path, "source"), f"unknown state {source!r}")
            if states and dest[0] not in states:
                self.problem((*row_path, "dest"), f"unknown state {dest[0]!r}")
            transition = TransitionSpec(trigger=trigger[0], sources=sources, dest=dest[0],
                                        conditions=conditions, unless=unless,
                                        reset_failures=reset is True)
            if not transition.guarded:
                for source in sources:
                    first = unconditional.setdefault((source, trigger[0]), i)
                    if first != i:
                        self.problem(row_path, f"second unconditional transition for trigger "
                                               f"{trigger[0]!r} from {source} (first at "
                                               f"transitions.{first}, line "
                                               f"{self.lines.get((*path, first), '?')})")
            result.append(transition)
        return tuple(result)

    def graph(self, states: Mapping[str, StateSpec],
              transitions: tuple[TransitionSpec, ...], initial: str) -> None:
        """Reachability, dead ends, absorbing final states, and timer triggers."""
        outgoing: dict[str, list[TransitionSpec]] = {name: [] for name in states}
        for transition in transitions:
            for source in transition.sources:
                outgoing[source].append(transition)
        reached = {initial}
        frontier = [initial]
        while frontier:
            for transition in outgoing[frontier.pop()]:
                if transition.dest not in reached:
                    reached.add(transition.dest)
                    frontier.append(transition.dest)
        for name, state in states.items():
            path = ("states", name)
            if name not in reached:
                self.problem(path, f"state {name} is unreachable from {initial}")
            if state.final and outgoing[name]:
                self.problem(path, f"final state {name} has outgoing transitions "
                                   f"({', '.join(t.trigger for t in outgoing[name])})")
            if not state.final and not outgoing[name]:
                self.problem(path, f"state {name} is not final and has no way out")
            triggers = {t.trigger for t in outgoing[name]}
            for timer in state.timers:
                for trigger in timer.triggers:
                    if trigger not in triggers:
                        self.problem((*path, "timers", timer.name),
                                     f"timer {timer.name} fires {trigger!r}, which has no "
                                     f"transition from {name}")

    def errors(self, value: Any) -> ErrorTable | None:
        path: tuple[Any, ...] = ("errors",)
        if value is None:
            return _DEFAULT_ERRORS
        if not self.expect(value, dict, path, "a mapping"):
            return None
        self.known_keys(value, ("classes", "rules", "default"), path)
        classes = self.error_classes(value.get("classes"), (*path, "classes"))
        rules = self.error_rules(value.get("rules", []), (*path, "rules"), classes)
        default = value.get("default")
        if default is None:
            self.problem((*path, "default"), "missing default class")
        elif classes and default not in classes:
            self.problem((*path, "default"), f"unknown error class {default!r}")
        if self.problems:
            return None
        return ErrorTable(classes=classes, rules=rules, default=str(default))

    def error_classes(self, value: Any, path: tuple[Any, ...]) -> dict[str, ErrorClassSpec]:
        if value is None:
            self.problem(path, "missing error classes")
            return {}
        if not self.expect(value, dict, path, "a mapping of class names"):
            return {}
        classes = {}
        for name, body in value.items():
            class_path = (*path, name)
            if not self.expect(body, dict, class_path, "a mapping"):
                continue
            self.known_keys(body, ("action", "retry_after", "min_delay"), class_path)
            action = body.get("action")
            if action not in ACTIONS:
                self.problem((*class_path, "action"), f"unknown action {action!r} (known: "
                                                      f"{', '.join(sorted(ACTIONS))})")
                continue
            retry_after = body.get("retry_after", False)
            self.expect(retry_after, bool, (*class_path, "retry_after"), "true or false")
            min_delay = body.get("min_delay", 0)
            if self.expect(min_delay, (int, float), (*class_path, "min_delay"), "a number") \
                    and not 0 <= min_delay < float("inf"):
                self.problem((*class_path, "min_delay"), "must be finite and >= 0")
            classes[str(name)] = ErrorClassSpec(name=str(name), action=action,
                                                retry_after=retry_after is True,
                                                min_delay=float(min_delay))
        return classes

    def error_rules(self, value: Any, path: tuple[Any, ...],
                    classes: Mapping[str, ErrorClassSpec]) -> tuple[ErrorRule, ...]:
        if not self.expect(value, list, path, "a list of rules"):
            return ()
        rules = []
        for i, row in enumerate(value):
            row_path = (*path, i)
            if not self.expect(row, dict, row_path, "a mapping"):
                continue
            self.known_keys(row, ("class", "kinds", "http_status", "close_codes"), row_path)
            error_class = row.get("class")
            if error_class not in classes:
                self.problem((*row_path, "class"), f"unknown error class {error_class!r}")
                continue
            kinds = self.names(row.get("kinds", []), (*row_path, "kinds"), "a failure kind")
            self.vocabulary(kinds, FAILURE_KINDS, (*row_path, "kinds"), "failure kind")
            statuses = self.codes(row.get("http_status", []), (*row_path, "http_status"),
                                  100, 599)
            codes = self.codes(row.get("close_codes", []), (*row_path, "close_codes"),
                               1000, 4999)
            rules.append(ErrorRule(error_class=str(error_class), kinds=frozenset(kinds),
                                   http_status=statuses, close_codes=codes))
        return tuple(rules)

    def codes(self, value: Any, path: tuple[Any, ...], low: int, high: int) -> frozenset[int]:
        """A list of integers and ``"A-B"`` ranges within [low, high]."""
        if not self.expect(value, list, path, "a list of codes or 'A-B' ranges"):
            return frozenset()
        codes: set[int] = set()
        for i, item in enumerate(value):
            if isinstance(item, int) and not isinstance(item, bool):
                first = last = item
            elif isinstance(item, str) and re.fullmatch(r"\d+-\d+", item):
                first, last = (int(part) for part in item.split("-"))
            else:
                self.problem((*path, i), f"expected a code or an 'A-B' range, got {item!r}")
                continue
            if not low <= first <= last <= high:
                self.problem((*path, i), f"{item!r} is outside {low}-{high}")
                continue
            codes.update(range(first, last + 1))
        return frozenset(codes)


def _default_error_table() -> ErrorTable:
    """A minimal table for specs that declare none: every failure retries."""
    retry = ErrorClassSpec(name="retry", action="retry")
    return ErrorTable(classes={"retry": retry}, rules=(), default="retry")


_DEFAULT_ERRORS: Final = _default_error_table()
