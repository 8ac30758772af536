"""Structure checks of a spec, and building the :class:`~fsm_live.spec.model.Spec`.

Every problem is collected, located as ``FILE:LINE: item: message`` (``item`` is
the path of keys and indexes, e.g. ``transitions.3.dest``), and raised together
in one :class:`~fsm_live.errors.SpecError`.  The rules on the shape of the graph
(reachability, dead ends, shadowed rows...) are in :mod:`fsm_live.spec.checks`;
reserved names in :mod:`fsm_live.spec.reserved`.

The schema, key by key, is documented in ``docs/specs.md``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping
from pathlib import Path as FilePath
from typing import Any, Final

from fsm_live.errors import FAILURE_KINDS, SpecError
from fsm_live.spec import checks
from fsm_live.spec.loader import Lines, Path, YamlProblem, parse
from fsm_live.spec.model import (
    ErrorClassSpec,
    ErrorRule,
    ErrorTable,
    Spec,
    StateSpec,
    TimerSpec,
    TransitionSpec,
)
from fsm_live.spec.reserved import reserved_reason
from fsm_live.spec.vocabulary import (
    ERROR_ACTIONS,
    KINDS,
    KINDS_WITH_ARGS,
    LIFECYCLE_VOCABULARY,
    LOG_LEVELS,
    SECTIONS,
    Declaration,
    Kind,
    Vocabulary,
)

__all__ = ("spec_from_data", "spec_from_path", "spec_from_yaml")

_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The roles a state may carry (see :class:`StateSpec`).
_ROLES: Final = ("final", "success", "failed")
_TOP_KEYS: Final = (
    "name",
    "description",
    "initial",
    "states",
    "transitions",
    "errors",
    *SECTIONS.values(),
)
_STATE_KEYS: Final = (
    "description",
    "log",
    "tasks",
    "timers",
    *_ROLES,
    "on_enter",
    "on_exit",
    "ignore",
)
_ROW_KEYS: Final = (
    "trigger",
    "source",
    "dest",
    "internal",
    "conditions",
    "unless",
    "before",
    "after",
    "reset_failures",
)
#: ``source: '*'``: every non-final state that does not ignore the trigger.
WILDCARD: Final = "*"


def spec_from_path(path: str | FilePath) -> Spec:
    """Read, parse and validate a spec file (see :meth:`Spec.from_path`)."""
    path = FilePath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return spec_from_yaml(text, str(path))


def spec_from_yaml(text: str, source: str) -> Spec:
    """Parse and validate YAML text (see :meth:`Spec.from_yaml`)."""
    try:
        data, lines, problems = parse(text)
    except YamlProblem as exc:
        where = source if exc.line is None else f"{source}:{exc.line}"
        raise SpecError([f"{where}: not valid YAML: {exc.message}"]) from None
    if data is None:
        raise SpecError([f"{source}:1: the spec is empty"])
    validator = _Validator(data, source, lines)
    for path, line, message in problems:
        validator.problem(path, message, line=line)
    return validator.build()


def spec_from_data(data: Any, source: str, lines: Lines) -> Spec:
    """Validate plain data (see :meth:`Spec.from_mapping`)."""
    return _Validator(data, source, lines).build()


class _Validator:
    """Collects every problem in a spec; builds the :class:`Spec` only if there are none."""

    def __init__(self, data: Any, source: str, lines: Lines) -> None:
        self.data = data
        self.source = source
        self.lines = lines
        self.problems: list[str] = []

    # -- reporting -----------------------------------------------------------------------

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest located parent."""
        for depth in range(len(path), -1, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                return line
        return None

    def problem(self, path: Path, message: str, *, line: int | None = None) -> None:
        line = self.line(path) if line is None else line
        where = f"{self.source}:{line}" if line is not None else self.source
        item = ".".join(str(part) for part in path) or "spec"
        self.problems.append(f"{where}: {item}: {message}")

    def expect(self, value: Any, kind: type | tuple[type, ...], path: Path, what: str) -> bool:
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            ok = False
        else:
            ok = isinstance(value, kind)
        if not ok:
            self.problem(path, f"expected {what}, got {type(value).__name__} {value!r}")
        return ok

    def known_keys(self, mapping: Mapping[Any, Any], allowed: Iterable[str], path: Path) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(
                    (*path, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
                )

    def names(self, value: Any, path: Path, what: str) -> tuple[str, ...]:
        """A name or a list of names; reports malformed ones."""
        if isinstance(value, str):
            if _NAME.match(value):
                return (value,)
            self.problem(path, f"expected {what} name, got {value!r}")
            return ()
        if not isinstance(value, list):
            self.problem(
                path, f"expected {what} (a name or a list of names), got {type(value).__name__}"
            )
            return ()
        result = []
        for i, item in enumerate(value):
            if isinstance(item, str) and _NAME.match(item):
                result.append(item)
            else:
                self.problem((*path, i), f"expected {what} name, got {item!r}")
        return tuple(result)

    def flag(self, body: Mapping[str, Any], key: str, path: Path) -> bool:
        value = body.get(key, False)
        self.expect(value, bool, (*path, key), "true or false")
        return value is True

    def known(self, names: tuple[str, ...], kind: Kind, path: Path, known: Vocabulary) -> None:
        if not names:  # most rows name no guard or action: keep the common case cheap
            return
        allowed = known.declarations.get(kind, {})
        for name in names:
            if name not in allowed:
                self.problem(
                    path,
                    f"unknown {kind} {name!r} (known: "
                    f"{', '.join(sorted(allowed)) or 'none'}; declare your own "
                    f"under the top-level {SECTIONS[kind]!r})",
                )

    # -- building ------------------------------------------------------------------------

    def build(self) -> Spec:
        data = self.data
        if not isinstance(data, Mapping):
            self.problem((), f"a spec is a mapping, got {type(data).__name__}")
            raise SpecError(self.problems)
        self.known_keys(data, _TOP_KEYS, ())
        name = data.get("name", "spec")
        if not self.expect(name, str, ("name",), "a string"):
            name = "spec"
        description = data.get("description", "")
        self.expect(description, str, ("description",), "a string")
        declared = self.declarations(data)
        known = LIFECYCLE_VOCABULARY | declared
        states = self.states(data.get("states"), known)
        transitions = self.transitions(data.get("transitions"), states, known)
        initial = self.initial(data.get("initial"), states)
        errors = self.errors(data.get("errors"))
        if states and not self.problems:
            self.names_in_use(states, transitions, declared)
        if states and initial is not None and not self.problems:
            for path, message in checks.graph_problems(states, transitions, initial):
                self.problem(path, message)
        if self.problems or initial is None or errors is None:
            raise SpecError(self.problems)
        return Spec(
            name=str(name),
            initial=initial,
            states=states,
            transitions=transitions,
            errors=errors,
            source=self.source,
            vocabulary=declared,
        )

    def declarations(self, data: Mapping[str, Any]) -> Vocabulary:
        """The spec's own guards, tasks, timers and actions."""
        declarations: list[Declaration] = []
        for kind in KINDS:
            section = SECTIONS[kind]
            value = data.get(section)
            if value is None:
                continue
            path: Path = (section,)
            lines: dict[Any, int | None] = {}
            if isinstance(value, list):
                names = self.names(value, path, f"a {kind}")
                lines = {name: self.line((*path, i)) for i, name in enumerate(value)}
                value = dict.fromkeys(names)
            elif not self.expect(value, dict, path, f"a mapping of {kind} names (or a list)"):
                continue
            for name, body in value.items():
                declaration = self.declaration(kind, name, body, (*path, name), lines.get(name))
                if declaration is not None:
                    declarations.append(declaration)
        return Vocabulary.from_declarations(declarations)

    def declaration(
        self, kind: Kind, name: Any, body: Any, path: Path, line: int | None = None
    ) -> Declaration | None:
        if not isinstance(name, str) or not _NAME.match(name):
            self.problem(path, f"invalid {kind} name {name!r}")
            return None
        body = {} if body is None else body
        if not self.expect(body, dict, path, "a mapping (args, description) or nothing"):
            return None
        allowed = ("args", "description") if kind in KINDS_WITH_ARGS else ("description",)
        self.known_keys(body, allowed, path)
        args = self.names(body.get("args", []), (*path, "args"), "an argument")
        for arg in args:
            if keyword.iskeyword(arg):
                self.problem((*path, "args"), f"argument {arg!r} is a Python keyword")
        if len(set(args)) != len(args):
            self.problem((*path, "args"), "an argument is named twice")
        description = body.get("description", "")
        self.expect(description, str, (*path, "description"), "a string")
        return Declaration(
            kind,
            name,
            args=args,
            description=str(description),
            line=self.lines.get(path, line),
        )

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

    def states(self, value: Any, known: Vocabulary) -> dict[str, StateSpec]:
        path: Path = ("states",)
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
                hint = (
                    " (YAML reads ON/OFF/YES/NO as booleans: quote the name)"
                    if isinstance(name, bool)
                    else ""
                )
                self.problem(state_path, f"invalid state name {name!r}{hint}")
                continue
            body = {} if body is None else body
            if not self.expect(body, dict, state_path, "a mapping"):
                continue
            states[name] = self.state(name, body, state_path, known)
        return states

    def state(self, name: str, body: Mapping[str, Any], path: Path, known: Vocabulary) -> StateSpec:
        self.known_keys(body, _STATE_KEYS, path)
        log = body.get("log", "INFO")
        if self.expect(log, str, (*path, "log"), "a log level") and log not in LOG_LEVELS:
            self.problem(
                (*path, "log"),
                f"unknown log level {log!r} (known: {', '.join(sorted(LOG_LEVELS))})",
            )
        tasks = self.names(body.get("tasks", []), (*path, "tasks"), "a task")
        self.known(tasks, "task", (*path, "tasks"), known)
        timers = self.timers(body.get("timers", {}), (*path, "timers"), known)
        actions = {}
        for key in ("on_enter", "on_exit"):
            actions[key] = self.names(body.get(key, []), (*path, key), "an action")
            self.known(actions[key], "action", (*path, key), known)
        ignore = self.names(body.get("ignore", []), (*path, "ignore"), "a trigger")
        flags = {role: self.flag(body, role, path) for role in _ROLES}
        description = body.get("description", "")
        self.expect(description, str, (*path, "description"), "a string")
        if sum(flags.values()) > 1:
            self.problem(path, f"a state has at most one role of {', '.join(_ROLES)}")
        return StateSpec(
            name=name,
            log_level=str(log),
            tasks=tasks,
            timers=timers,
            final=flags["final"],
            success=flags["success"],
            failed=flags["failed"],
            description=str(description),
            on_enter=actions["on_enter"],
            on_exit=actions["on_exit"],
            ignore=ignore,
            line=self.lines.get(path),
        )

    def timers(self, value: Any, path: Path, known: Vocabulary) -> tuple[TimerSpec, ...]:
        if not self.expect(value, dict, path, "a mapping of timer -> trigger(s)"):
            return ()
        timers = []
        for name, triggers in value.items():
            self.known((str(name),), "timer", (*path, name), known)
            fired = () if triggers is None else self.names(triggers, (*path, name), "a trigger")
            timers.append(TimerSpec(name=str(name), triggers=fired))
        return tuple(timers)

    def transitions(
        self, value: Any, states: Mapping[str, StateSpec], known: Vocabulary
    ) -> tuple[TransitionSpec, ...]:
        path: Path = ("transitions",)
        if value is None:
            self.problem(path, "missing transitions (write `transitions: []` for none)")
            return ()
        if not self.expect(value, list, path, "a list of transitions"):
            return ()
        result: list[TransitionSpec] = []
        for i, row in enumerate(value):
            if self.expect(row, dict, (*path, i), "a mapping"):
                result += self.row(i, row, states, known)
        return tuple(result)

    def row(
        self, i: int, row: Mapping[str, Any], states: Mapping[str, StateSpec], known: Vocabulary
    ) -> list[TransitionSpec]:
        """One row as transitions: one, or one per source for an internal row."""
        row_path: Path = ("transitions", i)
        self.known_keys(row, _ROW_KEYS, row_path)
        internal = self.flag(row, "internal", row_path)
        required = ("trigger", "source") if internal else ("trigger", "source", "dest")
        missing = [key for key in required if key not in row]
        if missing:
            self.problem(row_path, f"missing {', '.join(missing)}")
            return []
        if internal and "dest" in row:
            self.problem(
                (*row_path, "dest"),
                "an internal transition has no dest (it stays in its source state)",
            )
        trigger = self.names(row["trigger"], (*row_path, "trigger"), "a trigger")
        wildcard = row["source"] == WILDCARD
        if wildcard:
            sources = tuple(
                name
                for name, state in states.items()
                if not state.final and trigger and trigger[0] not in state.ignore
            )
        else:
            sources = self.names(row["source"], (*row_path, "source"), "a source state (or '*')")
        dest = () if internal else self.names(row["dest"], (*row_path, "dest"), "a dest state")
        guards = {
            key: self.names(row.get(key, []), (*row_path, key), "a guard")
            for key in ("conditions", "unless")
        }
        for key, names in guards.items():
            self.known(names, "guard", (*row_path, key), known)
        actions = {
            key: self.names(row.get(key, []), (*row_path, key), "an action")
            for key in ("before", "after")
        }
        for key, names in actions.items():
            self.known(names, "action", (*row_path, key), known)
        contradiction = set(guards["conditions"]) & set(guards["unless"])
        if contradiction:
            both = ", ".join(sorted(contradiction))
            self.problem(
                row_path, f"the row can never be taken: {both} is both in conditions and in unless"
            )
        reset = self.flag(row, "reset_failures", row_path)
        if len(trigger) != 1 or (not internal and len(dest) != 1) or not sources:
            if len(trigger) > 1 or len(dest) > 1:
                self.problem(row_path, "trigger and dest take a single name")
            return []
        for source in sources:
            if states and source not in states:
                self.problem((*row_path, "source"), f"unknown state {source!r}")
        if dest and states and dest[0] not in states:
            self.problem((*row_path, "dest"), f"unknown state {dest[0]!r}")
        common: dict[str, Any] = {
            "trigger": trigger[0],
            "conditions": guards["conditions"],
            "unless": guards["unless"],
            "before": actions["before"],
            "after": actions["after"],
            "reset_failures": reset,
            "wildcard": wildcard,
            "index": i,
            "line": self.lines.get(row_path),
        }
        if internal:
            return [
                TransitionSpec(sources=(source,), dest=source, internal=True, **common)
                for source in sources
            ]
        return [TransitionSpec(sources=sources, dest=dest[0], **common)]

    def names_in_use(
        self,
        states: Mapping[str, StateSpec],
        transitions: tuple[TransitionSpec, ...],
        declared: Vocabulary,
    ) -> None:
        """Ignored triggers, reserved names, and triggers that collide with guards or actions."""
        triggers = {t.trigger for t in transitions}
        first_row: dict[str, TransitionSpec] = {}
        for transition in transitions:
            first_row.setdefault(transition.trigger, transition)
        state_names = set(states)
        for trigger, transition in first_row.items():
            reason = reserved_reason(trigger, states=state_names, triggers=triggers, trigger=True)
            if reason:
                self.problem(("transitions", transition.index, "trigger"), reason)
        callbacks: dict[str, Path] = {}
        for declaration in declared:
            if declaration.kind in KINDS_WITH_ARGS:
                callbacks.setdefault(
                    declaration.name, (SECTIONS[declaration.kind], declaration.name)
                )
        for transition in transitions:
            for key in ("conditions", "unless", "before", "after"):
                for name in getattr(transition, key):
                    callbacks.setdefault(name, ("transitions", transition.index, key))
        for name, state in states.items():
            for key in ("on_enter", "on_exit"):
                for action in getattr(state, key):
                    callbacks.setdefault(action, ("states", name, key))
        for name, path in callbacks.items():
            reason = reserved_reason(name, states=state_names, triggers=triggers, trigger=False)
            if reason:
                self.problem(path, reason)
            elif name in triggers:
                self.problem(
                    path,
                    f"{name!r} is both a trigger and a guard or action: on a "
                    f"transitions model both are attributes of the same name",
                )
        for name, state in states.items():
            for j, trigger in enumerate(state.ignore):
                path = ("states", name, "ignore", j)
                if trigger not in triggers:
                    self.problem(
                        path,
                        f"ignores {trigger!r}, which no transition uses "
                        f"(known triggers: {', '.join(sorted(triggers))})",
                    )
                    continue
                taking = next(
                    (t for t in transitions if t.trigger == trigger and name in t.sources), None
                )
                if taking is not None:
                    where = (
                        taking.item if taking.line is None else f"{taking.item}, line {taking.line}"
                    )
                    self.problem(path, f"ignores {trigger!r}, but {where} takes it from {name}")

    # -- the error table -------------------------------------------------------------------

    def errors(self, value: Any) -> ErrorTable | None:
        path: Path = ("errors",)
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

    def error_classes(self, value: Any, path: Path) -> dict[str, ErrorClassSpec]:
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
            self.known_keys(body, ("action", "retry_after", "min_delay", "endpoint"), class_path)
            action = body.get("action")
            if action not in ERROR_ACTIONS:
                self.problem(
                    (*class_path, "action"),
                    f"unknown action {action!r} (known: {', '.join(sorted(ERROR_ACTIONS))})",
                )
                continue
            retry_after = self.flag(body, "retry_after", class_path)
            min_delay = body.get("min_delay", 0)
            if self.expect(
                min_delay, (int, float), (*class_path, "min_delay"), "a number"
            ) and not 0 <= min_delay < float("inf"):
                self.problem((*class_path, "min_delay"), "must be finite and >= 0")
            classes[str(name)] = ErrorClassSpec(
                name=str(name),
                action=action,
                retry_after=retry_after,
                min_delay=float(min_delay),
                endpoint=self.flag(body, "endpoint", class_path),
            )
        return classes

    def error_rules(
        self, value: Any, path: Path, classes: Mapping[str, ErrorClassSpec]
    ) -> tuple[ErrorRule, ...]:
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
            for kind in kinds:
                if kind not in FAILURE_KINDS:
                    self.problem(
                        (*row_path, "kinds"),
                        f"unknown failure kind {kind!r} (known: "
                        f"{', '.join(sorted(FAILURE_KINDS))})",
                    )
            statuses = self.codes(row.get("http_status", []), (*row_path, "http_status"), 100, 599)
            codes = self.codes(row.get("close_codes", []), (*row_path, "close_codes"), 1000, 4999)
            rules.append(
                ErrorRule(
                    error_class=str(error_class),
                    kinds=frozenset(kinds),
                    http_status=statuses,
                    close_codes=codes,
                )
            )
        return tuple(rules)

    def codes(self, value: Any, path: Path, low: int, high: int) -> frozenset[int]:
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
