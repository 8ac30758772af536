"""Accept-then-close server: connection attempts in a fixed time, fsm_live vs websockets' loop.

Usage::

    python bench/accept_close.py [--quick] [--json FILE] [--seconds S] [--reps N]

The ``accept_close`` server of ``bench/_common.py`` (own process) completes every
opening handshake and closes at once with 1000.  One client per variant runs for
``--seconds`` (10; ``--quick``: 3), each against a fresh server:

* ``fsm_live``: ``fsm_live.connect(url, protocol="ping")`` at its defaults.  A close
  1000 before the connection was stable counts as a failure, so the backoff grows;
  after ``max_failures`` (5) the connection goes FAILED and stays there (no
  credentials provider, so no escalation);
* ``websockets loop``: ``async for ws in connect(url): await ws.wait_closed()`` at
  websockets' defaults; every successful open resets its backoff.

Attempts are counted by the server (opening-handshake requests) and by the client.
Target: growing gaps, never a spin; checked here as fsm_live attempts <= 1% of the
loop's.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import anyio

import fsm_live

VARIANTS: Final = ("fsm_live", "websockets loop")


async def run(variant: str, seconds: float) -> dict[str, Any]:
    attempts: list[float] = []
    final = "?"
    with common.ServerProcess("accept_close") as server:
        start = time.monotonic()
        with anyio.move_on_after(seconds):
            if variant == "fsm_live":
                async with fsm_live.connect(server.url, protocol="ping") as conn:
                    conn.on_transition(
                        lambda r: attempts.append(r.at) if r.dest == "CONNECTING" else None
                    )
                    try:
                        await anyio.sleep_forever()
                    finally:
                        final = conn.state
            else:
                async for ws in common.counting_connect(attempts)(server.url):
                    await ws.wait_closed()
        end = time.monotonic()
        server_times = [t for t in server.times() if t <= end]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    return {
        "variant": variant,
        "seconds": end - start,
        "attempts_client": len(attempts),
        "attempts_server": len(server_times),
        "per_second": len(server_times) / (end - start),
        "final_state": final if variant == "fsm_live" else "(looping)",
        "gaps_s": [round(g, 4) for g in gaps[:20]],
        "max_gap_s": max(gaps, default=float("nan")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s per variant, 1 repetition")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    parser.add_argument("--seconds", type=common.positive_float, default=None)
    parser.add_argument("--reps", type=common.positive_int, default=None)
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    reps = args.reps or (1 if args.quick else 3)
    common.quiet_logs()
    facts = common.machine_facts()
    common.print_header(
        "fsm_live vs websockets' loop against an accept-then-close server", args.quick, facts
    )
    print(f"  {seconds:g} s per run, {reps} repetition(s), one client per run\n")
    started = time.perf_counter()
    runs = []
    for rep in range(reps):
        for variant in VARIANTS:
            result = asyncio.run(run(variant, seconds))
            result["rep"] = rep
            runs.append(result)
            print(
                f"  {variant}: {result['attempts_server']} attempts "
                f"({result['per_second']:.1f}/s), gaps {result['gaps_s'][:8]}",
                flush=True,
            )
    elapsed = time.perf_counter() - started

    def med(variant: str, key: str) -> float:
        return common.median([r[key] for r in runs if r["variant"] == variant])

    ws_attempts = med("websockets loop", "attempts_server")
    rows = []
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        attempts = med(variant, "attempts_server")
        rows.append(
            (
                variant,
                f"{attempts:,.0f}",
                f"{med(variant, 'per_second'):,.1f}",
                f"{attempts / ws_attempts:.4f}x" if ws_attempts else "-",
                f"{med(variant, 'max_gap_s'):.2f} s",
                ", ".join(sorted({r["final_state"] for r in mine})),
            )
        )
    print()
    print(
        common.render(
            (
                f"variant ({seconds:g} s)",
                "attempts",
                "per second",
                "vs websockets",
                "longest gap",
                "state at end",
            ),
            rows,
        )
    )
    fsm = [r for r in runs if r["variant"] == "fsm_live"]
    ratio = med("fsm_live", "attempts_server") / ws_attempts if ws_attempts else 0.0
    print(
        f"\n  target: no spin (here: fsm_live attempts <= 1% of websockets' loop's): "
        f"{common.met(ratio, 0.01, at_most=True)}; fsm_live gaps (s) {fsm[0]['gaps_s']}"
    )
    print(f"\n{elapsed:.1f} s")
    common.write_json(
        args.json,
        "accept_close",
        args.quick,
        facts,
        {"elapsed_s": round(elapsed, 1), "seconds": seconds, "runs": runs},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
