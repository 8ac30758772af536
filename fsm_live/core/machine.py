"""The ONE ``transitions.Machine`` built from a :class:`~fsm_live.spec.Spec`.

A :class:`SpecMachine` is built once per spec and shared by every connection
model in the process (docs/architecture.md, rule 5): models are not added
to it with ``add_model`` (whose per-model bound methods cost memory and whose
removal scans a list); triggers are fired on a model through :meth:`fire`, the
one typed entry point.  The Machine is synchronous, has no ``to_*`` shortcuts
(``auto_transitions=False``), and its callbacks are methods of the model that
only record effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from transitions import Machine, State

from fsm_live.errors import TransitionRefused
from fsm_live.spec import Spec, StateSpec, TimerSpec

__all__ = ("CALLBACKS", "MachineModel", "SpecMachine")

#: The model methods the Machine calls (with an ``EventData``), by role.
CALLBACKS: Final = {
    "on_enter": "_on_enter",
    "on_exit": "_on_exit",
    "after_state_change": "_on_transition",
    "reset_failures": "_on_reset_failures",
}


class MachineModel(Protocol):
    """What a model must provide: its current state's name."""

    state: str


class SpecMachine:
    """A spec compiled into one shared Machine plus per-state lookup tables."""

    __slots__ = ("_events", "allowed", "machine", "spec", "states", "timers")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.states: Mapping[str, StateSpec] = spec.states
        self.allowed: dict[str, frozenset[str]] = {
            name: frozenset(t.trigger for t in spec.transitions_from(name))
            for name in spec.states
        }
        self.timers: dict[str, dict[str, TimerSpec]] = {
            name: {timer.name: timer for timer in state.timers}
            for name, state in spec.states.items()
        }
        self.machine = Machine(
            model=None,
            states=[
                State(name, on_enter=CALLBACKS["on_enter"], on_exit=CALLBACKS["on_exit"],
                      final=state.final)
                for name, state in spec.states.items()
            ],
            transitions=[
                {
                    "trigger": t.trigger,
                    "source": list(t.sources),
                    "dest": t.dest,
                    "conditions": list(t.conditions),
                    "unless": list(t.unless),
                    "before": [CALLBACKS["reset_failures"]] if t.reset_failures else [],
                }
                for t in spec.transitions
            ],
            initial=spec.initial,
            send_event=True,
            auto_transitions=False,
            after_state_change=CALLBACKS["after_state_change"],
        )
        self._events = self.machine.events

    def fire(self, model: MachineModel, trigger: str, **data: Any) -> bool:
        """Fire ``trigger`` on ``model``; True if a transition was taken.

        ``data`` reaches the callbacks as ``event_data.kwargs``.  False means the
        trigger is allowed in this state but every transition's guards failed.
        Raises :class:`TransitionRefused` if the state has no transition for it.
        """
        if trigger not in self.allowed[model.state]:
            raise TransitionRefused(model.state, trigger)
        return bool(self._events[trigger].trigger(model, **data))
