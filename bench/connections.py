"""Many idle connections: memory and CPU per connection, time to open them all.

Usage::

    python bench/connections.py [--quick] [--json FILE] [--n N] [--interval S] [--window S]

Each variant runs in its own fresh client process (this script with ``--child``),
against a fresh ``hold`` server of ``bench/_common.py`` in another process:

* ``raw``: websockets clients, ``ping_interval=None``, nothing else (the RSS floor);
* ``bare``: the same plus one app task per connection that sends a WebSocket ping every
  ``interval`` seconds and awaits its pong (the CPU baseline: "the same heartbeats");
* ``fsm_live``: ``fsm_live.connect(url, protocol="ping")`` held open by one app task
  per connection (``async with``), ``heartbeat_interval=interval`` (default 15 s, the
  library default), ``heartbeat_timeout=2*interval``.

Connections are opened 100 at a time.  The parent reads the child's RSS
(``/proc/PID/statm``) after imports (baseline) and at the end of the idle window, and
its CPU time (``/proc/PID/stat`` utime+stime) over the idle window, which starts
``settle`` seconds after the last connection opened.  Compression is off on both
sides.  Targets: fsm_live RSS/connection <= raw + 10 KiB; fsm_live CPU <= 1.2 x bare.
``--quick``: 1,000 connections, heartbeats compressed to 1.5 s for both variants.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

KIB: Final = 1024
RSS_MARGIN: Final = 10 * KIB
CPU_FACTOR: Final = 1.2
OPEN_CONCURRENCY: Final = 100
VARIANTS: Final = ("raw", "bare", "fsm_live")


# -- the child: one variant's client process -------------------------------------------------


async def child(variant: str, url: str, n: int, interval: float) -> None:
    import anyio
    import websockets.asyncio.client

    import fsm_live
    from fsm_live.config import Config

    config = Config(heartbeat_interval=interval, heartbeat_timeout=2 * interval)
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    stop = anyio.Event()
    opened = 0
    failed = 0
    all_open = anyio.Event()

    def one_opened() -> None:  # one attempt finished (opened or failed)
        nonlocal opened
        opened += 1
        if opened == n:
            all_open.set()

    async def plain(keepalive: bool) -> None:
        nonlocal failed
        try:
            async with gate:
                ws = await websockets.asyncio.client.connect(
                    url, ping_interval=None, compression=None, open_timeout=60)
        except Exception:
            failed += 1
            one_opened()
            return
        one_opened()
        if not keepalive:
            await stop.wait()
            return
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(next_at - time.monotonic())
            next_at += interval
            pong = await ws.ping()
            await pong

    async def managed() -> None:
        async with gate:
            conn = fsm_live.connect(url, protocol="ping", config=config)
            await conn.__aenter__()
            try:
                with anyio.fail_after(60):
                    await conn.wait_connected()
            except Exception:
                nonlocal failed
                failed += 1
        one_opened()
        try:
            await stop.wait()
        finally:
            await conn.__aexit__(None, None, None)

    print("BASE", flush=True)
    assert input() == "go"  # noqa: ASYNC250 (nothing runs yet)
    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            if variant == "fsm_live":
                tg.start_soon(managed)
            else:
                tg.start_soon(plain, variant == "bare")
        with anyio.fail_after(600):
            await all_open.wait()
        elapsed = time.monotonic() - start
        gc.collect()
        print(f"OPEN {elapsed!r} {failed}", flush=True)
        await anyio.to_thread.run_sync(input)  # "stop"; the parent then kills us
        print("STOPPING", flush=True)
        stop.set()
        tg.cancel_scope.cancel()


# -- the parent ---------------------------------------------------------------------------------


def run_variant(variant: str, n: int, interval: float, window: float,
                settle: float) -> dict[str, Any]:
    with common.ServerProcess("hold") as server:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", variant, "--url", server.url, "--n", str(n),
             "--interval", repr(interval)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "BASE", line
            time.sleep(0.5)
            base_rss = common.rss_bytes(proc.pid)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()  # bounded by the child's own 600 s timeout
            tag, open_s, failed = line.split()
            assert tag == "OPEN", line
            time.sleep(settle)
            rss_open = common.rss_bytes(proc.pid)
            cpu0, t0 = common.cpu_seconds(proc.pid), time.monotonic()
            server_cpu0 = common.cpu_seconds(server.pid)
            time.sleep(window)
            cpu1, t1 = common.cpu_seconds(proc.pid), time.monotonic()
            server_cpu1 = common.cpu_seconds(server.pid)
            rss_end = common.rss_bytes(proc.pid)
            alive = proc.poll() is None
        finally:
            proc.kill()
            proc.wait(timeout=10)
    per_conn = (rss_end - base_rss) / n
    return {
        "variant": variant, "n": n, "interval_s": interval, "window_s": round(t1 - t0, 2),
        "open_s": float(open_s), "failed": int(failed), "alive_at_end": alive,
        "rss_base": base_rss, "rss_open": rss_open, "rss_end": rss_end,
        "rss_per_conn": per_conn, "rss_per_conn_open": (rss_open - base_rss) / n,
        "cpu_s": cpu1 - cpu0, "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "server_cpu_share": (server_cpu1 - server_cpu0) / (t1 - t0),
        "heartbeats_in_window": 0 if variant == "raw" else n * (t1 - t0) / interval,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 connections, 1.5 s heartbeats")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write figures as JSON")
    parser.add_argument("--n", type=int, default=None, help="connections per variant")
    parser.add_argument("--interval", type=float, default=None, help="heartbeat interval (s)")
    parser.add_argument("--window", type=float, default=None, help="idle window (s)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of every variant")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.n or (1_000 if args.quick else 10_000)
    interval = args.interval or (1.5 if args.quick else 15.0)
    if args.child:
        common.raise_nofile()
        asyncio.run(child(args.child, args.url, n, interval))
        return 0
    window = args.window or (6.0 if args.quick else 45.0)
    settle = 2.0 if args.quick else 5.0
    common.raise_nofile()
    facts = common.machine_facts()
    common.print_header("fsm_live idle connections vs websockets", args.quick, facts)
    print(f"  {n:,} connections per variant, heartbeat every {interval:g} s "
          f"({'compressed' if interval != 15.0 else 'the default'}), idle window {window:g} s, "
          f"{args.reps} repetition(s); each variant in a fresh client process\n")
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        order = VARIANTS if rep % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            result = run_variant(variant, n, interval, window, settle)
            result["rep"] = rep
            runs.append(result)
            print(f"  {variant}: open {result['open_s']:.1f} s, "
                  f"{result['rss_per_conn'] / KIB:.1f} KiB/conn, "
                  f"CPU {100 * result['cpu_share']:.2f}%", flush=True)
    elapsed = time.perf_counter() - started

    def med(variant: str, key: str) -> float:
        return common.median([r[key] for r in runs if r["variant"] == variant])

    raw_rss, bare_cpu = med("raw", "rss_per_conn"), med("bare", "cpu_share")
    rows = []
    for variant in VARIANTS:
        rss, cpu = med(variant, "rss_per_conn"), med(variant, "cpu_share")
        rss_target = cpu_target = "-"
        verdicts = []
        if variant == "fsm_live":
            rss_target = f"<= {(raw_rss + RSS_MARGIN) / KIB:.1f} KiB"
            cpu_target = f"<= {CPU_FACTOR:.1f}x bare"
            verdicts = [common.met(rss, raw_rss + RSS_MARGIN, at_most=True),
                        common.met(cpu, CPU_FACTOR * bare_cpu, at_most=True)]
        rows.append((variant, f"{med(variant, 'open_s'):.1f} s", f"{rss / KIB:.1f} KiB",
                     f"{(rss - raw_rss) / KIB:+.1f} KiB", rss_target,
                     f"{100 * cpu:.2f}%", f"{cpu / bare_cpu:.2f}x" if bare_cpu else "-",
                     cpu_target, " / ".join(verdicts) or "-"))
    print()
    print(common.render(("variant", "open all", "RSS/conn", "vs raw", "RSS target", "CPU",
                         "vs bare", "CPU target", "met (RSS / CPU)"), rows))
    print(f"\n{elapsed:.1f} s")
    summary = {"raw_rss_per_conn": raw_rss, "bare_cpu_share": bare_cpu,
               "fsm_rss_per_conn": med("fsm_live", "rss_per_conn"),
               "fsm_cpu_share": med("fsm_live", "cpu_share")}
    summary["rss_met"] = summary["fsm_rss_per_conn"] <= raw_rss + RSS_MARGIN
    summary["cpu_met"] = summary["fsm_cpu_share"] <= CPU_FACTOR * bare_cpu
    common.write_json(args.json, "connections", args.quick, facts,
                      {"elapsed_s": round(elapsed, 1), "n": n, "interval_s": interval,
                       "window_s": window, "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
