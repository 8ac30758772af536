"""Ready-made :class:`~fsm_live.testing.harness.Adapter` s for two state-machine libraries.

* :class:`TransitionsAdapter`: a model of a ``transitions.Machine`` (pytransitions);
* :class:`StateMachineAdapter`: a python-statemachine ``StateMachine``.

Neither imports its library: they call the objects they are given, and know a
refusal by the exception's class name (``MachineError``, ``TransitionNotAllowed``),
so fsm_live needs neither installed.  Event data reaches the implementation as
keyword arguments (``model.trigger(name, **data)``, ``machine.send(name, **data)``):
its guards and callbacks take them by name (``def exhausted(self, exhausted=False,
**kwargs)``; with transitions, ``send_event=False``, the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ("StateMachineAdapter", "TransitionsAdapter")


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


class TransitionsAdapter:
    """Drives a ``transitions`` model: ``Machine(model=model, ...)`` or the machine itself.

    ``machine`` is the ``transitions.Machine``; ``model`` the model to drive
    (default: the machine's only model).  A trigger the machine has no event
    for, or one it raises ``MachineError`` for, is refused; ``state`` reads the
    model's ``model_attribute`` (``state`` by default).  ``names`` maps the
    implementation's state names to the spec's, where they differ.
    """

    _REFUSALS = frozenset({"MachineError"})

    def __init__(
        self,
        machine: Any,
        model: Any = None,
        *,
        model_attribute: str = "state",
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.machine = machine
        if model is None:
            models = list(machine.models)
            if len(models) != 1:
                raise ValueError(f"the machine has {len(models)} models: say which one")
            model = models[0]
        self.model = model
        self.model_attribute = model_attribute
        self.names = dict(names or {})

    def fire(self, trigger: str, data: Mapping[str, Any]) -> bool:
        """Fire through ``model.trigger``; False if refused (see the class docstring)."""
        if trigger not in self.machine.events:
            return False
        try:
            self.model.trigger(trigger, **data)
        except Exception as exc:
            if _named(exc, self._REFUSALS):
                return False
            raise
        return True

    def state(self) -> str:
        """The model's state name, mapped by ``names``."""
        value = getattr(self.model, self.model_attribute)
        name = getattr(value, "name", value)  # transitions allows Enum states
        return self.names.get(str(name), str(name))


class StateMachineAdapter:
    """Drives a python-statemachine ``StateMachine`` instance with ``send``.

    ``TransitionNotAllowed`` (also raised for an unknown event) is a refusal.
    The state is the id of the machine's one active state (``configuration`` in
    python-statemachine 3, ``current_state`` before), mapped by ``names`` (by
    default, ids are compared with the spec's names ignoring case, as
    python-statemachine's ids are lower-case attribute names).
    """

    _REFUSALS = frozenset({"TransitionNotAllowed"})

    def __init__(
        self, machine: Any, *, names: Mapping[str, str] | None = None, spec_states: Any = None
    ) -> None:
        self.machine = machine
        self.names = dict(names or {})
        self._by_lower = {str(name).lower(): str(name) for name in (spec_states or ())}

    def fire(self, trigger: str, data: Mapping[str, Any]) -> bool:
        """``machine.send(trigger, **data)``; False if refused."""
        try:
            self.machine.send(trigger, **data)
        except Exception as exc:
            if _named(exc, self._REFUSALS):
                return False
            raise
        return True

    def state(self) -> str:
        """The active state's id, mapped by ``names`` or by case to a spec name."""
        configuration = getattr(self.machine, "configuration", None)
        if configuration is not None:
            states = list(configuration)
            if len(states) != 1:
                return "+".join(sorted(str(s.id) for s in states))
            state_id = str(states[0].id)
        else:
            state_id = str(self.machine.current_state.id)
        if state_id in self.names:
            return self.names[state_id]
        return self._by_lower.get(state_id.lower(), state_id)
