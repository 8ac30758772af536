"""The ONE ``transitions.Machine`` built from a :class:`~fsm_live.spec.Spec`.

A :class:`SpecMachine` is built once per spec and shared by every connection
model in the process (docs/architecture.md, rule 5): models are not added
to it with ``add_model`` (whose per-model bound methods cost memory and whose
removal scans a list); triggers are fired on a model through :meth:`fire`, the
one typed entry point.  The Machine is synchronous, has no ``to_*`` shortcuts
(``auto_transitions=False``), and its callbacks are methods of the model that
only record effects.

Guards and actions are looked up in a :class:`~fsm_live.spec.Registry` when one
is given (a bound guard is called as ``func(model, **args)``, its declared args
taken from the event data; an action likewise; a :class:`SubjectModel` passes its
``subject`` instead of itself), else on the model by name.
Triggers a state ignores are accepted there and do nothing; internal rows leave
the state without running its exit and entry callbacks.

A model needs one attribute, ``state`` (the current state's name, which the
Machine sets).  It may also define the *hooks* of :data:`CALLBACKS`, each called
with transitions' ``EventData`` when present: ``_on_enter`` / ``_on_exit`` on
every state change (not on internal rows), ``_on_transition`` after every row
taken, ``_on_reset_failures`` before a ``reset_failures`` row; a plain object
without them is a model too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol

from transitions import Machine, State

from fsm_live.errors import SpecError, TransitionRefused
from fsm_live.spec import Registry, Spec, StateSpec, TimerSpec

__all__ = ("CALLBACKS", "MachineModel", "SpecMachine", "SubjectModel")

#: The optional model methods the Machine calls (with an ``EventData``), by role.
CALLBACKS: Final = {
    "on_enter": "_on_enter",
    "on_exit": "_on_exit",
    "after_state_change": "_on_transition",
    "reset_failures": "_on_reset_failures",
}


class MachineModel(Protocol):
    """What a model must provide: its current state's name."""

    state: str


def _hook(name: str) -> Callable[[Any], None]:
    """A Machine callback calling ``model.<name>(event_data)`` if the model has it."""

    def hook(event_data: Any) -> None:
        method = getattr(event_data.model, name, None)
        if method is not None:
            method(event_data)

    hook.__name__ = name
    return hook


_HOOKS: Final = {role: _hook(name) for role, name in CALLBACKS.items()}


class SubjectModel:
    """A model whose guards and actions are called with its ``subject`` instead of
    itself (:class:`~fsm_live.core.run.SpecRun`: the machine's model is the run, the
    subject is the user's object)."""

    __slots__ = ()
    subject: Any


class SpecMachine:
    """A spec compiled into one shared Machine plus per-state lookup tables."""

    __slots__ = ("_events", "allowed", "ignored", "machine", "registry", "spec", "states", "timers")

    def __init__(self, spec: Spec, *, registry: Registry | None = None) -> None:
        """Build the Machine.  ``registry`` binds the spec's guards and actions; raises
        :class:`~fsm_live.errors.SpecError` (``FILE:LINE: item: message``) if a guard
        or action the spec uses is bound to nothing or to a callable that cannot take
        its call.  Without a registry, guards and actions are model attributes."""
        self.spec = spec
        self.registry = registry
        if registry is not None:
            problems = registry.check(spec, kinds=("guard", "action"), unused=False)
            if problems:
                raise SpecError(problems)
        self.states: Mapping[str, StateSpec] = spec.states
        self.ignored: dict[str, frozenset[str]] = {
            name: frozenset(state.ignore) for name, state in spec.states.items()
        }
        self.allowed: dict[str, frozenset[str]] = {
            name: frozenset(t.trigger for t in spec.transitions_from(name)) | self.ignored[name]
            for name in spec.states
        }
        self.timers: dict[str, dict[str, TimerSpec]] = {
            name: {timer.name: timer for timer in state.timers}
            for name, state in spec.states.items()
        }
        self.machine = Machine(
            model=None,
            states=[
                State(
                    name,
                    on_enter=[_HOOKS["on_enter"], *self._callbacks("action", state.on_enter)],
                    on_exit=[_HOOKS["on_exit"], *self._callbacks("action", state.on_exit)],
                    final=state.final,
                )
                for name, state in spec.states.items()
            ],
            transitions=[
                {
                    "trigger": t.trigger,
                    "source": list(t.sources),
                    "dest": None if t.internal else t.dest,
                    "conditions": self._callbacks("guard", t.conditions),
                    "unless": self._callbacks("guard", t.unless),
                    "before": [
                        *([_HOOKS["reset_failures"]] if t.reset_failures else []),
                        *self._callbacks("action", t.before),
                    ],
                    "after": self._callbacks("action", t.after),
                }
                for t in spec.transitions
            ],
            initial=spec.initial,
            send_event=True,
            auto_transitions=False,
            after_state_change=_HOOKS["after_state_change"],
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
        if trigger in self.ignored[model.state]:
            return False
        return bool(self._events[trigger].trigger(model, **data))

    def _callbacks(self, kind: Literal["guard", "action"], names: tuple[str, ...]) -> list[Any]:
        """Machine callbacks for the spec's ``names``: the registry's callables where
        bound, else the names (looked up on the model by transitions)."""
        registry = self.registry
        if registry is None:
            return list(names)
        known = self.spec.known
        callbacks: list[Any] = []
        for name in names:
            if (kind, name) not in registry:
                callbacks.append(name)
                continue
            declaration = known.get(kind, name)
            args = declaration.args if declaration is not None else ()
            callbacks.append(_bound(registry.lookup(kind, name), args))
        return callbacks


def _bound(func: Callable[..., Any], args: tuple[str, ...]) -> Callable[[Any], Any]:
    """A Machine callback (``send_event``) calling ``func(model, **args)``; each arg
    is taken from the event data by name (None if the event has none)."""

    def callback(event_data: Any) -> Any:
        kwargs = event_data.kwargs
        model = event_data.model
        subject = model.subject if isinstance(model, SubjectModel) else model
        return func(subject, **{arg: kwargs.get(arg) for arg in args})

    callback.__name__ = getattr(func, "__name__", "callback")
    return callback
