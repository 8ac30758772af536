"""Lifecycle specs: load, validate, and hold them as frozen values; bind their names.

A spec is the declarative table of a lifecycle (see ``specs/connection.yaml`` and
``docs/specs.md``): states with their log level, tasks, timers, entry and exit
actions and ignored events; transitions with their guards; the error
classification table; and the guards, tasks, timers and actions the spec declares
for itself.  It is the only place states and transitions are written: the core's
Machine, the diagrams and the property tests all read a :class:`Spec`.

Loading validates everything and reports every problem at once in one
:class:`~fsm_live.errors.SpecError`, each problem located as
``FILE:LINE: item: message``.  A :class:`Registry` binds the spec's names to
Python callables and checks that binding.

The modules, one concept each: :mod:`~fsm_live.spec.model` (the values),
:mod:`~fsm_live.spec.loader` (YAML with lines, duplicate keys),
:mod:`~fsm_live.spec.validate` (structure), :mod:`~fsm_live.spec.checks` (the
graph), :mod:`~fsm_live.spec.reserved` (names transitions refuses),
:mod:`~fsm_live.spec.vocabulary` (declared names) and
:mod:`~fsm_live.spec.registry` (bindings).  This package imports only the
standard library, PyYAML, attrs and :mod:`fsm_live.errors`.
"""

from __future__ import annotations

from fsm_live.errors import FAILURE_KINDS
from fsm_live.spec.model import (
    ErrorClassSpec,
    ErrorRule,
    ErrorTable,
    Spec,
    StateSpec,
    TimerSpec,
    TransitionSpec,
    Use,
    default_spec_path,
)
from fsm_live.spec.registry import Binding, Registry
from fsm_live.spec.vocabulary import (
    ACTIONS,
    ERROR_ACTIONS,
    GUARDS,
    KINDS,
    LIFECYCLE_VOCABULARY,
    LOG_LEVELS,
    TASKS,
    TIMERS,
    Declaration,
    Kind,
    Vocabulary,
)

__all__ = (
    "ACTIONS",
    "ERROR_ACTIONS",
    "FAILURE_KINDS",
    "GUARDS",
    "KINDS",
    "LIFECYCLE_VOCABULARY",
    "LOG_LEVELS",
    "TASKS",
    "TIMERS",
    "Binding",
    "Declaration",
    "ErrorClassSpec",
    "ErrorRule",
    "ErrorTable",
    "Kind",
    "Registry",
    "Spec",
    "StateSpec",
    "TimerSpec",
    "TransitionSpec",
    "Use",
    "Vocabulary",
    "default_spec_path",
)
