"""Half-open detection: time from black-holing the link to noticing it, fsm_live vs websockets.

Usage::

    python bench/half_open.py [--quick] [--json FILE] [--scale X] [--n N]

The ``proxy`` server of ``bench/_common.py`` runs a ``hold`` server behind a
:class:`fsm_live.fault_proxy.FaultProxy` in its own process.  N clients of each
variant connect through the proxy, their starts staggered uniformly over one heartbeat
period of their own, so the black hole falls at a uniformly random phase of each
client's heartbeat schedule.  Then the proxy black-holes both directions of every link
(``Faults(black_hole=True)``: bytes are swallowed, no FIN, no RST) and each client's
detection time is taken from that moment:

* ``fsm_live`` at its defaults (app heartbeat every 15 s, ``heartbeat_timeout`` 30 s
  since the last inbound frame): the transition to RECONNECTING;
* websockets at its defaults (``ping_interval=20``, ``ping_timeout=20``,
  ``close_timeout=10``): ``await ws.wait_closed()`` returning, which is when an
  ``async for ws in connect()`` loop would start reconnecting.  websockets fails the
  connection at the ping timeout, then waits up to ``close_timeout`` for the closing
  handshake, which a black hole never completes.

``--scale`` multiplies every one of these intervals on both sides (``--quick``: 0.1,
i.e. 1.5 s / 3 s vs 2 s / 2 s / 1 s); the table also shows the figures divided by the
scale.  Expected: fsm_live 15-30 s; websockets 30-50 s (20-40 s + close_timeout).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import anyio
import websockets.asyncio.client

import fsm_live
from fsm_live import Config

FSM_INTERVAL, FSM_TIMEOUT = 15.0, 30.0
WS_PING_INTERVAL, WS_PING_TIMEOUT, WS_CLOSE_TIMEOUT = 20.0, 20.0, 10.0


async def measure(
    url: str, server: common.ServerProcess, n: int, scale: float, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    config = Config(heartbeat_interval=FSM_INTERVAL * scale, heartbeat_timeout=FSM_TIMEOUT * scale)
    fsm_lost: list[float] = []
    ws_closed: list[float] = []
    ready = [0]
    done = anyio.Event()

    async def fsm_client(delay: float) -> None:
        await anyio.sleep(delay)
        async with fsm_live.connect(url, protocol="ping", config=config) as conn:
            conn.on_transition(
                lambda r: (
                    fsm_lost.append(r.at)
                    if r.dest == "RECONNECTING" and len(fsm_lost) < 10 * n
                    else None
                )
            )
            await conn.wait_connected()
            ready[0] += 1
            await done.wait()

    async def ws_client(delay: float) -> None:
        await anyio.sleep(delay)
        async with websockets.asyncio.client.connect(
            url,
            ping_interval=WS_PING_INTERVAL * scale,
            ping_timeout=WS_PING_TIMEOUT * scale,
            close_timeout=WS_CLOSE_TIMEOUT * scale,
        ) as ws:
            ready[0] += 1
            await ws.wait_closed()
            ws_closed.append(time.monotonic())
            await done.wait()

    bound = (FSM_TIMEOUT + WS_PING_INTERVAL + WS_PING_TIMEOUT + WS_CLOSE_TIMEOUT) * scale * 1.5
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(fsm_client, rng.uniform(0, FSM_INTERVAL * scale))
            tg.start_soon(ws_client, rng.uniform(0, WS_PING_INTERVAL * scale))
        with anyio.fail_after(60 + WS_PING_INTERVAL * scale):
            while ready[0] < 2 * n:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await anyio.sleep(WS_PING_INTERVAL * scale * 1.1)  # every schedule running
        black_hole = float(await anyio.to_thread.run_sync(server.command, "black_hole"))
        with anyio.move_on_after(bound):
            while len(ws_closed) < n or len({t for t in fsm_lost if t > black_hole}) < n:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        done.set()
        tg.cancel_scope.cancel()
    fsm = sorted(t - black_hole for t in fsm_lost if t > black_hole)[:n]
    ws = sorted(t - black_hole for t in ws_closed)
    return {
        "scale": scale,
        "n": n,
        "fsm_live_s": fsm,
        "websockets_s": ws,
        "early_fsm": sum(t <= black_hole for t in fsm_lost),
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="every interval x 0.1")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    parser.add_argument(
        "--scale", type=common.positive_float, default=None, help="time scale (default 1)"
    )
    parser.add_argument("--n", type=common.positive_int, default=20, help="clients per variant")
    args = parser.parse_args(argv)
    scale = args.scale or (0.1 if args.quick else 1.0)
    common.quiet_logs()
    facts = common.machine_facts()
    common.print_header("half-open detection: fsm_live vs websockets keepalive", args.quick, facts)
    print(
        f"  {args.n} clients per variant, time scale x{scale:g} (both sides), "
        "black hole on both directions of every link\n"
    )
    started = time.perf_counter()
    with common.ServerProcess("proxy") as server:
        result = asyncio.run(measure(server.url, server, args.n, scale, seed=5))
    elapsed = time.perf_counter() - started
    rows = []
    for name, key, settings in (
        (
            "fsm_live",
            "fsm_live_s",
            f"heartbeat {FSM_INTERVAL * scale:g} s, timeout {FSM_TIMEOUT * scale:g} s",
        ),
        (
            "websockets",
            "websockets_s",
            f"ping {WS_PING_INTERVAL * scale:g} s / "
            f"{WS_PING_TIMEOUT * scale:g} s, close "
            f"{WS_CLOSE_TIMEOUT * scale:g} s",
        ),
    ):
        values = result[key]
        row = [name, settings, f"{len(values)}/{args.n}"]
        for q in (0, 50, 100):
            value = common.percentile(values, q)
            row.append(f"{value:.2f} s" + (f" ({value / scale:.1f})" if scale != 1 else ""))
        rows.append(tuple(row))
    print(common.render(("variant", "settings", "detected", "min", "median", "max"), rows))
    fsm_med = common.median(result["fsm_live_s"])
    ws_med = common.median(result["websockets_s"])
    print(
        f"\n  fsm_live / websockets median: {fsm_med / ws_med:.2f}"
        + ("; in parentheses: seconds / scale (the unscaled equivalent)" if scale != 1 else "")
    )
    worst = max(result["fsm_live_s"], default=1e9) / scale
    verdict = common.met(worst, FSM_TIMEOUT * 1.05, at_most=True)
    print(
        f"  target: found within {FSM_TIMEOUT:g} s: {verdict} "
        "(5% allowance for timer and loop latency)"
    )
    print(f"\n{elapsed:.1f} s")
    common.write_json(
        args.json, "half_open", args.quick, facts, {"elapsed_s": round(elapsed, 1), **result}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
