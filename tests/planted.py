"""One machine implemented three ways (a plain class, python-statemachine, transitions),
with the bugs users make planted in each, for the harness's tests and its benchmark
(``bench/planted_bugs.py``).

The machine is a kiosk: coins are taken while PAYING, whose idle timer refunds
them; the coin that completes the price dispenses and returns to IDLE.  Its spec
(:data:`SPEC`) and registry (:data:`REGISTRY`, the reference: guards, actions and
the timer on a :class:`KioskData`) are written as docs/specs.md says.  Each
implementation takes a :class:`~fsm_live.testing.VirtualClock` for its timer and
is checked with the registry's guards on its own object
(``check_implementation(..., registry=REGISTRY, model=KioskData)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fsm_live.spec import Registry, Spec
from fsm_live.testing import StateMachineAdapter, TransitionsAdapter, VirtualClock

SPEC = Spec.from_yaml(
    """\
name: kiosk
initial: IDLE
guards:
  paid_enough: {args: [amount], description: the coins so far and this one cover the price}
actions:
  take_coin: {args: [amount], description: count the coin}
  light_on: {description: the display lights up}
  light_off: {description: the display goes dark}
  dispense: {description: hand out one item and keep its price}
  give_back: {description: return the coins taken}
timers:
  idle_timeout: {description: no coin for this long refunds the coins}
states:
  IDLE: {description: waiting for a first coin}
  PAYING:
    description: coins are being inserted
    on_enter: [light_on]
    on_exit: [light_off]
    timers: {idle_timeout: refund}
transitions:
  - {trigger: coin, source: IDLE, dest: PAYING, before: [take_coin]}
  - {trigger: coin, source: PAYING, dest: IDLE, conditions: [paid_enough],
     before: [take_coin], after: [dispense]}
  - {trigger: coin, source: PAYING, internal: true, unless: [paid_enough], before: [take_coin]}
  - {trigger: refund, source: PAYING, dest: IDLE, before: [give_back]}
""",
    "kiosk.yaml",
)

#: The planted bugs: the kinds of issue 19, item 3, then the classic ones.
BUGS = (
    "an action called twice",
    "a timer not cancelled on leaving its state",
    "a guard with the wrong boundary",
    "a duplicated side effect",
    "a wrong destination",
    "a missing edge",
    "a timer armed for the wrong time",
)
#: How an implementation is written.
STYLES = ("plain class", "python-statemachine", "transitions")
PRICE = 3
TIMEOUT = 30.0


@dataclass
class KioskData:
    """What every implementation keeps (and what the reference run keeps)."""

    price: int = PRICE
    paid: int = 0
    dispensed: int = 0
    light: bool = False
    timeout: float = TIMEOUT


REGISTRY = Registry("kiosk")


@REGISTRY.guard
def paid_enough(k: Any, amount: int) -> bool:
    return bool(k.paid + amount >= k.price)


@REGISTRY.action
def take_coin(k: Any, amount: int) -> None:
    k.paid += amount


@REGISTRY.action
def light_on(k: Any) -> None:
    k.light = True


@REGISTRY.action
def light_off(k: Any) -> None:
    k.light = False


@REGISTRY.action
def dispense(k: Any) -> None:
    k.paid -= k.price
    k.dispensed += 1


@REGISTRY.action
def give_back(k: Any) -> None:
    k.paid = 0


@REGISTRY.timer
def idle_timeout(k: Any) -> float:
    return float(k.timeout)


# -- a plain class ---------------------------------------------------------------------------


class PlainKiosk(KioskData):
    """A hand-written state machine; ``bug`` plants one of :data:`BUGS`."""

    def __init__(self, clock: VirtualClock, bug: str | frozenset[str] | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.bugs = frozenset([bug] if isinstance(bug, str) else bug or ())
        self.state = "IDLE"
        self.log: list[str] = []
        self.timer: Any = None

    def _do(self, name: str, *args: Any) -> None:
        self.log.append(name)
        if name == "dispense" and "a duplicated side effect" in self.bugs:
            self.dispensed += 1  # the item counted twice, in one call
        {
            "take_coin": take_coin,
            "light_on": light_on,
            "light_off": light_off,
            "dispense": dispense,
            "give_back": give_back,
        }[name](self, *args)

    def _enter_paying(self) -> None:
        self.state = "PAYING"
        self._do("light_on")
        seconds = self.timeout * (2 if "a timer armed for the wrong time" in self.bugs else 1)
        self.timer = self.clock.call_later(seconds, self.refund, name="idle_timeout")

    def _leave_paying(self) -> None:
        self._do("light_off")
        if "a timer not cancelled on leaving its state" not in self.bugs:
            self.timer.cancel()

    def coin(self, amount: int) -> None:
        if self.state == "IDLE":
            self._do("take_coin", amount)
            if "an action called twice" in self.bugs:
                self._do("take_coin", amount)
            self._enter_paying()
            return
        enough = (
            self.paid + amount > self.price
            if "a guard with the wrong boundary" in self.bugs
            else self.paid + amount >= self.price
        )
        self._do("take_coin", amount)
        if enough:
            self._leave_paying()
            self.state = "PAYING" if "a wrong destination" in self.bugs else "IDLE"
            if self.state == "PAYING":
                self._enter_paying()
            self._do("dispense")

    def refund(self) -> None:
        if self.state != "PAYING" or "a missing edge" in self.bugs:
            raise LookupError(f"refund not allowed in {self.state}")
        self._do("give_back")
        self._leave_paying()
        self.state = "IDLE"


class PlainAdapter:
    """The adapter a user writes for a plain class: fire, state, and what to compare."""

    def __init__(self, kiosk: PlainKiosk) -> None:
        self.kiosk = self.subject = kiosk

    def fire(self, trigger: str, data: Any) -> bool:
        method = getattr(self.kiosk, trigger, None)
        if method is None:
            return False
        try:
            method(**data)
        except LookupError:
            return False
        return True

    def state(self) -> str:
        return self.kiosk.state

    def actions(self) -> list[str]:
        log, self.kiosk.log = self.kiosk.log, []
        return log

    def timers(self) -> dict[str, float]:
        return self.kiosk.clock.armed()

    def advance(self, seconds: float) -> None:
        self.kiosk.clock.advance(seconds)


def plain(bug: str | frozenset[str] | None) -> Callable[[], PlainAdapter]:
    return lambda: PlainAdapter(PlainKiosk(VirtualClock(), bug))


# -- python-statemachine ---------------------------------------------------------------------


def statemachine(bug: str | None) -> Callable[[], StateMachineAdapter]:
    from statemachine import State, StateMachine

    boundary = bug == "a guard with the wrong boundary"
    twice = bug == "an action called twice"
    wrong_dest = bug == "a wrong destination"
    missing = bug == "a missing edge"

    class Kiosk(StateMachine):  # type: ignore[misc]
        idle = State(initial=True)
        paying = State()

        coin = (
            # The coin counted again when the display lights up: twice per first coin.
            idle.to(paying, before="take_coin", after="take_coin" if twice else None)
            | paying.to(
                paying if wrong_dest else idle,
                cond="paid_enough",
                before="take_coin",
                after="dispense",
            )
            | paying.to.itself(internal=True, unless="paid_enough", before="take_coin")
        )
        if not missing:
            refund = paying.to(idle, before="give_back")

        def __init__(self, clock: VirtualClock) -> None:
            self.price, self.paid, self.dispensed, self.light = PRICE, 0, 0, False
            self.timeout = TIMEOUT
            self.clock, self.timer = clock, None
            super().__init__()

        def paid_enough(self, amount: int = 0) -> bool:
            if boundary:
                return bool(self.paid + amount > self.price)
            return bool(self.paid + amount >= self.price)

        def take_coin(self, amount: int = 0) -> None:
            self.paid += amount

        def dispense(self) -> None:
            self.paid -= self.price
            self.dispensed += 2 if bug == "a duplicated side effect" else 1

        def give_back(self) -> None:
            self.paid = 0

        def on_enter_paying(self) -> None:
            self.light = True
            seconds = self.timeout * (2 if bug == "a timer armed for the wrong time" else 1)
            self.timer = self.clock.call_later(seconds, self.send, "refund", name="idle_timeout")

        def on_exit_paying(self) -> None:
            self.light = False
            if bug != "a timer not cancelled on leaving its state":
                self.timer.cancel()

    def make() -> StateMachineAdapter:
        clock = VirtualClock()
        return StateMachineAdapter(
            Kiosk(clock),
            spec_states=SPEC.states,
            clock=clock,
            action_names={"on_enter_paying": "light_on", "on_exit_paying": "light_off"},
        )

    return make


# -- transitions -----------------------------------------------------------------------------


def transitions(bug: str | None) -> Callable[[], TransitionsAdapter]:
    from transitions import Machine

    class Kiosk(KioskData):
        state: str

        def __init__(self, clock: VirtualClock) -> None:
            super().__init__()
            self.clock, self.timer = clock, None

        def paid_enough(self, amount: int = 0) -> bool:
            if bug == "a guard with the wrong boundary":
                return bool(self.paid + amount > self.price)
            return bool(self.paid + amount >= self.price)

        def take_coin(self, amount: int = 0) -> None:
            self.paid += amount

        def light_on(self, **data: Any) -> None:
            self.light = True
            seconds = self.timeout * (2 if bug == "a timer armed for the wrong time" else 1)
            self.timer = self.clock.call_later(seconds, self.trigger, "refund", name="idle_timeout")

        def light_off(self, **data: Any) -> None:
            self.light = False
            if bug != "a timer not cancelled on leaving its state":
                self.timer.cancel()

        def dispense(self, **data: Any) -> None:
            self.paid -= self.price
            self.dispensed += 2 if bug == "a duplicated side effect" else 1

        def give_back(self, **data: Any) -> None:
            self.paid = 0

    rows: list[dict[str, Any]] = [
        {
            "trigger": "coin",
            "source": "IDLE",
            "dest": "PAYING",
            "before": ["take_coin"] * (2 if bug == "an action called twice" else 1),
        },
        {
            "trigger": "coin",
            "source": "PAYING",
            "dest": "PAYING" if bug == "a wrong destination" else "IDLE",
            "conditions": "paid_enough",
            "before": "take_coin",
            "after": "dispense",
        },
        {
            "trigger": "coin",
            "source": "PAYING",
            "dest": None,
            "unless": "paid_enough",
            "before": "take_coin",
        },
    ]
    if bug != "a missing edge":
        rows.append(
            {"trigger": "refund", "source": "PAYING", "dest": "IDLE", "before": "give_back"}
        )

    def make() -> TransitionsAdapter:
        kiosk = Kiosk(VirtualClock())
        machine = Machine(
            model=kiosk,
            states=["IDLE", {"name": "PAYING", "on_enter": "light_on", "on_exit": "light_off"}],
            transitions=rows,
            initial="IDLE",
            auto_transitions=False,
        )
        return TransitionsAdapter(machine, kiosk, clock=kiosk.clock)

    return make


IMPLEMENTATIONS: dict[str, Callable[[str | None], Callable[[], Any]]] = {
    "plain class": plain,
    "python-statemachine": statemachine,
    "transitions": transitions,
}


def check(style: str, bug: str | None, **options: Any) -> None:
    """``check_implementation`` of one implementation at default settings."""
    from fsm_live.testing import check_implementation

    check_implementation(
        SPEC,
        IMPLEMENTATIONS[style](bug),
        registry=REGISTRY,
        model=KioskData,
        observe=lambda k: (k.paid, k.dispensed, k.light),
        **options,
    )
