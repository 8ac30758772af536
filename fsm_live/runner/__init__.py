"""Run your own spec on your own object, under asyncio or trio.

A spec (``Spec``) and a :class:`~fsm_live.spec.Registry` binding its guards,
actions, timers and tasks make a :class:`Runner`; ``async with
runner.run(obj) as machine`` runs the spec on ``obj``: triggers fired with
event data (``machine.fire("receive_payment", amount=5)``), the spec's timers
armed and cancelled on the event loop's clock, its tasks started and cancelled
(and joined) with their states, its actions run::

    from fsm_live.runner import Runner

    runner = Runner("order_control.yaml", registry)
    async with runner.run(Order(total=10)) as machine:
        machine.fire("receive_payment", amount=10)
        await machine.wait_for("PROCESSING")

Under the driver is :class:`UserRun`, the core's sans-I/O
:class:`~fsm_live.core.run.SpecRun` (state, timers as deadlines, task effects
with generations; inputs carry ``now``) entered from its initial state: test a
spec's timing with it and explicit times, no event loop.  docs/specs.md walks
through a complete example.
"""

from __future__ import annotations

from fsm_live.runner.driver import Runner, RunningMachine, TaskContext
from fsm_live.runner.run import RunMachine, UserRun, run_machine

__all__ = ("RunMachine", "Runner", "RunningMachine", "TaskContext", "UserRun", "run_machine")
