"""Ready-made :class:`~fsm_live.testing.harness.Adapter` s for two state-machine libraries.

* :class:`TransitionsAdapter`: a model of a ``transitions.Machine`` (pytransitions);
* :class:`StateMachineAdapter`: a python-statemachine ``StateMachine``.

Neither imports its library: they call the objects they are given, and know a
refusal by the exception's class name (``MachineError``, ``TransitionNotAllowed``),
so fsm_live needs neither installed.  Event data reaches the implementation as
keyword arguments (``model.trigger(name, **data)``, ``machine.send(name, **data)``):
its guards and callbacks take them by name (``def exhausted(self, exhausted=False,
**kwargs)``; with transitions, ``send_event=False``, the default).

Both observe what the harness compares besides the state:

* ``subject``: the implementation's object (the model), which guard oracles of a
  registry read (``check_implementation(..., registry=...)``);
* ``actions()``: the actions the implementation ran since the last call, by the
  spec's names: transitions' callbacks (``before``, ``after``, ``on_enter``,
  ``on_exit``) and python-statemachine's (through a listener) whose names are
  the spec's actions (``action_names`` maps others);
* ``timers()`` / ``advance(seconds)``: with ``clock=`` a
  :class:`~fsm_live.testing.clock.VirtualClock` the implementation arms its timers
  on, the armed timers and the passing of time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fsm_live.testing.clock import VirtualClock

__all__ = ("StateMachineAdapter", "TransitionsAdapter")


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


class _Observed:
    """What both adapters share: the action log and the clock."""

    def __init__(self, clock: VirtualClock | None, action_names: Mapping[str, str] | None) -> None:
        self.clock = clock
        self.action_names = dict(action_names or {})
        self._log: list[str] | None = None
        self._wanted: frozenset[str] = frozenset()

    def observe(self, actions: Iterable[str]) -> None:
        """Start logging the calls of ``actions`` (the spec's action names)."""
        self._wanted = frozenset(actions)
        self._log = []
        self._install()

    def _install(self) -> None:
        raise NotImplementedError

    def _record(self, name: str) -> None:
        name = self.action_names.get(name, name)
        if self._log is not None and name in self._wanted:
            self._log.append(name)

    def actions(self) -> list[str] | None:
        """The spec's actions run since the last call, in order; None if not observed."""
        if self._log is None:
            return None
        log, self._log = self._log, []
        return log

    def timers(self) -> dict[str, float] | None:
        """Armed timers (name -> seconds left) on ``clock``; None without a clock."""
        return None if self.clock is None else self.clock.armed()

    def advance(self, seconds: float) -> None:
        """Move ``clock`` ahead; due timers fire.  Raises ``TypeError`` without a clock."""
        if self.clock is None:
            raise TypeError("this adapter has no clock: pass clock=VirtualClock()")
        self.clock.advance(seconds)


class TransitionsAdapter(_Observed):
    """Drives a ``transitions`` model: ``Machine(model=model, ...)`` or the machine itself.

    ``machine`` is the ``transitions.Machine``; ``model`` the model to drive
    (default: the machine's only model).  A trigger the machine has no event
    for, or one it raises ``MachineError`` for, is refused; ``state`` reads the
    model's ``model_attribute`` (``state`` by default).  ``names`` maps the
    implementation's state names to the spec's, where they differ;
    ``action_names`` its callback names to the spec's action names; ``clock``
    is the :class:`VirtualClock` its timers run on.
    """

    _REFUSALS = frozenset({"MachineError"})

    def __init__(
        self,
        machine: Any,
        model: Any = None,
        *,
        model_attribute: str = "state",
        names: Mapping[str, str] | None = None,
        action_names: Mapping[str, str] | None = None,
        clock: VirtualClock | None = None,
    ) -> None:
        super().__init__(clock, action_names)
        self.machine = machine
        if model is None:
            models = list(machine.models)
            if len(models) != 1:
                raise ValueError(f"the machine has {len(models)} models: say which one")
            model = models[0]
        self.model = model
        self.subject = model
        self.model_attribute = model_attribute
        self.names = dict(names or {})

    def _install(self) -> None:
        # Every callback but conditions goes through Machine.callback (transitions 0.9):
        # an instance attribute in front of it sees each one's name.
        machine = self.machine
        callback = type(machine).callback

        def observed(func: Any, event_data: Any) -> Any:
            name = func if isinstance(func, str) else getattr(func, "__name__", "")
            self._record(name)
            return callback(machine, func, event_data)

        machine.callback = observed

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


class StateMachineAdapter(_Observed):
    """Drives a python-statemachine ``StateMachine`` instance with ``send``.

    ``TransitionNotAllowed`` (also raised for an unknown event) is a refusal.
    The state is the id of the machine's one active state (``configuration`` in
    python-statemachine 3, ``current_state`` before), mapped by ``names`` (by
    default, ids are compared with the spec's names ignoring case, as
    python-statemachine's ids are lower-case attribute names).  ``subject`` is
    the machine's ``model`` when it was given one, else the machine.
    ``action_names`` and ``clock`` are as for :class:`TransitionsAdapter`.
    """

    _REFUSALS = frozenset({"TransitionNotAllowed"})

    def __init__(
        self,
        machine: Any,
        *,
        names: Mapping[str, str] | None = None,
        spec_states: Any = None,
        action_names: Mapping[str, str] | None = None,
        clock: VirtualClock | None = None,
    ) -> None:
        super().__init__(clock, action_names)
        self.machine = machine
        model = getattr(machine, "model", None)
        self.subject = machine if model is None or type(model).__name__ == "Model" else model
        self.names = dict(names or {})
        self._by_lower = {str(name).lower(): str(name) for name in (spec_states or ())}

    def _install(self) -> None:
        # python-statemachine calls a listener's method of the callback's name too.
        reverse: dict[str, str] = {}
        for own, spec_name in self.action_names.items():
            reverse.setdefault(spec_name, own)
        methods = {reverse.get(name, name): self._recorder(name) for name in sorted(self._wanted)}
        listener = type("ActionSpy", (), methods)()
        add = getattr(self.machine, "add_listener", None) or self.machine.add_observer
        add(listener)

    def _recorder(self, name: str) -> Any:
        def record(_self: Any, *args: Any, **kwargs: Any) -> None:
            if self._log is not None:
                self._log.append(name)

        return record

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
