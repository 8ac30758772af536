"""The frozen values a validated spec is made of.

Build a :class:`Spec` with :meth:`Spec.from_path`, :meth:`Spec.from_yaml` or
:meth:`Spec.from_mapping` (which validate, see :mod:`fsm_live.spec.validate` and
:mod:`fsm_live.spec.checks`); the other classes are its parts.  Values built
directly are not validated (tests use that to feed odd input to renderers).

Where a value came from a YAML file, ``line`` (and, for a transition, ``index``,
its row in ``transitions``) locate it; they take no part in equality, so a spec
loaded from YAML equals the same spec built from data.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from fsm_live.spec.vocabulary import LIFECYCLE_VOCABULARY, Kind, Vocabulary

__all__ = (
    "ErrorClassSpec",
    "ErrorRule",
    "ErrorTable",
    "Spec",
    "StateSpec",
    "TimerSpec",
    "TransitionSpec",
    "Use",
    "default_spec_path",
)

Action = Literal["retry", "refresh", "planned", "fail"]
MAPPING_SOURCE = "<mapping>"


@attrs.frozen
class TimerSpec:
    """A deadline kept while in a state; on expiry it fires the first accepted trigger.

    ``triggers`` is empty for a timer that only updates the core (``stability``).
    """

    name: str
    triggers: tuple[str, ...]


@attrs.frozen
class StateSpec:
    """One state: its log level on entry, its tasks, timers, actions, ignored events, roles.

    Roles let code speak of states without naming them: ``final`` (absorbing:
    nothing leaves it), ``success`` (the connection is up: a connect is counted)
    and ``failed`` (the connection is failing: waiters and stats report why).
    ``on_enter`` / ``on_exit`` name actions run on entering / leaving the state
    (not on an internal transition); ``ignore`` names triggers the state accepts
    and does nothing with (no action, no state change), where any other trigger
    without a transition is refused.
    """

    name: str
    log_level: str = "INFO"
    tasks: tuple[str, ...] = ()
    timers: tuple[TimerSpec, ...] = ()
    final: bool = False
    success: bool = False
    failed: bool = False
    description: str = ""
    on_enter: tuple[str, ...] = ()
    on_exit: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    line: int | None = attrs.field(default=None, eq=False)


@attrs.frozen
class TransitionSpec:
    """One row of the transition table (several sources share one row).

    ``internal`` rows leave the state as it is without running its exit and entry
    actions (transitions' ``dest=None``); their ``dest`` is their one source.
    ``wildcard`` says the sources were written ``'*'`` (every non-final state that
    does not ignore the trigger).  ``before`` / ``after`` name actions run before /
    after the state changes, once the guards passed.
    """

    trigger: str
    sources: tuple[str, ...]
    dest: str
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    reset_failures: bool = False
    internal: bool = False
    wildcard: bool = False
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    index: int | None = attrs.field(default=None, eq=False)
    line: int | None = attrs.field(default=None, eq=False)

    @property
    def guarded(self) -> bool:
        """True when the transition has conditions or unless guards."""
        return bool(self.conditions or self.unless)

    @property
    def guards(self) -> tuple[str, ...]:
        """Every guard the row names, conditions first."""
        return (*self.conditions, *self.unless)

    @property
    def guard_label(self) -> str:
        """The guards as a diagram label suffix, e.g. ``" [exhausted]"``; empty if none."""
        parts = [*self.conditions, *(f"not {name}" for name in self.unless)]
        return f" [{', '.join(parts)}]" if parts else ""

    @property
    def item(self) -> str:
        """Its item in messages: ``transitions.N`` (``transitions`` when built from data)."""
        return "transitions" if self.index is None else f"transitions.{self.index}"


@attrs.frozen
class ErrorClassSpec:
    """What the machine does with a failure of this class."""

    name: str
    action: Action
    retry_after: bool = False
    min_delay: float = 0.0
    #: A failure of this class says the endpoint may be down (counted by the endpoint
    #: shared by the connections that dial it: fsm_live.core.endpoint).
    endpoint: bool = False


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
class Use:
    """One place a spec uses a name of its vocabulary: ``item`` and ``line`` locate it."""

    kind: Kind
    name: str
    item: str
    line: int | None


def _empty_vocabulary() -> Vocabulary:
    return Vocabulary.from_declarations(())


@attrs.frozen
class Spec:
    """A validated lifecycle spec.  Build it with :meth:`from_path` or :meth:`from_mapping`.

    ``vocabulary`` holds the names the spec declares itself (its ``guards``,
    ``tasks``, ``timers`` and ``actions`` sections); :attr:`known` adds the
    packaged lifecycle's.
    """

    name: str
    initial: str
    states: Mapping[str, StateSpec] = attrs.field(hash=False)  # see ErrorTable.classes
    transitions: tuple[TransitionSpec, ...]
    errors: ErrorTable
    source: str = MAPPING_SOURCE
    vocabulary: Vocabulary = attrs.field(factory=_empty_vocabulary, hash=False)

    @classmethod
    def from_path(cls, path: str | Path) -> Spec:
        """Load and validate a YAML spec file.

        Raises :class:`~fsm_live.errors.SpecError` (every problem, each with file
        and line; a file that is not UTF-8 text too) or :class:`OSError` when it
        cannot be read.
        """
        from fsm_live.spec.validate import spec_from_path

        return spec_from_path(path)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> Spec:
        """Parse and validate YAML text; ``source`` names it in error messages.

        Raises :class:`~fsm_live.errors.SpecError` listing every problem.
        """
        from fsm_live.spec.validate import spec_from_yaml

        return spec_from_yaml(text, source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = MAPPING_SOURCE) -> Spec:
        """Validate a spec given as plain data (as YAML would load it).

        Raises :class:`~fsm_live.errors.SpecError` listing every problem.
        """
        from fsm_live.spec.validate import spec_from_data

        return spec_from_data(data, source, {})

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
        """Every trigger name (of transitions, then of ``ignore`` lists), in order of
        first appearance."""
        names = [t.trigger for t in self.transitions]
        names += [trigger for state in self.states.values() for trigger in state.ignore]
        return tuple(dict.fromkeys(names))

    @property
    def known(self) -> Vocabulary:
        """The names this spec may use: the packaged lifecycle's plus its own."""
        return LIFECYCLE_VOCABULARY | self.vocabulary

    def edges(self) -> Iterator[tuple[str, TransitionSpec]]:
        """Every (source, transition) pair, in table order."""
        for transition in self.transitions:
            for source in transition.sources:
                yield source, transition

    def transitions_from(self, state: str) -> tuple[TransitionSpec, ...]:
        """The transitions whose sources include ``state``, in table order."""
        return tuple(t for t in self.transitions if state in t.sources)

    def rows(self, state: str, trigger: str) -> tuple[TransitionSpec, ...]:
        """The rows for ``trigger`` from ``state``, in table order: the first whose
        guards pass is taken; none means the trigger is ignored or refused there."""
        return tuple(t for t in self.transitions if t.trigger == trigger and state in t.sources)

    def accepts(self, state: str, trigger: str) -> bool:
        """True if ``trigger`` has a row from ``state`` or ``state`` ignores it."""
        return trigger in self.states[state].ignore or bool(self.rows(state, trigger))

    def uses(self) -> Iterator[Use]:
        """Every use of a guard, task, timer or action name, located, in file order
        of states then transitions."""
        for name, state in self.states.items():
            item = f"states.{name}"
            for task in state.tasks:
                yield Use("task", task, f"{item}.tasks", state.line)
            for timer in state.timers:
                yield Use("timer", timer.name, f"{item}.timers.{timer.name}", state.line)
            for key in ("on_enter", "on_exit"):
                for action in getattr(state, key):
                    yield Use("action", action, f"{item}.{key}", state.line)
        for transition in self.transitions:
            for key in ("conditions", "unless"):
                for guard in getattr(transition, key):
                    yield Use("guard", guard, f"{transition.item}.{key}", transition.line)
            for key in ("before", "after"):
                for action in getattr(transition, key):
                    yield Use("action", action, f"{transition.item}.{key}", transition.line)

    def event_args(self, trigger: str) -> tuple[str, ...]:
        """The event data a trigger's guards and actions take (their declared ``args``),
        in order of first appearance, over every row of the trigger and the entry
        and exit actions of the states its rows enter and leave."""
        known = self.known
        args: list[str] = []
        for transition in self.transitions:
            if transition.trigger != trigger:
                continue
            guards = [known.get("guard", g) for g in transition.guards]
            actions = [*transition.before, *transition.after]
            if not transition.internal:
                actions += [*self.states[transition.dest].on_enter]
                for source in transition.sources:
                    actions += [*self.states[source].on_exit]
            declarations = [*guards, *(known.get("action", a) for a in actions)]
            for declaration in declarations:
                if declaration is not None:
                    args += declaration.args
        return tuple(dict.fromkeys(args))


def default_spec_path() -> Path:
    """Path of the packaged ``connection.yaml``.

    In a wheel the specs live in the package (``fsm_live/specs``); in a source
    checkout or editable install they are the repository's ``specs/`` folder.
    """
    packaged = importlib.resources.files("fsm_live") / "specs" / "connection.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "specs" / "connection.yaml"
