"""Python bindings of the example specs' guards, actions and timers.

Each :class:`~fsm_live.spec.Registry` here binds the names one example spec
declares; check them from this folder with, e.g.::

    fsm-live check order_control.yaml --bind registries:order_control

The subject each callable receives is the object the machine runs for (a
``transitions`` model, say): an :class:`Order`, a :class:`Channel`, a :class:`Tcb`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fsm_live.lwp.protocol import new_mid
from fsm_live.spec import Registry

__all__ = (
    "SUBSCRIBE_PATH",
    "TOPICS",
    "Channel",
    "Light",
    "Order",
    "Tcb",
    "grpc_connectivity",
    "light_delay",
    "order_control",
    "subscribing",
    "tcp",
)


# -- order control (python-statemachine's example) -------------------------------------------


@dataclass
class Order:
    """An order: the sum of its items, and the payments received (any currency unit)."""

    total: float = 0.0
    payments: list[float] = field(default_factory=list)


order_control = Registry("order_control")


@order_control.guard
def payments_enough(order: Order, amount: float) -> bool:
    """True when the payments so far plus ``amount`` cover the order total."""
    return sum(order.payments) + amount >= order.total


@order_control.action
def record_item(order: Order, amount: float) -> None:
    """Add an item's ``amount`` to the order total."""
    order.total += amount


@order_control.action
def record_payment(order: Order, amount: float) -> None:
    """Record a payment of ``amount``."""
    order.payments.append(amount)


# -- gRPC connectivity states -----------------------------------------------------------------


@dataclass
class Channel:
    """A gRPC channel's settings, in seconds (gRPC's defaults)."""

    idle_timeout: float = 30 * 60.0
    backoff: float = 1.0


grpc_connectivity = Registry("grpc_connectivity")


@grpc_connectivity.timer("idle_timeout")
def _idle_timeout(channel: Channel) -> float:
    """Seconds without RPCs before a READY channel goes IDLE."""
    return channel.idle_timeout


@grpc_connectivity.timer("reconnect_backoff")
def _reconnect_backoff(channel: Channel) -> float:
    """Seconds before the next connection attempt."""
    return channel.backoff


# -- TCP (RFC 793) ----------------------------------------------------------------------------


@dataclass
class Tcb:
    """A TCP control block's timing: maximum segment lifetime and user timeout (seconds)."""

    msl: float = 120.0
    user_timeout: float = 300.0


tcp = Registry("tcp")


@tcp.timer("time_wait")
def _time_wait(tcb: Tcb) -> float:
    """TIME-WAIT lasts twice the maximum segment lifetime (RFC 793, section 3.5)."""
    return 2 * tcb.msl


@tcp.timer("user_timeout")
def _user_timeout(tcb: Tcb) -> float:
    """Unacknowledged data for this long drops the connection (RFC 793, section 3.9)."""
    return tcb.user_timeout


# -- subscribing.yaml: the connection lifecycle with a SUBSCRIBING state ----------------------

#: What the subscribe task subscribes to, and the lwp request path it uses.
TOPICS = ("prices", "news")
SUBSCRIBE_PATH = "/r/Subscribe/topics"

subscribing = Registry("subscribing")


@subscribing.task
async def subscribe(context: Any) -> None:
    """Send the subscription on the new link, then fire ``subscribed``.

    ``context`` is the runtime's ``TaskContext``: ``send(frame)`` writes on the
    link now, ``fire(trigger)`` fires one of the spec's triggers.  It runs on
    entering SUBSCRIBING, so after every reconnect.
    """
    frame = {"lwp": SUBSCRIBE_PATH, "headers": {"mid": new_mid()}, "body": {"topics": TOPICS}}
    context.send(json.dumps(frame, separators=(",", ":")))
    context.fire("subscribed", reason=f"subscribed to {', '.join(TOPICS)}")


@subscribing.timer("subscribe_timeout")
def _subscribe_timeout(lifecycle: Any) -> float:
    """Seconds the subscription may take before the link counts as lost."""
    return 10.0


# -- light_delay.yaml: XState's lightDelayMachine -----------------------------------------------


@dataclass
class Light:
    """A traffic light's delays in seconds (XState's docs: 1000, 500 and 2000 ms) and
    the cycles it went through."""

    green: float = 1.0
    yellow: float = 0.5
    red: float = 2.0
    cycles: int = 0


light_delay = Registry("light_delay")


@light_delay.timer("green_delay")
def _green_delay(light: Light) -> float:
    return light.green


@light_delay.timer("yellow_delay")
def _yellow_delay(light: Light) -> float:
    return light.yellow


@light_delay.timer("red_delay")
def _red_delay(light: Light) -> float:
    return light.red


@light_delay.action
def count_cycle(light: Light) -> None:
    """One more cycle: the light is green again."""
    light.cycles += 1
