"""The public path's idle cost, checked: ``fsm_live.connect(url)`` as users call it,
beside a bare websockets client, in one run.

Usage::

    python bench/cost_check.py [--n N] [--bound R]

A guard, not a benchmark (``bench/connections.py`` measures at full size): N idle
connections (default 300) are opened in a fresh child process per variant, each held
by one application task, against one ``hold`` server of ``bench/_common.py`` in
another process:

* ``raw``: ``websockets.asyncio.client.connect(url, ping_interval=None,
  compression=None)``, nothing else;
* ``fsm_live``: ``async with fsm_live.connect(url) as conn`` and nothing else: no
  ``config=``, no ``machine=``, no ``protocol=`` (the defaults are the path a slip
  once made 18x dearer: every connection built its own Machine).

Each child opens and closes one connection first (imports, caches and the shared
Machine are not counted per connection), reads its RSS, opens the N, waits one
second, collects garbage and reads its RSS again.  It prints the RSS per connection
of both and their ratio, and exits 1 when the ratio is above ``--bound`` (default
1.5): ``.ci/run`` runs it, so a change that multiplies the cost does not land.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

VARIANTS: Final = ("raw", "fsm_live")


def rss() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def hold(variant: str, url: str, n: int) -> float:
    """Open ``n`` idle connections as ``variant``; their RSS per connection, in KiB."""
    import anyio
    import websockets.asyncio.client

    import fsm_live

    opened = 0
    all_open = anyio.Event()
    batch_open = anyio.Event()
    batch_end = 0

    def one_opened() -> None:
        nonlocal opened
        opened += 1
        if opened == batch_end:
            batch_open.set()
        if opened == n:
            all_open.set()

    async def one(*, warm: bool = False, task_status: anyio.abc.TaskStatus[None]) -> None:
        if variant == "fsm_live":
            async with fsm_live.connect(url) as conn:  # exactly as users call it
                await conn.wait_connected()
                task_status.started()
                if not warm:
                    one_opened()
                    await anyio.sleep_forever()
        else:
            ws = await websockets.asyncio.client.connect(
                url, ping_interval=None, compression=None, open_timeout=60
            )
            task_status.started()
            if warm:
                await ws.close()
                return
            one_opened()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as warm:
        await warm.start(lambda task_status: one(warm=True, task_status=task_status))
    gc.collect()
    before = rss()
    async with anyio.create_task_group() as tasks:
        for start in range(0, n, 100):  # 100 opening at a time, as connections.py does
            batch_end, batch_open = min(n, start + 100), anyio.Event()
            for _ in range(batch_end - start):
                tasks.start_soon(lambda: one(task_status=anyio.TASK_STATUS_IGNORED))
            with anyio.fail_after(60):
                await batch_open.wait()
        with anyio.fail_after(60):
            await all_open.wait()
        await anyio.sleep(1)
        gc.collect()
        per_connection = (rss() - before) / n / 1024
        tasks.cancel_scope.cancel()
    return per_connection


def child(variant: str, url: str, n: int) -> None:
    import anyio

    common.quiet_logs()
    print(f"{anyio.run(hold, variant, url, n):.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--n", type=common.positive_int, default=300)
    parser.add_argument("--bound", type=common.positive_float, default=1.5)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.n)
        return 0
    common.raise_nofile()
    kib: dict[str, float] = {}
    with common.ServerProcess("hold") as server:
        for variant in VARIANTS:
            done = subprocess.run(
                [sys.executable, __file__, "--n", str(args.n), "--child", variant, server.url],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                print(f"cost check: the {variant} child failed:\n{done.stderr}", file=sys.stderr)
                return 2
            kib[variant] = float(done.stdout.split()[-1])
    ratio = kib["fsm_live"] / kib["raw"]
    verdict = "ok" if ratio <= args.bound else f"ABOVE THE BOUND {args.bound:g}x"
    print(
        f"cost check: {args.n} idle connections through fsm_live.connect(): "
        f"{kib['fsm_live']:.1f} KiB each vs {kib['raw']:.1f} KiB for a bare websockets "
        f"client: {ratio:.2f}x ({verdict}; goal 0.75x, docs/benchmarks.md)"
    )
    return 0 if ratio <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
