"""How states are coloured: read from the spec's roles and log levels, never from names.

A state that is up (``success``) is green; a failing one (``failed``) red; where
the connection starts (``initial``) and ends (``final``) dim; any other state
yellow when the spec logs its entry at WARNING or above, cyan otherwise.  Any
spec, with any state names, is coloured the same way.
"""

from __future__ import annotations

from typing import Final

from fsm_live.spec import Spec, StateSpec

__all__ = ("CRASHED_STYLE", "StateStyles")

#: A fleet member whose connection crashed (no state of the spec).
CRASHED_STYLE: Final = "bold red"

_WARNING_LEVELS: Final = frozenset({"WARNING", "ERROR", "CRITICAL"})


def _style(spec: Spec, state: StateSpec) -> str:
    if state.success:
        return "bold green"
    if state.failed:
        return "bold red"
    if state.final or state.name == spec.initial:
        return "dim"
    return "yellow" if state.log_level in _WARNING_LEVELS else "cyan"


class StateStyles:
    """The rich style of each state of ``spec`` (``""`` for a name it does not know)."""

    __slots__ = ("_styles",)

    def __init__(self, spec: Spec) -> None:
        self._styles = {name: _style(spec, state) for name, state in spec.states.items()}

    def __call__(self, state: str) -> str:
        return self._styles.get(state, "")
