"""Where an idle connection's memory goes: tracemalloc per connection, by allocation site.

Usage::

    python bench/memprofile.py [--variant fsm_live|raw|picows|fsm_live-trio|raw-trio]
                               [--n N] [--interval S] [--settle S] [--top K] [--json FILE]
                               [--by line|line+inner|file] [--quick]

Not a benchmark with a target: the profile behind the RSS figures of
``bench/connections.py``.  In this process, on asyncio (or trio for ``-trio``), against
a ``hold`` server of ``bench/_common.py`` in another process: one connection is opened
and closed first (lazy imports, caches), then ``tracemalloc`` (25 frames) takes a
snapshot, N connections are opened the way ``connections.py`` opens them (each held by
one task) and left idle for ``--settle`` seconds (several heartbeats: the steady state),
``gc.collect()`` runs, and a second snapshot is diffed against the first.  What is still
allocated, divided by N, is grouped by *site*:

* the innermost ``fsm_live`` frame of the allocation's traceback (``fsm_live/...:LINE``),
  which names the fsm_live line that caused it, however deep in a library it happened;
* else the innermost frame (what allocated: a library's line, or this script's, such
  as the task that holds the connection).

``--by line+inner`` adds the innermost frame (what actually allocated) to each site;
``--by file`` groups by the fsm_live file and the library that allocated.  These are
Python allocations only: RSS also holds the allocator's overhead, and the sockets'
kernel buffers are in neither.
"""

from __future__ import annotations

import gc
import json
import linecache
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

VARIANTS: Final = ("fsm_live", "raw", "picows", "fsm_live-trio", "raw-trio")
LIBRARIES: Final = (
    "/websockets/",
    "/anyio/",
    "/trio/",
    "/picows/",
    "/aiofastnet/",
    "/asyncio/",
    "/sniffio/",
)


def _short(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for lib in ("/fsm_live/", "/bench/", *LIBRARIES):
        if lib in name:
            return lib.strip("/") + "/" + name.split(lib, 1)[1] + f":{frame.lineno}"
    return f"{name}:{frame.lineno}"


def _library(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for lib in ("/fsm_live/", "/bench/", *LIBRARIES):
        if lib in name:
            return lib.strip("/")
    return "stdlib" if "/python3." in name else name


def site(tb: tracemalloc.Traceback, by: str) -> str:
    """Where an allocation belongs: see the module docstring."""
    frames = list(reversed(tb))  # innermost first (a Traceback lists the oldest first)
    if not frames:
        return "?"
    mine = next((f for f in frames if "/fsm_live/" in f.filename), None)
    inner = frames[0]
    if by == "file":  # the fsm_live file (or none), and the library that allocated
        head = _short(mine).rsplit(":", 1)[0] if mine else "(no fsm_live frame)"
        return f"{head} <- {_library(inner)}"
    where = _short(mine) if mine is not None else _short(inner)
    if mine is not None:
        code = linecache.getline(mine.filename, mine.lineno).strip()
        where += f"  {code[:60]}"
    if by == "line+inner" and mine is not None and mine is not inner:
        where += "  <- " + _short(inner)
    return where


async def hold_many(
    variant: str, url: str, n: int, interval: float, settle: float, snapshot: list[Any]
) -> None:
    import anyio
    import websockets.asyncio.client
    import websockets.trio.client

    import fsm_live

    config = fsm_live.Config(heartbeat_interval=interval, heartbeat_timeout=2 * interval)
    stop = anyio.Event()
    opened = 0
    all_open = anyio.Event()

    gate = anyio.Semaphore(100)  # opening at most 100 at a time, as connections.py does

    def one_opened() -> None:
        nonlocal opened
        opened += 1
        if opened == n:
            all_open.set()

    async def one(warm: bool = False) -> None:
        await gate.acquire()
        if variant.startswith("fsm_live"):
            async with fsm_live.connect(url, protocol="ping", config=config) as conn:
                try:
                    await conn.wait_connected()
                finally:
                    gate.release()
                one_opened()
                if not warm:
                    await stop.wait()
        elif variant == "raw":
            try:
                ws = await websockets.asyncio.client.connect(
                    url, ping_interval=None, compression=None, open_timeout=60
                )
            finally:
                gate.release()
            one_opened()
            if warm:
                await ws.close()
            else:
                await stop.wait()
        elif variant == "raw-trio":
            async with websockets.trio.client.connect(
                url, ping_interval=None, compression=None, open_timeout=60
            ):
                gate.release()
                one_opened()
                if not warm:
                    await stop.wait()
        else:
            import picows

            try:
                transport, _ = await picows.ws_connect(
                    picows.WSListener, url, websocket_handshake_timeout=60
                )
            finally:
                gate.release()
            one_opened()
            if not warm:
                await stop.wait()
            transport.disconnect()

    await one(warm=True)
    opened = 0
    gc.collect()
    tracemalloc.start(25)
    snapshot.append(tracemalloc.take_snapshot())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        with anyio.fail_after(120):
            await all_open.wait()
        await anyio.sleep(settle)
        gc.collect()
        snapshot.append(tracemalloc.take_snapshot())
        stop.set()
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variant", choices=VARIANTS, default="fsm_live")
    parser.add_argument("--n", type=common.positive_int, default=500)
    parser.add_argument(
        "--interval", type=common.positive_float, default=1.0, help="heartbeat interval (s)"
    )
    parser.add_argument(
        "--settle", type=common.positive_float, default=3.5, help="idle time before the snapshot"
    )
    parser.add_argument("--top", type=common.positive_int, default=25)
    parser.add_argument(
        "--by",
        choices=("line", "line+inner", "file"),
        default="line",
        help="group by the innermost fsm_live line (default), that line and "
        "the innermost frame, or the fsm_live file and the library "
        "that allocated",
    )
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    parser.add_argument(
        "--quick", action="store_true", help="100 connections, 1.5 s idle (a smoke test)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.settle = min(args.n, 100), min(args.settle, 1.5)
    common.raise_nofile()
    common.quiet_logs()
    snapshots: list[Any] = []
    with common.ServerProcess("hold") as server:
        started = time.perf_counter()
        common.run_on(
            "trio" if args.variant.endswith("-trio") else "asyncio",
            hold_many,
            args.variant,
            server.url,
            args.n,
            args.interval,
            args.settle,
            snapshots,
        )
    before, after = snapshots
    per_site: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff == 0 and stat.count_diff == 0:
            continue
        entry = per_site[site(stat.traceback, args.by)]
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    total = sum(size for size, _ in per_site.values())
    rows = sorted(per_site.items(), key=lambda item: -item[1][0])
    print(
        f"{args.variant}: {args.n} idle connections, heartbeat {args.interval:g} s, "
        f"{args.settle:g} s idle; Python allocations per connection: "
        f"{total / args.n / 1024:.2f} KiB ({time.perf_counter() - started:.1f} s)\n"
    )
    table = [
        (where, f"{size / args.n:,.0f}", f"{count / args.n:.1f}")
        for where, (size, count) in rows[: args.top]
    ]
    rest = sum(size for _, (size, _) in rows[args.top :])
    table.append(("(everything else)", f"{rest / args.n:,.0f}", ""))
    print(common.render(("site", "bytes/conn", "blocks/conn"), table))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "variant": args.variant,
                    "n": args.n,
                    "per_conn_bytes": total / args.n,
                    "sites": {w: {"bytes": s / args.n, "blocks": c / args.n} for w, (s, c) in rows},
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
