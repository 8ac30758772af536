"""Restart storm: N clients connected, the server killed and restarted ~1 s later.

Usage::

    python bench/restart_storm.py [--quick] [--json FILE] [--clients N] [--reps N]
                                  [--variants A,B,...]

Per variant and repetition: a ``hold`` server of ``bench/_common.py`` in its own
process; N clients (one process, this one: an asyncio loop, or trio's for the
``-trio`` variants) connect and wait; the server is
SIGKILLed at ``t_kill``; a new server process binds the same port (SO_REUSEADDR) at
``t_kill + 1.0 s`` exactly (it is started at once and waits for that moment); the run
ends when every client is back (or FAILED), at most 60 s after the kill.

Variants:

* ``fsm_live``: ``fsm_live.connect(url, protocol="ping")``, default config (exponential
  backoff with full jitter, 1 s initial, 60 s cap; ``max_failures`` 5);
* ``fsm_live FixedDelay(3)``: the same with ``Config(backoff=FixedDelay(3.0))``, the
  replaced system's 3 s step for an abrupt close, without growth or jitter;
* ``fsm_live paced``: the default config, all clients sharing one
  ``ReconnectPacer(200)`` (at most 200 attempts per second; what a ``Fleet`` does);
* ``websockets loop``: ``async for ws in connect(url): await ws.wait_closed()``, at
  websockets' defaults (its backoff: U(0, 5) s first, then 3.1 s x 1.618^k, cap 90 s);
* ``fsm_live-trio``, ``fsm_live paced-trio``: ``fsm_live`` and ``fsm_live paced`` under
  ``trio.run``.

Reconnect attempts are counted on the client side (fsm_live: every transition into
CONNECTING; websockets: every dial of its loop) after the kill, including attempts the
kernel refused while the server was down, and on the server side (opening-handshake
requests the restarted server logged).  The share of attempts in the busiest 100 ms
window is reported for both.  "Back" is the first CONNECTED (or new ``ws``) after the
kill, measured from the kill.  Log output is silenced.  Variants run in ABBA order over
repetitions; the table shows medians (and ranges) over repetitions.

Targets, for every variant: the busiest 100 ms holds <= 5% of the
attempts at the client and at the server, and the median client is back within 2 s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import anyio

import fsm_live
from fsm_live import Config, FixedDelay
from fsm_live.core import ReconnectPacer

TARGET: Final = 0.05
BACK_P50_TARGET: Final = 2.0
RESTART_AFTER: Final = 1.0
BACK_TIMEOUT: Final = 60.0
VARIANTS: Final = (
    "fsm_live",
    "fsm_live FixedDelay(3)",
    "fsm_live paced",
    "websockets loop",
    "fsm_live-trio",
    "fsm_live paced-trio",
)
PACER_RATE: Final = 200.0


ClientFn = Callable[["str", "Client", anyio.Event], Coroutine[Any, Any, None]]


class Client:
    """What one client saw: attempt times, connected times, its final state."""

    __slots__ = ("attempts", "connected", "state")

    def __init__(self) -> None:
        self.attempts: list[float] = []
        self.connected: list[float] = []
        self.state = "?"


def fsm_client(config: Config, *, pacer: ReconnectPacer | None = None) -> ClientFn:
    async def run(url: str, client: Client, stop: anyio.Event) -> None:
        def seen(record: Any) -> None:
            # time.monotonic(), not record.at: trio's clock has an offset of its own.
            client.state = record.dest
            if record.dest == "CONNECTING":
                client.attempts.append(time.monotonic())
            elif record.dest == "CONNECTED":
                client.connected.append(time.monotonic())

        async with fsm_live.connect(url, protocol="ping", config=config, pacer=pacer) as conn:
            conn.on_transition(seen)
            await stop.wait()

    return run


async def ws_client(url: str, client: Client, stop: anyio.Event) -> None:
    async for ws in common.counting_connect(client.attempts)(url):
        client.connected.append(time.monotonic())
        client.state = "CONNECTED"
        await ws.wait_closed()
        client.state = "RECONNECTING"
        if stop.is_set():
            return


#: Per variant, what makes the clients of one storm (the paced ones share one pacer).
CLIENTS: Final[dict[str, Callable[[], ClientFn]]] = {
    "fsm_live": lambda: fsm_client(Config()),
    "fsm_live FixedDelay(3)": lambda: fsm_client(Config(backoff=FixedDelay(3.0))),
    "fsm_live paced": lambda: fsm_client(Config(), pacer=ReconnectPacer(PACER_RATE)),
    "websockets loop": lambda: ws_client,
    "fsm_live-trio": lambda: fsm_client(Config()),
    "fsm_live paced-trio": lambda: fsm_client(Config(), pacer=ReconnectPacer(PACER_RATE)),
}


async def storm(variant: str, n: int) -> dict[str, Any]:
    server = await anyio.to_thread.run_sync(common.ServerProcess, "hold")
    restarted: common.ServerProcess | None = None
    clients = [Client() for _ in range(n)]
    stop = anyio.Event()
    client_fn = CLIENTS[variant]()
    try:
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(client_fn, server.url, client, stop)
            with anyio.fail_after(120):
                while sum(bool(c.connected) for c in clients) < n:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            open_s = max(c.connected[0] for c in clients) - min(c.attempts[0] for c in clients)
            await anyio.sleep(1.0)
            t_kill = time.monotonic()
            server.kill()
            restarted = await anyio.to_thread.run_sync(
                lambda: common.ServerProcess("hold", port=server.port, at=t_kill + RESTART_AFTER)
            )
            with anyio.move_on_after(BACK_TIMEOUT - (time.monotonic() - t_kill)):
                while not all(  # noqa: ASYNC110
                    any(t > t_kill for t in c.connected) or c.state == "FAILED" for c in clients
                ):
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # late stragglers' requests reach the server log
            server_times = await anyio.to_thread.run_sync(restarted.times)
            stop.set()
            with anyio.move_on_after(30):
                while (  # noqa: ASYNC110
                    any(c.state not in ("CLOSED", "RECONNECTING", "FAILED") for c in clients)
                    and variant != "websockets loop"
                ):
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    finally:
        server.kill()
        if restarted is not None:
            restarted.kill()
    assert restarted is not None
    attempts = sorted(t for c in clients for t in c.attempts if t > t_kill)
    back = sorted(
        min(t for t in c.connected if t > t_kill) - t_kill
        for c in clients
        if any(t > t_kill for t in c.connected)
    )
    client_peak, client_at = common.busiest_window(attempts)
    server_peak, server_at = common.busiest_window(server_times)
    return {
        "variant": variant,
        "clients": n,
        "open_s": open_s,
        "restart_at_s": restarted.listening_at - t_kill,
        "attempts_client": len(attempts),
        "peak_client": client_peak,
        "share_client": client_peak / len(attempts) if attempts else float("nan"),
        "peak_client_at_s": client_at - t_kill,
        "attempts_server": len(server_times),
        "peak_server": server_peak,
        "share_server": server_peak / len(server_times) if server_times else float("nan"),
        "peak_server_at_s": server_at - t_kill,
        "back": len(back),
        "failed": sum(c.state == "FAILED" for c in clients),
        "back_p50_s": common.percentile(back, 50),
        "back_p99_s": common.percentile(back, 99),
        "back_max_s": back[-1] if back else float("nan"),
        "attempt_times_s": [round(t - t_kill, 4) for t in attempts],
        "server_times_s": [round(t - t_kill, 4) for t in server_times],
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 clients, 1 repetition")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    parser.add_argument("--clients", type=common.positive_int, default=None)
    parser.add_argument("--reps", type=common.positive_int, default=None)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)}",
    )
    args = parser.parse_args(argv)
    variants = common.variant_list(parser, args.variants, VARIANTS)
    n = args.clients or (200 if args.quick else 1_000)
    reps = args.reps or (1 if args.quick else 3)
    common.raise_nofile()
    common.quiet_logs()
    facts = common.machine_facts()
    common.print_header("fsm_live restart storm", args.quick, facts)
    print(
        f"  {n:,} clients, server SIGKILLed and restarted on the same port "
        f"{RESTART_AFTER:g} s later, {reps} repetition(s)\n"
    )
    started = time.perf_counter()
    runs = []
    for rep in range(reps):
        for variant in variants if rep % 2 == 0 else tuple(reversed(variants)):  # ABBA
            result = common.run_on(
                "trio" if variant.endswith("-trio") else "asyncio", storm, variant, n
            )
            result["rep"] = rep
            result["loadavg_after"] = common.loadavg()
            runs.append(result)
            print(
                f"  {variant}: {result['attempts_client']} attempts, busiest 100 ms "
                f"{100 * result['share_client']:.1f}% (client) / "
                f"{100 * result['share_server']:.1f}% (server); back p50 "
                f"{result['back_p50_s']:.2f} s p99 {result['back_p99_s']:.2f} s; "
                f"{result['failed']} FAILED",
                flush=True,
            )
    elapsed = time.perf_counter() - started

    def vals(variant: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["variant"] == variant]

    def med(variant: str, key: str) -> float:
        return common.median(vals(variant, key))

    rows = []
    verdicts = {}
    for variant in variants:
        client_share, server_share = med(variant, "share_client"), med(variant, "share_server")
        back_p50 = med(variant, "back_p50_s")
        verdicts[variant] = {
            "client": client_share <= TARGET,
            "server": server_share <= TARGET,
            "back_p50": back_p50 <= BACK_P50_TARGET,
        }
        rows.append(
            (
                variant,
                f"{med(variant, 'attempts_client'):,.0f}",
                common.spread([100 * v for v in vals(variant, "share_client")], "{:.1f}") + "%",
                f"{med(variant, 'attempts_server'):,.0f}",
                common.spread([100 * v for v in vals(variant, "share_server")], "{:.1f}") + "%",
                common.spread(vals(variant, "back_p50_s")) + " s",
                f"{med(variant, 'back_p99_s'):.2f} s",
                f"{sum(r['failed'] for r in runs if r['variant'] == variant)}",
                " / ".join("met" if ok else "NOT MET" for ok in verdicts[variant].values()),
            )
        )
    print()
    print(
        common.render(
            (
                "variant",
                "attempts",
                "busiest 100ms",
                "at server",
                "busiest 100ms",
                "back p50",
                "back p99",
                "FAILED",
                "met (client / server / p50)",
            ),
            rows,
        )
    )
    print(
        f"  targets: busiest 100 ms <= {100 * TARGET:.0f}% of attempts at the client and at "
        f"the server, back p50 <= {BACK_P50_TARGET:g} s\n"
        "  attempts / busiest: client side, every attempt after the kill (refused ones too);"
        "\n  at server / busiest: handshakes the restarted server saw; medians (ranges) over "
        "repetitions; FAILED: summed"
    )
    print(f"\n{elapsed:.1f} s")
    common.write_json(
        args.json,
        "restart_storm",
        args.quick,
        facts,
        {
            "elapsed_s": round(elapsed, 1),
            "clients": n,
            "reps": reps,
            "restart_after_s": RESTART_AFTER,
            "target_share": TARGET,
            "target_back_p50_s": BACK_P50_TARGET,
            "verdicts": verdicts,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
