"""The names a spec may use for guards, tasks, timers and actions, and what they take.

A spec's *vocabulary* is open: besides the names of the packaged lifecycle
(:data:`LIFECYCLE_VOCABULARY`, always known), a spec declares its own in the
top-level sections ``guards``, ``tasks``, ``timers`` and ``actions``::

    guards:
      payments_enough: {args: [amount], description: the payments cover the order}
    timers: [idle_timeout]

Each declaration is a :class:`Declaration`; ``args`` (guards and actions only) are
the names of the event data the callable receives as keyword arguments.  Python
binds each name to a callable through a :class:`~fsm_live.spec.registry.Registry`.
Only names matter here: this module imports no user code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Literal

import attrs

__all__ = (
    "ACTIONS",
    "ERROR_ACTIONS",
    "GUARDS",
    "KINDS",
    "LIFECYCLE_VOCABULARY",
    "LOG_LEVELS",
    "SECTIONS",
    "TASKS",
    "TIMERS",
    "Declaration",
    "Kind",
    "Vocabulary",
)

Kind = Literal["guard", "task", "timer", "action"]
#: Every kind of name, in the order of a spec's sections.
KINDS: Final[tuple[Kind, ...]] = ("guard", "task", "timer", "action")
#: The top-level spec section that declares each kind.
SECTIONS: Final[Mapping[Kind, str]] = {
    "guard": "guards",
    "task": "tasks",
    "timer": "timers",
    "action": "actions",
}
#: Kinds whose callables receive event data (``args``); tasks and timers get none.
KINDS_WITH_ARGS: Final = frozenset({"guard", "action"})


@attrs.frozen
class Declaration:
    """One declared name: its kind, the event data it takes, a description.

    ``line`` is where a spec declares it (None for packaged names and specs built
    from data); it takes no part in equality.
    """

    kind: Kind
    name: str
    args: tuple[str, ...] = ()
    description: str = ""
    line: int | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Vocabulary:
    """Declarations by kind and name.  Build with :meth:`of` or :meth:`from_declarations`."""

    # Mappings take part in ==, not in hash() (see Spec).
    declarations: Mapping[Kind, Mapping[str, Declaration]] = attrs.field(hash=False)

    @classmethod
    def from_declarations(cls, declarations: Iterable[Declaration]) -> Vocabulary:
        """A vocabulary of these declarations (a later one replaces an earlier namesake)."""
        table: dict[Kind, dict[str, Declaration]] = {kind: {} for kind in KINDS}
        for declaration in declarations:
            table[declaration.kind][declaration.name] = declaration
        return cls(declarations=table)

    @classmethod
    def of(cls, **names: Iterable[str] | Mapping[str, str]) -> Vocabulary:
        """Declarations without args from names by section, e.g.
        ``Vocabulary.of(guards=["exhausted"], timers={"backoff": "description"})``.

        Raises ``ValueError`` for a section that is not one of :data:`SECTIONS`.
        """
        kinds = {section: kind for kind, section in SECTIONS.items()}
        declarations = []
        for section, items in names.items():
            if section not in kinds:
                raise ValueError(
                    f"unknown section {section!r} (known: {', '.join(SECTIONS.values())})"
                )
            descriptions = items if isinstance(items, Mapping) else dict.fromkeys(items, "")
            declarations += [
                Declaration(kinds[section], name, description=description)
                for name, description in descriptions.items()
            ]
        return cls.from_declarations(declarations)

    def names(self, kind: Kind) -> frozenset[str]:
        """The declared names of one kind."""
        return frozenset(self.declarations.get(kind, {}))

    def get(self, kind: Kind, name: str) -> Declaration | None:
        """The declaration of ``name`` as a ``kind``, or None."""
        return self.declarations.get(kind, {}).get(name)

    def __iter__(self) -> Iterator[Declaration]:
        for kind in KINDS:
            yield from self.declarations.get(kind, {}).values()

    def __len__(self) -> int:
        return sum(len(self.declarations.get(kind, {})) for kind in KINDS)

    def __or__(self, other: Vocabulary) -> Vocabulary:
        """Both vocabularies; ``other``'s declaration wins where both declare a name."""
        return Vocabulary.from_declarations([*self, *other])


#: The names the packaged lifecycle (``fsm_live.core.lifecycle``) implements.  Every
#: spec knows them; the core binds them to its own callables.
LIFECYCLE_VOCABULARY: Final = Vocabulary.of(
    guards={
        "exhausted": "the failure count has reached max_failures",
        "retryable": "a failed state reached by retryable failures, failed_retry on, "
        "no escalation running",
        "endpoint_down": "the endpoint this connection dials is down (its connections "
        "failed against it, endpoint_failures in a row)",
    },
    tasks={
        "dial": "dial and run the protocol handshake",
        "reader": "read frames and hand messages to the application",
        "heartbeat": "send the protocol's heartbeat every heartbeat_interval",
        "token_refresh": "refresh the token every token_refresh_interval",
        "cookie_refresh": "refresh the credentials' cookies",
        "cleanup": "sweep the de-duplication table",
        "flush": "send the outbound buffer in order",
        "escalation": "the escalation hook (e.g. re-login)",
    },
    timers={
        "open_timeout": "the dial and handshake must finish within open_timeout",
        "heartbeat_timeout": "nothing received for heartbeat_timeout: the link is lost",
        "stability": "the connection stayed up for stability_window",
        "backoff": "the backoff delay before the next attempt",
        "failed_retry": "failed_retry_delay (jittered) after a retryable failure",
        "probe": "this connection dials the endpoint: its turn to probe it while it "
        "is down (probe_interval apart, one connection at a time), or its paced "
        "slot once it is back",
    },
)

#: Log levels a state may name (``log:``).
LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
#: What an error class makes the packaged lifecycle do (``errors.classes.*.action``):
#: a closed list, implemented by the core.
ERROR_ACTIONS: Final = frozenset({"retry", "refresh", "planned", "fail"})

# The fixed lists of earlier versions, kept importable until the core reads
# LIFECYCLE_VOCABULARY; they are derived from it, so there is one list only.
#: Tasks of the packaged lifecycle (``LIFECYCLE_VOCABULARY.names("task")``).
TASKS: Final = LIFECYCLE_VOCABULARY.names("task")
#: Timers of the packaged lifecycle (``LIFECYCLE_VOCABULARY.names("timer")``).
TIMERS: Final = LIFECYCLE_VOCABULARY.names("timer")
#: Guards of the packaged lifecycle (``LIFECYCLE_VOCABULARY.names("guard")``).
GUARDS: Final = LIFECYCLE_VOCABULARY.names("guard")
#: Error-class actions; an alias of :data:`ERROR_ACTIONS` (not state entry/exit actions).
ACTIONS: Final = ERROR_ACTIONS
