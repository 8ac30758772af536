"""Binding a spec's names to Python callables: the :class:`Registry`.

A spec names its guards, tasks, timers and actions; a registry says which
callable each name runs.  It is a plain value with no I/O: build one at import
time, hand it to whatever runs the spec (``SpecMachine(spec, registry=...)``;
for a live connection ``LiveConnection(..., machine=LifecycleMachine(spec,
registry=...))``), and check it against a spec with :meth:`Registry.check`
(``fsm-live check SPEC --bind module:registry`` does that from the command
line)::

    from fsm_live.spec import Registry

    registry = Registry("order_control")

    @registry.guard
    def payments_enough(order, amount):
        return sum(order.payments) + amount >= order.total

    @registry.action("record_payment")
    def _record(order, amount):
        order.payments.append(amount)

How each kind is called (``subject`` is what the machine runs for: your object
when :class:`fsm_live.runner.Runner` runs the spec (tasks get a ``TaskContext``:
``subject``, ``fire(trigger, **data)``, ``state``); the model of a
``SpecMachine``; in a live connection, the core's ``Lifecycle`` for guards,
actions and timers, and a ``TaskContext`` for tasks: ``send(frame)``,
``fire(trigger)``, ``state``):

============  =======================================  ==============================
kind          called as                                when
============  =======================================  ==============================
``guard``     ``func(subject, **args) -> bool``        a row's ``conditions``/``unless``
``action``    ``func(subject, **args) -> None``        ``on_enter``/``on_exit``/``before``/``after``
``timer``     ``func(subject) -> float``               on entering the state: seconds to expiry
``task``      ``async func(subject) -> None``          runs while in the state
============  =======================================  ==============================

``args`` are the names the spec declares for the guard or action (``guards:
{payments_enough: {args: [amount]}}``), taken by name from the event's data.
:meth:`Registry.check` verifies, without calling anything, that every name the
spec uses is bound and that each callable accepts that call (``inspect.signature``),
that tasks are coroutine functions, and reports names the spec declares but never
uses and bindings the spec never uses.

A name is bound once per kind, in one place: combining two registries that both
bind the same kind and name (``lifecycle | mine``) raises
:class:`~fsm_live.errors.SpecError` instead of letting one silently win, so a
user's timer named ``backoff`` can never be taken by a built-in one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

import attrs

from fsm_live.errors import SpecError
from fsm_live.spec.model import Spec
from fsm_live.spec.vocabulary import KINDS, SECTIONS, Declaration, Kind, Vocabulary

__all__ = ("Binding", "Registry")

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class Binding:
    """One name bound to a callable."""

    kind: Kind
    name: str
    func: Callable[..., Any]

    @property
    def where(self) -> str | None:
        """``FILE:LINE`` of the callable's definition, or None (a builtin, a partial)."""
        return _where(self.func)

    def describe(self) -> str:
        """``module.qualname`` of the callable, with ``at FILE:LINE`` where known."""
        where = self.where
        return _describe(self.func) + (f" at {where}" if where else "")


class Registry:
    """Names of guards, tasks, timers and actions bound to callables.

    Bind with the decorators :meth:`guard`, :meth:`task`, :meth:`timer` and
    :meth:`action` (bare, or given the spec's name when the function's differs),
    or with :meth:`bind`.  A name is bound once per kind: binding it again
    raises ``ValueError``.  Combine registries with ``|`` (:meth:`union`), e.g.
    the packaged lifecycle's plus yours; a name both bind is a
    :class:`~fsm_live.errors.SpecError`, never a silent override.
    """

    __slots__ = ("_bindings", "_owners", "name")

    def __init__(self, name: str = "registry") -> None:
        self.name = name
        self._bindings: dict[Kind, dict[str, Binding]] = {kind: {} for kind in KINDS}
        #: Which registry of a union each binding came from (for messages).
        self._owners: dict[tuple[Kind, str], str] = {}

    def __repr__(self) -> str:
        counts = ", ".join(f"{len(self._bindings[kind])} {kind}s" for kind in KINDS)
        return f"<Registry {self.name!r}: {counts}>"

    # -- binding -----------------------------------------------------------------------

    def bind(self, kind: Kind, name: str, func: Callable[..., Any]) -> None:
        """Bind ``name`` (a spec name of this ``kind``) to ``func``.

        Raises ``ValueError`` for an unknown kind, a name that is not an
        identifier, or a name already bound for this kind; ``TypeError`` if
        ``func`` is not callable.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if not name.isidentifier():
            raise ValueError(f"{kind} name {name!r} is not an identifier")
        if not callable(func):
            raise TypeError(f"{kind} {name!r}: {func!r} is not callable")
        if name in self._bindings[kind]:
            raise ValueError(
                f"{kind} {name!r} is already bound in {self.name!r} "
                f"(to {_describe(self._bindings[kind][name].func)})"
            )
        self._bindings[kind][name] = Binding(kind, name, func)
        self._owners[(kind, name)] = self.name

    @overload
    def guard(self, name: F, /) -> F: ...
    @overload
    def guard(self, name: str | None = None, /) -> Callable[[F], F]: ...

    def guard(self, name: str | F | None = None, /) -> F | Callable[[F], F]:
        """Decorator: bind a guard, ``func(subject, **args) -> bool``."""
        return self._decorator("guard", name)

    @overload
    def action(self, name: F, /) -> F: ...
    @overload
    def action(self, name: str | None = None, /) -> Callable[[F], F]: ...

    def action(self, name: str | F | None = None, /) -> F | Callable[[F], F]:
        """Decorator: bind an entry, exit or transition action, ``func(subject, **args)``."""
        return self._decorator("action", name)

    @overload
    def timer(self, name: F, /) -> F: ...
    @overload
    def timer(self, name: str | None = None, /) -> Callable[[F], F]: ...

    def timer(self, name: str | F | None = None, /) -> F | Callable[[F], F]:
        """Decorator: bind a timer, ``func(subject) -> float`` (seconds until it expires)."""
        return self._decorator("timer", name)

    @overload
    def task(self, name: F, /) -> F: ...
    @overload
    def task(self, name: str | None = None, /) -> Callable[[F], F]: ...

    def task(self, name: str | F | None = None, /) -> F | Callable[[F], F]:
        """Decorator: bind a task, ``async func(subject) -> None``."""
        return self._decorator("task", name)

    def _decorator(self, kind: Kind, name: str | F | None) -> F | Callable[[F], F]:
        if callable(name):
            self.bind(kind, name.__name__, name)
            return name

        def decorate(func: F) -> F:
            self.bind(kind, name if isinstance(name, str) else func.__name__, func)
            return func

        return decorate

    # -- lookup ------------------------------------------------------------------------

    def lookup(self, kind: Kind, name: str) -> Callable[..., Any]:
        """The callable bound to ``name``; raises ``KeyError`` naming the registry if none."""
        try:
            return self._bindings[kind][name].func
        except KeyError:
            raise KeyError(f"{kind} {name!r} is not bound in registry {self.name!r}") from None

    def names(self, kind: Kind) -> frozenset[str]:
        """The bound names of one kind."""
        return frozenset(self._bindings[kind])

    def __contains__(self, item: object) -> bool:
        """``("guard", "exhausted") in registry``."""
        if not (isinstance(item, tuple) and len(item) == 2):
            return False
        kind, name = item
        return kind in self._bindings and name in self._bindings[kind]

    def __iter__(self) -> Iterator[Binding]:
        for kind in KINDS:
            yield from self._bindings[kind].values()

    def __len__(self) -> int:
        return sum(len(bindings) for bindings in self._bindings.values())

    def __or__(self, other: Registry) -> Registry:
        """``self.union(other)``: both's bindings; a name bound in both is an error."""
        return self.union(other)

    def union(self, *others: Registry, spec: Spec | None = None) -> Registry:
        """A new registry with this one's bindings and ``others``'.

        Raises :class:`~fsm_live.errors.SpecError` listing each kind and name bound
        in two of them (``lifecycle | mine`` where both bind the timer ``backoff``):
        one problem per name, located at ``spec``'s declaration of the name when a
        spec is given and declares it (``app.yaml:7: timers.backoff: ...``), else at
        the later binding's definition (``app.py:12: timer 'backoff': ...``).
        """
        merged = Registry("|".join(r.name for r in (self, *others)))
        problems: list[str] = []
        for registry in (self, *others):
            for binding in registry:
                first = merged._bindings[binding.kind].get(binding.name)
                if first is None:
                    merged._bindings[binding.kind][binding.name] = binding
                    merged._owners[(binding.kind, binding.name)] = registry.name
                    continue
                if first.func is binding.func:
                    continue  # the same callable twice (a registry combined with itself)
                owner = merged._owners[(binding.kind, binding.name)]
                problems.append(
                    _clash(binding, spec)
                    + f"{binding.kind} {binding.name!r} is bound in registry {owner!r} "
                    f"(to {first.describe()}) and in registry {registry.name!r} "
                    f"(to {binding.describe()}): a name is bound once; rename one "
                    f"in its spec and its registry"
                )
        if problems:
            raise SpecError(problems)
        return merged

    def vocabulary(self) -> Vocabulary:
        """The bound names as a vocabulary (declarations without args)."""
        return Vocabulary.from_declarations(Declaration(b.kind, b.name) for b in self)

    # -- checking ----------------------------------------------------------------------

    def check(
        self,
        spec: Spec,
        *,
        kinds: Iterable[Kind] = KINDS,
        declared_only: bool = False,
        unused: bool = True,
    ) -> list[str]:
        """Problems binding ``spec`` with this registry, each ``FILE:LINE: item: message``.

        A name the spec uses must be bound, and its callable must accept the
        call of its kind (see the module docstring); a task must be a coroutine
        function.  Only names of ``kinds`` are checked (default: every kind), and
        with ``declared_only`` only the names the spec declares itself (not the
        packaged lifecycle's, which its runtime implements).
        Problems are reported once per name, at its declaration if the spec
        declares it, else at its first use.  Nothing is called.

        With ``unused`` (the default) two more kinds of problem are reported:
        a name the spec declares (its ``guards``, ``tasks``, ``timers`` or
        ``actions`` sections) that no state or row uses, at its declaration; and
        a binding of this registry that the spec never uses (a typo, or a name
        left behind), at the callable's definition.  Machines built from a
        registry do not refuse those (a registry may serve several specs), and
        ``declared_only`` leaves them out (a runtime that implements the packaged
        names checks only the spec's own).
        """
        problems: list[str] = []
        seen: set[tuple[Kind, str]] = set()
        known = spec.known
        wanted = frozenset(kinds)
        for use in spec.uses():
            if use.kind not in wanted or (
                declared_only and spec.vocabulary.get(use.kind, use.name) is None
            ):
                continue
            key = (use.kind, use.name)
            if key in seen:
                continue
            seen.add(key)
            declared = spec.vocabulary.get(use.kind, use.name)
            line: int | None
            if declared is not None and declared.line is not None:
                line, item = declared.line, f"{SECTIONS[use.kind]}.{use.name}"
            else:
                line, item = use.line, use.item
            where = f"{spec.source}:{line}" if line is not None else spec.source
            declaration = known.get(use.kind, use.name)
            args = declaration.args if declaration is not None else ()
            message = self._problem(use.kind, use.name, args)
            if message:
                problems.append(f"{where}: {item}: {message}")
        if unused and not declared_only:
            problems += self.unused(spec, kinds=wanted)
        return problems

    def unused(self, spec: Spec, *, kinds: Iterable[Kind] = KINDS) -> list[str]:
        """Names ``spec`` declares but never uses, then bindings of this registry
        ``spec`` never uses, each one located line (see :meth:`check`)."""
        wanted = frozenset(kinds)
        used = {(use.kind, use.name) for use in spec.uses()}
        problems = [
            f"{spec.source}:{d.line}: {SECTIONS[d.kind]}.{d.name}: {d.kind} {d.name!r} is "
            f"declared but no state or transition uses it"
            if d.line is not None
            else f"{spec.source}: {SECTIONS[d.kind]}.{d.name}: {d.kind} {d.name!r} is "
            f"declared but no state or transition uses it"
            for d in spec.vocabulary
            if d.kind in wanted and (d.kind, d.name) not in used
        ]
        for binding in self:
            if binding.kind in wanted and (binding.kind, binding.name) not in used:
                where = binding.where or f"registry {self.name!r}"
                problems.append(
                    f"{where}: {binding.kind} {binding.name!r} is bound in registry "
                    f"{self.name!r} (to {_describe(binding.func)}) but {spec.source} "
                    f"never uses it"
                )
        return problems

    def _problem(self, kind: Kind, name: str, args: tuple[str, ...]) -> str | None:
        binding = self._bindings[kind].get(name)
        if binding is None:
            return f"{kind} {name!r} is not bound in registry {self.name!r}"
        func = binding.func
        if kind == "task" and not _is_coroutine_function(func):
            return f"task {name!r} is bound to {_describe(func)}, which is not an async function"
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return None  # no signature to check (some builtins): trust it
        call = f"{name}(subject{''.join(f', {a}=...' for a in args)})"
        try:
            signature.bind(None, **dict.fromkeys(args))
        except TypeError as exc:
            return (
                f"{kind} {name!r} is bound to {_describe(func)}{signature}, which cannot be "
                f"called as {call}: {exc}"
            )
        return None


def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _where(func: Callable[..., Any]) -> str | None:
    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    return f"{code.co_filename}:{code.co_firstlineno}"


def _clash(binding: Binding, spec: Spec | None) -> str:
    """Where a name bound twice is reported: the spec's declaration, else the binding."""
    if spec is not None:
        declared = spec.vocabulary.get(binding.kind, binding.name)
        if declared is not None:
            line = f":{declared.line}" if declared.line is not None else ""
            return f"{spec.source}{line}: {SECTIONS[binding.kind]}.{binding.name}: "
        use = next(
            (u for u in spec.uses() if (u.kind, u.name) == (binding.kind, binding.name)), None
        )
        if use is not None:
            line = f":{use.line}" if use.line is not None else ""
            return f"{spec.source}{line}: {use.item}: "
    where = binding.where
    return f"{where}: " if where else ""


def _describe(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{qualname}" if module else qualname
