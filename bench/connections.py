"""Many idle connections: memory and CPU per connection, time to open them all.

Usage::

    python bench/connections.py [--quick] [--json FILE] [--reps N] [--variants A,B,...]
                                [--n N] [--interval S] [--window S]

picows is a bench-only dependency: ``pip install picows`` (or ``pip install -e '.[bench]'``);
without it the picows variants are skipped.

Each variant runs in its own fresh client process (this script with ``--child``),
against a fresh ``hold`` server of ``bench/_common.py`` in another process.  Every
connection is opened and then held by one application task (the same for every
variant), 100 opening at a time:

* ``raw``: websockets' asyncio client, ``ping_interval=None``, nothing else (the RSS
  and open-time baseline);
* ``bare``: the same plus, in the holding task, a WebSocket ping every ``interval``
  seconds awaiting its pong (the CPU baseline: "raw plus the same heartbeats");
* ``keepalive``: websockets' asyncio client with its own keepalive,
  ``ping_interval=interval``, ``ping_timeout=interval`` (a task per connection inside
  websockets; what a hand-rolled websockets client gets without writing a ping loop);
* ``fsm_live``: ``fsm_live.connect(url, protocol="ping")`` on asyncio,
  ``heartbeat_interval=interval``, ``heartbeat_timeout=2*interval``;
* ``fleet``: the same connections as members of one ``fsm_live.Fleet()`` at its
  defaults, added with ``await fleet.add(key, url, protocol="ping", config=...)`` as
  fast as ``add`` returns: the fleet paces their first dials (200 a second by default),
  so its "open all" is the fleet's own start, not a race;
* ``picows``: picows' ``ws_connect`` with a plain ``WSListener`` (auto-pong on, no
  pings): the peer of ``raw``;
* ``picows-ping``: the same with picows' own heartbeat (``enable_auto_ping``,
  ``PING_PERIODICALLY`` every ``interval``, reply timeout ``interval``: picows allows
  no longer one): the peer of ``bare``.  Both at picows' defaults otherwise (its
  16 KiB ``read_buffer_init_size``; aiofastnet's transports when it is installed);
* ``fsm_live-trio``, ``raw-trio``, ``bare-trio``: fsm_live, and websockets' trio client
  without and with the same heartbeats, under ``trio.run``.

The parent reads the child's RSS (``/proc/PID/statm``) after imports (every variant
imports every library, so the baselines match) and at the end of the idle window, and
its CPU time (``/proc/PID/stat`` utime+stime) over the idle window, which starts
``settle`` seconds after the last connection opened.  Compression is off everywhere.

Variants run in ABBA order over repetitions; ratios (fsm_live / raw RSS per
connection, fsm_live / bare CPU, fsm_live / raw open time) are taken within one
repetition; the table shows their medians and ranges.  Targets:
RSS per connection <= 0.75 x raw, CPU <= 1.0 x bare, open all <= 1.2 x raw.
Defaults: 10,000 connections, 15 s heartbeats (the library's default), a 45 s window;
``--quick``: 1,000 connections, 1.5 s heartbeats, a 6 s window.  10,000 connections
need ``ulimit -n`` above 10,000 on both sides (``_common.raise_nofile`` raises the soft
limit to the hard one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

KIB: Final = 1024
RSS_FACTOR: Final = 0.75  # fsm_live RSS per connection <= 0.75 x raw's
CPU_FACTOR: Final = 1.0  # fsm_live CPU <= 1.0 x bare's
OPEN_FACTOR: Final = 1.2  # fsm_live time to open all <= 1.2 x raw's
OPEN_CONCURRENCY: Final = 100
VARIANTS: Final = (
    "raw",
    "bare",
    "keepalive",
    "fsm_live",
    "fleet",
    "picows",
    "picows-ping",
    "fsm_live-trio",
    "raw-trio",
    "bare-trio",
)
#: What each variant is compared with: (memory and open-time baseline, CPU baseline).
PEERS: Final = {
    "fsm_live": ("raw", "bare"),
    "fleet": ("raw", "bare"),
    "keepalive": ("raw", "bare"),
    "picows": ("raw", None),
    "picows-ping": ("raw", "bare"),
    "fsm_live-trio": ("raw", "bare"),
}
TRIO_PEERS: Final = {"fsm_live-trio": ("raw-trio", "bare-trio")}


def backend(variant: str) -> str:
    return "trio" if variant.endswith("-trio") else "asyncio"


# -- the child: one variant's client process -------------------------------------------------


async def child(variant: str, url: str, n: int, interval: float) -> None:
    # Every variant imports every library: the RSS baselines match.
    import anyio
    import websockets.asyncio.client
    import websockets.trio.client

    import fsm_live

    picows: Any = None
    if find_spec("picows") is not None:
        import picows

    config = fsm_live.Config(heartbeat_interval=interval, heartbeat_timeout=2 * interval)
    gate = anyio.Semaphore(OPEN_CONCURRENCY)
    stop = anyio.Event()
    all_open = anyio.Event()
    opened = failed = 0
    on_trio = backend(variant) == "trio"
    if on_trio:
        import trio

        sleep = trio.sleep
    else:
        sleep = asyncio.sleep

    def one_opened(ok: bool) -> None:  # one attempt finished (opened or failed)
        nonlocal opened, failed
        opened += 1
        failed += not ok
        if opened == n:
            all_open.set()

    async def heartbeats(ws: Any) -> None:  # bare: a ping every interval, await the pong
        next_at = time.monotonic() + interval
        while True:
            await sleep(next_at - time.monotonic())
            next_at += interval
            pong = await ws.ping()
            await pong.wait() if on_trio else await pong

    async def raw_asyncio(keepalive: bool, own_pings: bool = False) -> None:
        await gate.acquire()
        try:
            ws = await websockets.asyncio.client.connect(
                url,
                ping_interval=interval if own_pings else None,
                ping_timeout=interval if own_pings else None,
                compression=None,
                open_timeout=60,
            )
        except Exception:
            one_opened(False)
            return
        finally:
            gate.release()
        one_opened(True)
        if keepalive:
            await heartbeats(ws)
        await stop.wait()

    async def raw_trio(keepalive: bool) -> None:
        await gate.acquire()
        released = False
        try:
            async with websockets.trio.client.connect(
                url, ping_interval=None, compression=None, open_timeout=60
            ) as ws:
                gate.release()
                released = True
                one_opened(True)
                if keepalive:
                    await heartbeats(ws)
                await stop.wait()
        except Exception:
            if not released:
                gate.release()
                one_opened(False)

    async def managed() -> None:
        await gate.acquire()
        released = False
        async with fsm_live.connect(url, protocol="ping", config=config) as conn:
            try:
                with anyio.fail_after(60):
                    await conn.wait_connected()
                ok = True
            except Exception:
                ok = False
            gate.release()
            released = True
            one_opened(ok)
            await stop.wait()
        if not released:
            gate.release()

    async def with_picows(ping: bool) -> None:
        await gate.acquire()
        try:
            transport, _ = await picows.ws_connect(
                picows.WSListener,
                url,
                websocket_handshake_timeout=60,
                enable_auto_ping=ping,
                auto_ping_idle_timeout=interval,
                auto_ping_reply_timeout=interval,  # picows: at most the ping interval
                auto_ping_strategy=picows.WSAutoPingStrategy.PING_PERIODICALLY,
            )
        except Exception:
            one_opened(False)
            return
        finally:
            gate.release()
        one_opened(True)
        try:
            await stop.wait()
        finally:
            transport.disconnect()

    async def fleet() -> None:
        async with fsm_live.Fleet() as members:
            for key in range(n):
                await members.add(str(key), url, protocol="ping", config=config)
            while members.count("CONNECTED") + members.count("FAILED") < n:
                await members.wait_changed()
            for _ in range(members.count("CONNECTED")):
                one_opened(True)
            for _ in range(members.count("FAILED")):
                one_opened(False)
            await stop.wait()

    body: Any
    args: tuple[Any, ...] = ()
    if variant == "fleet":
        body = fleet
    elif variant in ("fsm_live", "fsm_live-trio"):
        body = managed
    elif variant in ("picows", "picows-ping"):
        body, args = with_picows, (variant == "picows-ping",)
    elif on_trio:
        body, args = raw_trio, (variant == "bare-trio",)
    elif variant == "keepalive":
        body, args = raw_asyncio, (False, True)
    else:
        body, args = raw_asyncio, (variant == "bare",)

    print("BASE", flush=True)
    await anyio.to_thread.run_sync(input)  # "go"
    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(1 if variant == "fleet" else n):  # a fleet starts its members
            tg.start_soon(body, *args)
        with anyio.fail_after(600):
            await all_open.wait()
        elapsed = time.monotonic() - start
        gc.collect()
        print(f"OPEN {elapsed!r} {failed}", flush=True)
        await anyio.to_thread.run_sync(input)  # the parent kills us after the window
        stop.set()
        tg.cancel_scope.cancel()


# -- the parent ---------------------------------------------------------------------------------


def run_variant(
    variant: str, n: int, interval: float, window: float, settle: float
) -> dict[str, Any]:
    load_before = common.loadavg()
    with common.ServerProcess("hold") as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                variant,
                "--url",
                server.url,
                "--n",
                str(n),
                "--interval",
                repr(interval),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
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
    return {
        "variant": variant,
        "n": n,
        "interval_s": interval,
        "window_s": round(t1 - t0, 2),
        "open_s": float(open_s),
        "failed": int(failed),
        "alive_at_end": alive,
        "rss_base": base_rss,
        "rss_open": rss_open,
        "rss_end": rss_end,
        "rss_per_conn": (rss_end - base_rss) / n,
        "rss_per_conn_open": (rss_open - base_rss) / n,
        "cpu_s": cpu1 - cpu0,
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "server_cpu_share": (server_cpu1 - server_cpu0) / (t1 - t0),
        "loadavg_before": load_before,
        "loadavg_after": common.loadavg(),
    }


def ratios(runs: list[dict[str, Any]], variant: str, peer: str | None, key: str) -> list[float]:
    """``variant``'s ``key`` over ``peer``'s, per repetition that has both."""
    if peer is None:
        return []
    by_rep: dict[int, dict[str, float]] = {}
    for r in runs:
        by_rep.setdefault(r["rep"], {})[r["variant"]] = r[key]
    return [v[variant] / v[peer] for v in by_rep.values() if variant in v and peer in v and v[peer]]


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 connections, 1.5 s heartbeats")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    parser.add_argument(
        "--n", type=common.positive_int, default=None, help="connections per variant"
    )
    parser.add_argument(
        "--interval", type=common.positive_float, default=None, help="heartbeat interval (s)"
    )
    parser.add_argument(
        "--window", type=common.positive_float, default=None, help="idle window (s)"
    )
    parser.add_argument(
        "--reps", type=common.positive_int, default=1, help="repetitions (ABBA order)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)}",
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.n or (1_000 if args.quick else 10_000)
    interval = args.interval or (1.5 if args.quick else 15.0)
    if args.child:
        common.raise_nofile()
        common.quiet_logs()
        if backend(args.child) == "trio":
            import trio

            trio.run(child, args.child, args.url, n, interval)
        else:
            asyncio.run(child(args.child, args.url, n, interval))
        return 0
    variants = common.installed(common.variant_list(parser, args.variants, VARIANTS))
    window = args.window or (6.0 if args.quick else 45.0)
    settle = 2.0 if args.quick else 5.0
    common.raise_nofile()
    facts = common.machine_facts()
    common.print_header("fsm_live idle connections vs websockets and picows", args.quick, facts)
    print(
        f"  {n:,} connections per variant, heartbeat every {interval:g} s, idle window "
        f"{window:g} s, {args.reps} repetition(s) in ABBA order; each variant in a fresh "
        "client process\n"
    )
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        order = variants if rep % 2 == 0 else tuple(reversed(variants))
        for variant in order:
            result = run_variant(variant, n, interval, window, settle)
            result["rep"] = rep
            runs.append(result)
            print(
                f"  rep {rep} {variant}: open {result['open_s']:.2f} s, "
                f"{result['rss_per_conn'] / KIB:.2f} KiB/conn, "
                f"CPU {100 * result['cpu_share']:.2f}%, failed {result['failed']}, "
                f"load {result['loadavg_before'][0]}",
                flush=True,
            )
    elapsed = time.perf_counter() - started

    def vals(variant: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["variant"] == variant]

    summary: dict[str, Any] = {}
    rows = []
    for variant in variants:
        mem_peer, cpu_peer = PEERS.get(variant, (None, None))
        rss_r = ratios(runs, variant, mem_peer, "rss_per_conn")
        cpu_r = ratios(runs, variant, cpu_peer, "cpu_share")
        open_r = ratios(runs, variant, mem_peer, "open_s")
        verdict = "-"
        if variant == "fsm_live" and rss_r and cpu_r and open_r:
            checks = {
                "rss": common.median(rss_r) <= RSS_FACTOR,
                "cpu": common.median(cpu_r) <= CPU_FACTOR,
                "open": common.median(open_r) <= OPEN_FACTOR,
            }
            summary["met"] = checks
            verdict = " / ".join("met" if ok else "NOT MET" for ok in checks.values())
        summary[variant] = {
            "open_s": vals(variant, "open_s"),
            "rss_per_conn": vals(variant, "rss_per_conn"),
            "cpu_share": vals(variant, "cpu_share"),
            "rss_vs_raw": rss_r,
            "cpu_vs_bare": cpu_r,
            "open_vs_raw": open_r,
        }
        rows.append(
            (
                variant,
                f"{sum(vals(variant, 'failed')):,}",
                common.spread(vals(variant, "open_s"), "{:.2f}") + " s",
                common.spread([v / KIB for v in vals(variant, "rss_per_conn")], "{:.2f}"),
                common.spread(rss_r) + "x" if rss_r else "-",
                common.spread([100 * v for v in vals(variant, "cpu_share")], "{:.2f}") + "%",
                common.spread(cpu_r) + "x" if cpu_r else "-",
                common.spread(open_r) + "x" if open_r else "-",
                verdict,
            )
        )
    print()
    print(
        common.render(
            (
                "variant",
                "failed",
                "open all",
                "RSS/conn KiB",
                "RSS vs raw",
                "CPU (1 core)",
                "CPU vs bare",
                "open vs raw",
                "met (RSS / CPU / open)",
            ),
            rows,
        )
    )
    print(
        f"  targets, fsm_live: RSS <= {RSS_FACTOR:.2f}x raw, CPU <= {CPU_FACTOR:.1f}x bare, "
        f"open all <= {OPEN_FACTOR:.1f}x raw (medians of per-repetition ratios; ranges in "
        "brackets)"
    )
    for variant, (mem_peer, cpu_peer) in TRIO_PEERS.items():
        if variant in variants and mem_peer in variants:
            rss_r = ratios(runs, variant, mem_peer, "rss_per_conn")
            cpu_r = ratios(runs, variant, cpu_peer, "cpu_share") if cpu_peer in variants else []
            open_r = ratios(runs, variant, mem_peer, "open_s")
            print(
                f"  {variant} on its own backend: RSS {common.spread(rss_r)}x {mem_peer}, "
                f"CPU {common.spread(cpu_r)}x {cpu_peer}, open {common.spread(open_r)}x "
                f"{mem_peer}"
            )
    if any(r["failed"] or not r["alive_at_end"] for r in runs):
        print("  WARNING: some connections failed to open, or a client died: see 'failed'")
    print(f"\n{elapsed:.1f} s")
    common.write_json(
        args.json,
        "connections",
        args.quick,
        facts,
        {
            "elapsed_s": round(elapsed, 1),
            "n": n,
            "interval_s": interval,
            "window_s": window,
            "reps": args.reps,
            "summary": summary,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
