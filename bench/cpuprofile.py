"""Where the client's CPU goes, under cProfile: the profiles behind the bench figures.

Usage::

    python bench/cpuprofile.py SCENARIO [--variant fsm_live|raw|bare] [--n N] [--top K]
                               [--interval S] [--window S] [--sort tottime|cumtime]
                               [--quick]

Not a benchmark with a target (cProfile slows Python code down, C code much less, so
shares are skewed towards Python): it tells what a figure of ``connections.py``,
``throughput.py`` or ``roundtrip.py`` is made of.  Scenarios, each on asyncio in this
process against a server of ``bench/_common.py`` in another process:

* ``idle``: N connections (``--n``, 1,000) opened 100 at a time, each held by a task;
  profiled over ``--window`` seconds of idling with heartbeats every ``--interval``
  (1.5 s): ``fsm_live`` against ``bare`` (websockets plus a ping task) or ``raw``;
* ``open``: opening N connections 100 at a time (``fsm_live`` or ``raw``);
* ``recv``: receiving ``--n`` 100-byte messages (json adapter; ``--protocol ping`` for
  raw frames);
* ``roundtrip``: ``--n`` request/response round trips at window 1.

Prints the total profiled time, the top ``--top`` functions by ``--sort``, and the share
of the profile spent in each package (by the file of the function, own time).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import websockets.asyncio.client

import fsm_live

PACKAGES: Final = (
    "fsm_live",
    "websockets",
    "anyio",
    "asyncio",
    "transitions",
    "sniffio",
    "json",
    "bench",
)


def package(filename: str) -> str:
    for name in PACKAGES:
        if f"/{name}/" in filename or filename.endswith(f"/{name}.py"):
            return name
    if filename.startswith("~") or filename == "":
        return "builtins (C)"
    return "other"


async def idle(
    url: str, variant: str, n: int, interval: float, window: float, profile: cProfile.Profile
) -> None:
    config = fsm_live.Config(heartbeat_interval=interval, heartbeat_timeout=2 * interval)
    gate = asyncio.Semaphore(100)
    stop = asyncio.Event()
    opened = 0
    all_open = asyncio.Event()

    def one_opened() -> None:
        nonlocal opened
        opened += 1
        if opened == n:
            all_open.set()

    async def hold() -> None:
        if variant == "fsm_live":
            async with gate:
                conn = fsm_live.connect(url, protocol="ping", config=config)
                await conn.__aenter__()
                await conn.wait_connected()
            one_opened()
            await stop.wait()
            return
        async with gate:
            ws = await websockets.asyncio.client.connect(
                url, ping_interval=None, compression=None, open_timeout=60
            )
        one_opened()
        if variant == "bare":
            next_at = time.monotonic() + interval
            while True:
                await asyncio.sleep(next_at - time.monotonic())
                next_at += interval
                await (await ws.ping())
        await stop.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(n)]
    await asyncio.wait_for(all_open.wait(), 300)
    await asyncio.sleep(2)
    profile.enable()
    await asyncio.sleep(window)
    profile.disable()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def open_many(url: str, variant: str, n: int, profile: cProfile.Profile) -> None:
    gate = asyncio.Semaphore(100)
    held: list[Any] = []

    async def one() -> None:
        async with gate:
            if variant == "fsm_live":
                conn = fsm_live.connect(url, protocol="ping")
                await conn.__aenter__()
                await conn.wait_connected()
            else:
                conn = await websockets.asyncio.client.connect(
                    url, ping_interval=None, compression=None, open_timeout=60
                )
            held.append(conn)

    profile.enable()
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - start
    profile.disable()
    print(f"opened {len(held)} in {elapsed:.2f} s (under cProfile)")


async def recv(url: str, variant: str, n: int, protocol: str, profile: cProfile.Profile) -> None:
    flood = {"cmd": "flood", "n": n, "size": 100}
    if variant == "fsm_live":
        async with fsm_live.connect(url, protocol=protocol) as conn:
            await conn.wait_connected()
            profile.enable()
            await conn.send(flood if protocol == "json" else json.dumps(flood))
            count = 0
            async for _ in conn:
                count += 1
                if count == n:
                    break
            profile.disable()
        return
    async with websockets.asyncio.client.connect(url, compression=None) as ws:
        profile.enable()
        await ws.send(json.dumps(flood))
        for _ in range(n):
            message = await ws.recv()
            if protocol == "json":
                json.loads(message)
        profile.disable()


async def roundtrip(
    url: str, variant: str, n: int, protocol: str, profile: cProfile.Profile
) -> None:
    payloads = [p.decode() for p in common.flood_payloads(n, 100)]
    messages: list[Any] = [json.loads(p) for p in payloads] if protocol == "json" else payloads
    echo = json.dumps({"cmd": "echo"})
    if variant == "fsm_live":
        async with fsm_live.connect(url, protocol=protocol) as conn:
            await conn.wait_connected()
            await conn.send(json.loads(echo) if protocol == "json" else echo)
            replies = aiter(conn)
            profile.enable()
            for message in messages:
                await conn.send(message)
                await anext(replies)
            profile.disable()
        return
    async with websockets.asyncio.client.connect(url, compression=None) as ws:
        await ws.send(echo)
        profile.enable()
        for message in messages:
            if protocol == "json":
                await ws.send(json.dumps(message, separators=(",", ":")))
                json.loads(await ws.recv())
            else:
                await ws.send(message)
                await ws.recv()
        profile.disable()


def report(profile: cProfile.Profile, top: int, sort: str) -> None:
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    by_package: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[package(filename)] += tt
    print(f"profiled: {total:.3f} s of own time")
    print(
        "  "
        + ", ".join(
            f"{name} {100 * tt / total:.1f}%"
            for name, tt in sorted(by_package.items(), key=lambda item: -item[1])
        )
        + "\n"
    )
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenario", choices=("idle", "open", "recv", "roundtrip"))
    parser.add_argument("--variant", choices=("fsm_live", "raw", "bare"), default="fsm_live")
    parser.add_argument("--n", type=common.positive_int, default=None)
    parser.add_argument("--protocol", choices=("json", "ping"), default="json")
    parser.add_argument("--interval", type=common.positive_float, default=1.5)
    parser.add_argument("--window", type=common.positive_float, default=10.0)
    parser.add_argument("--top", type=common.positive_int, default=30)
    parser.add_argument("--sort", choices=("tottime", "cumtime"), default="tottime")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tenth of the default size and a 2 s window (a smoke test)",
    )
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    window = 2.0 if args.quick else args.window
    common.raise_nofile()
    common.quiet_logs()
    profile = cProfile.Profile()
    server_mode = "hold" if args.scenario in ("idle", "open") else "raw"
    with common.ServerProcess(server_mode) as server:
        if args.scenario == "idle":
            asyncio.run(
                idle(
                    server.url,
                    args.variant,
                    args.n or 1000 // scale,
                    args.interval,
                    window,
                    profile,
                )
            )
        elif args.scenario == "open":
            asyncio.run(open_many(server.url, args.variant, args.n or 1000 // scale, profile))
        elif args.scenario == "recv":
            asyncio.run(
                recv(server.url, args.variant, args.n or 100_000 // scale, args.protocol, profile)
            )
        else:
            asyncio.run(
                roundtrip(
                    server.url, args.variant, args.n or 20_000 // scale, args.protocol, profile
                )
            )
    adapter = f" ({args.protocol})" if args.scenario in ("recv", "roundtrip") else ""
    print(f"{args.scenario}, {args.variant}{adapter}")
    report(profile, args.top, args.sort)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
