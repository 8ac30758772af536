"""The cost of Prometheus metrics: connections with a registered collector against none.

Usage::

    python bench/metrics.py [--quick] [--runs R] [--n N] [--hours H] [--json FILE]

Each run drives ``N`` connections over the in-memory network in virtual time (trio's
``MockClock``), for ``H`` virtual hours of heartbeats every second and one echoed
message every 10 s each, and measures the process CPU time that took.  Variants:

* ``none``: no collector (the engine checks ``on_heartbeat_ack is None`` per ack);
* ``registered``: a :class:`~fsm_live.metrics.ConnectionCollector` registered per
  connection, never scraped: the hot path's cost (one histogram bucket per ack);
* ``scraped``: the same, and every registry scraped (``generate_latest``) every 15
  virtual seconds, Prometheus' default interval: the hot path and the scrapes.

Each connection's collector has a registry of its own (a registry holds one
collector of a family; many connections in one registry is a Fleet's
``FleetCollector``); the first also holds the process collector.  The order of the
variants rotates from run to run so that drift hits each; the result is each
variant's median CPU seconds over ``R`` runs and its ratio to ``none``.  The
figures are for this machine and this workload: the ratios, not the seconds, carry
over.  ``--quick``: 3 runs, 10 connections, half a virtual hour.

A run on the development machine (2026-11-30, defaults, a shared and noisy machine:
single runs vary by about 15 %): none 10.53 s, registered 10.14 s (0.96 x), scraped
11.82 s (1.12 x).  A registered collector is within the noise of none; the scrapes
(20 registries every 15 s, the process collector reading /proc) are the cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(ROOT))

URL: Final = "ws://bench.test/"
SCRAPE_EVERY: Final = 15.0
MESSAGE_EVERY: Final = 10.0
VARIANTS: Final = ("none", "registered", "scraped")


def run_once(variant: str, n: int, hours: float) -> float:
    """CPU seconds of one variant's run."""
    import anyio
    from trio.testing import MockClock

    from fsm_live import Config, connect
    from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, echo

    config = Config(heartbeat_interval=1, heartbeat_timeout=3)
    duration = hours * 3600

    async def main() -> float:
        network = MemoryNetwork()
        connections = [
            connect(
                URL,
                transport=MemoryTransport(network),
                config=config,
                protocol="json",
                random=lambda: 1.0,
            )
            for _ in range(n)
        ]
        registries: list[Any] = []
        if variant != "none":
            from prometheus_client import CollectorRegistry

            from fsm_live.metrics import ConnectionCollector, new_registry

            for conn in connections:
                registries.append(CollectorRegistry() if registries else new_registry())
                registries[-1].register(ConnectionCollector(conn))
        async with network.serve(URL, echo), contextlib.AsyncExitStack() as stack:
            for conn in connections:
                await stack.enter_async_context(conn)
            for conn in connections:
                await conn.wait_connected()
            started = time.process_time()
            async with anyio.create_task_group() as tg:
                for index, conn in enumerate(connections):
                    tg.start_soon(_talk, conn, index, duration)
                if variant == "scraped":
                    tg.start_soon(_scrape, registries, duration)
            return time.process_time() - started

    result: float = anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    return result


async def _talk(conn: Any, index: int, duration: float) -> None:
    import anyio

    sent = 0
    end = anyio.current_time() + duration
    while anyio.current_time() + MESSAGE_EVERY <= end:
        await anyio.sleep(MESSAGE_EVERY)
        sent += 1
        await conn.send({"id": f"{index}-{sent}", "text": "tick"})
        async for _ in conn:
            break


async def _scrape(registries: list[Any], duration: float) -> None:
    import anyio
    from prometheus_client import generate_latest

    end = anyio.current_time() + duration
    while anyio.current_time() + SCRAPE_EVERY <= end:
        await anyio.sleep(SCRAPE_EVERY)
        for registry in registries:
            generate_latest(registry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.n, args.hours = 3, 10, 0.5
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for run in range(args.runs):
        order = VARIANTS[run % 3 :] + VARIANTS[: run % 3]
        for variant in order:
            times[variant].append(run_once(variant, args.n, args.hours))
        print(
            f"run {run + 1}/{args.runs}: "
            + ", ".join(f"{variant} {times[variant][-1]:.3f} s" for variant in VARIANTS),
            flush=True,
        )
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    ratios = {variant: medians[variant] / medians["none"] for variant in VARIANTS}
    heartbeats = args.n * args.hours * 3600
    print(
        f"{args.n} connections, {args.hours:g} virtual h, heartbeats every 1 s "
        f"({heartbeats:,.0f} acks), a message every {MESSAGE_EVERY:g} s each; "
        f"median of {args.runs} runs"
    )
    for variant in VARIANTS:
        print(
            f"  {variant:<10} {medians[variant]:.3f} s CPU "
            f"({medians[variant] / heartbeats * 1e6:.1f} us per heartbeat), "
            f"{ratios[variant]:.3f} x none"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "n": args.n,
                    "hours": args.hours,
                    "runs": args.runs,
                    "times": times,
                    "medians": medians,
                    "ratios": ratios,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
