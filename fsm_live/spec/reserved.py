"""Names a spec may not use, because ``transitions.Machine`` refuses or shadows them.

The rules, from transitions 0.9 (``transitions/core.py``):

* ``Machine.add_transition`` raises ``ValueError("Trigger name cannot be same as
  model attribute name.")`` for a trigger named like the model attribute,
  ``state`` (with no file or line: hence this check);
* ``Machine.add_model`` binds ``trigger`` and ``may_trigger`` to the model, then
  for each trigger ``T`` the methods ``T`` and ``may_T``, for each state ``S``
  ``is_S`` and, with ``auto_transitions`` (the default), the trigger ``to_S``.
  ``_checked_assignment`` skips a name the model already has, with only a log
  warning: a trigger named ``trigger``, ``is_S``, ``may_T`` or ``to_S`` silently
  does something else, or nothing;
* guard and action names are model attributes too (a string callback is looked
  up on the model): a guard named ``state`` reads the state's name, which is
  always true.  A name used both as a trigger and as a guard or action collides
  on the model the same way.

Dunder names (``__init__``) are refused for the same reason: every model has them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

__all__ = ("MODEL_ATTRIBUTE", "MODEL_CONVENIENCES", "reserved_reason")

#: transitions' default ``model_attribute``: the trigger name ``add_transition`` refuses.
MODEL_ATTRIBUTE: Final = "state"
#: Names ``Machine.add_model`` binds on every model before any trigger.
MODEL_CONVENIENCES: Final = frozenset({"trigger", "may_trigger"})


def reserved_reason(
    name: str, *, states: Collection[str], triggers: Collection[str], trigger: bool
) -> str | None:
    """Why ``name`` may not be used, or None if it may.

    ``trigger`` says whether ``name`` is used as a trigger (else as a guard or
    action name); ``states`` and ``triggers`` are the spec's (sets, for speed),
    for the names transitions derives from them (``is_S``, ``to_S``, ``may_T``).
    """
    if name == MODEL_ATTRIBUTE:
        what = "a trigger" if trigger else "a guard or action"
        return (
            f"{name!r} is reserved: transitions.Machine keeps the state in the model "
            f"attribute {MODEL_ATTRIBUTE!r}, so it cannot be {what} "
            f"(transitions raises 'Trigger name cannot be same as model attribute name')"
        )
    if name in MODEL_CONVENIENCES:
        return (
            f"{name!r} is reserved: transitions.Machine binds {name}() to every model, "
            f"so the spec's {name!r} would never be called"
        )
    if name.startswith("__") and name.endswith("__"):
        return f"{name!r} is reserved: every Python model already has it"
    if not trigger:
        return None
    for prefix in ("is_", "to_"):
        if name.startswith(prefix) and name[len(prefix) :] in states:
            made = "for each state" if prefix == "is_" else "for each state (auto_transitions)"
            return (
                f"{name!r} is reserved: transitions.Machine binds {prefix}<state>() "
                f"to the model {made}, and {name[len(prefix) :]} is a state"
            )
    if name.startswith("may_") and name[len("may_") :] in triggers:
        return (
            f"{name!r} is reserved: transitions.Machine binds may_<trigger>() to the "
            f"model for each trigger, and {name[len('may_') :]} is a trigger"
        )
    return None
