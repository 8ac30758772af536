"""Throughput overhead: fsm_live vs a bare websockets client, same server, same run.

Usage::

    python bench/throughput.py [--quick] [--json FILE] [--reps N] [--messages N]

The server is the ``raw`` server of ``bench/_common.py`` in its own process: a
hand-written WebSocket server that writes pre-built frames in one go (receive) or only
parses frame headers (send), so it is never the bottleneck; no extension is negotiated,
so there is no compression on either side.  Messages are JSON objects of exactly
``SIZE`` (100) bytes, without an ``"id"`` member (no de-duplication).

Rows (each variant opens a fresh connection; variants alternate in order, ABBA, so a
drift of the machine's speed hits both):

* receive, json: fsm_live ``protocol="json"``, ``async for message in conn`` vs
  websockets ``json.loads(await ws.recv())``;
* receive, ping (raw frames): fsm_live ``protocol="ping"`` async iteration vs ``await
  ws.recv()``;
* send, json: ``await conn.send(dict)`` vs ``await ws.send(json.dumps(dict))``;
* send, ping: ``await conn.send(str)`` vs ``await ws.send(str)``.

A run is timed from the command (flood / count) to the last message received, or to the
server's ``{"done": true}``.  ``conn.send`` never waits: it raises ``BufferFull`` when
``outbound_buffer`` (1000) frames wait, so the fsm_live sender catches it and yields
(``await anyio.sleep(0)``) until the flush task made room; the number of such yields is
reported.  The ratio is fsm_live / raw messages per second within one repetition; the
table shows medians over repetitions.  Target: ratio >= 0.90.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import anyio
import anyio.lowlevel
import websockets.asyncio.client

import fsm_live
from fsm_live.errors import BufferFull

SIZE: Final = 100
TARGET: Final = 0.90
RUN_TIMEOUT: Final = 120.0


def _command(protocol: str, cmd: dict[str, Any]) -> Any:
    return cmd if protocol == "json" else json.dumps(cmd)


def _check(message: Any, n: int) -> None:
    seq = message["seq"] if isinstance(message, dict) else json.loads(message)["seq"]
    assert seq == n - 1, f"last message seq {seq}, expected {n - 1}"


async def recv_fsm(url: str, protocol: str, n: int) -> tuple[float, int]:
    async with fsm_live.connect(url, protocol=protocol) as conn:
        await conn.wait_connected()
        count, last = 0, None
        with anyio.fail_after(RUN_TIMEOUT):
            start = time.perf_counter()
            await conn.send(_command(protocol, {"cmd": "flood", "n": n, "size": SIZE}))
            async for message in conn:
                count += 1
                if count == n:
                    last = message
                    break
            elapsed = time.perf_counter() - start
        _check(last, n)
        return elapsed, 0


async def recv_raw(url: str, protocol: str, n: int) -> tuple[float, int]:
    async with websockets.asyncio.client.connect(url, compression=None) as ws:
        recv, loads = ws.recv, json.loads
        with anyio.fail_after(RUN_TIMEOUT):
            start = time.perf_counter()
            await ws.send(json.dumps({"cmd": "flood", "n": n, "size": SIZE}))
            if protocol == "json":
                for _ in range(n):
                    last = loads(await recv())
            else:
                for _ in range(n):
                    last = await recv()
            elapsed = time.perf_counter() - start
        _check(last, n)
        return elapsed, 0


def _messages(protocol: str, n: int) -> list[Any]:
    # Pre-built, so building them is not timed; the json row's dicts encode to SIZE bytes.
    return [json.loads(p) if protocol == "json" else p.decode()
            for p in common.flood_payloads(n, SIZE)]


async def send_fsm(url: str, protocol: str, n: int) -> tuple[float, int]:
    messages = _messages(protocol, n)
    yields = 0
    async with fsm_live.connect(url, protocol=protocol) as conn:
        await conn.wait_connected()
        replies = aiter(conn)
        send = conn.send
        with anyio.fail_after(RUN_TIMEOUT):
            start = time.perf_counter()
            await send(_command(protocol, {"cmd": "count", "n": n}))
            for message in messages:
                while True:
                    try:
                        await send(message)
                        break
                    except BufferFull:
                        yields += 1
                        await anyio.lowlevel.checkpoint()
            done = await anext(replies)
            elapsed = time.perf_counter() - start
        assert "done" in (done if isinstance(done, dict) else json.loads(done)), done
        return elapsed, yields


async def send_raw(url: str, protocol: str, n: int) -> tuple[float, int]:
    messages = _messages(protocol, n)
    async with websockets.asyncio.client.connect(url, compression=None) as ws:
        send, dumps = ws.send, json.dumps
        with anyio.fail_after(RUN_TIMEOUT):
            start = time.perf_counter()
            await send(json.dumps({"cmd": "count", "n": n}))
            if protocol == "json":
                for message in messages:
                    await send(dumps(message, separators=(",", ":"), ensure_ascii=False))
            else:
                for message in messages:
                    await send(message)
            done = await ws.recv()
            elapsed = time.perf_counter() - start
        assert "done" in json.loads(done), done
        return elapsed, 0


ROWS: Final = (
    ("receive", "json", "async for msg in conn", "json.loads(await ws.recv())", recv_fsm,
     recv_raw),
    ("receive", "ping", "async for msg in conn", "await ws.recv()", recv_fsm, recv_raw),
    ("send", "json", "await conn.send(dict)", "await ws.send(json.dumps(dict))", send_fsm,
     send_raw),
    ("send", "ping", "await conn.send(str)", "await ws.send(str)", send_fsm, send_raw),
)


async def measure(url: str, n: int, reps: int) -> list[dict[str, Any]]:
    results = []
    for direction, protocol, fsm_how, raw_how, fsm_fn, raw_fn in ROWS:
        fsm_rates: list[float] = []
        raw_rates: list[float] = []
        ratios: list[float] = []
        yields: list[int] = []
        await fsm_fn(url, protocol, min(n, 2000))  # warm-up, not counted
        await raw_fn(url, protocol, min(n, 2000))
        for rep in range(reps):
            order = [("fsm", fsm_fn), ("raw", raw_fn)]
            if rep % 2:
                order.reverse()  # ABBA
            rates = {}
            for name, fn in order:
                gc.collect()
                elapsed, spins = await fn(url, protocol, n)
                rates[name] = n / elapsed
                if name == "fsm":
                    yields.append(spins)
            fsm_rates.append(rates["fsm"])
            raw_rates.append(rates["raw"])
            ratios.append(rates["fsm"] / rates["raw"])
        results.append({
            "direction": direction, "protocol": protocol, "fsm_live": fsm_how, "raw": raw_how,
            "messages": n, "size": SIZE, "reps": reps,
            "fsm_msgs_per_s": fsm_rates, "raw_msgs_per_s": raw_rates, "ratios": ratios,
            "fsm_median": common.median(fsm_rates), "raw_median": common.median(raw_rates),
            "ratio_median": common.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "buffer_full_yields": yields, "target": TARGET,
            "met": common.median(ratios) >= TARGET,
        })
        print(f"  {direction} {protocol}: ratio {common.median(ratios):.2f}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20,000 messages (< 1 min)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write figures as JSON")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument("--messages", type=int, default=None, help="messages per run")
    args = parser.parse_args(argv)
    n = args.messages or (20_000 if args.quick else 200_000)
    reps = args.reps or 5
    facts = common.machine_facts()
    common.print_header("fsm_live throughput vs bare websockets", args.quick, facts)
    print(f"  {n:,} messages of {SIZE} bytes per run, {reps} repetitions, ABBA order; "
          "server: bench/_common.py raw, separate process\n")
    started = time.perf_counter()
    with common.ServerProcess("raw") as server:
        results = asyncio.run(measure(server.url, n, reps))
    elapsed = time.perf_counter() - started
    rows = [(r["direction"], r["protocol"], f"{r['fsm_median']:,.0f}", f"{r['raw_median']:,.0f}",
             f"{r['ratio_median']:.2f}", f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}",
             f">= {TARGET:.2f}", "met" if r["met"] else "NOT MET") for r in results]
    print()
    print(common.render(("direction", "adapter", "fsm_live msg/s", "raw msg/s", "ratio",
                         "ratio range", "target", "met"), rows))
    for r in results:
        if any(r["buffer_full_yields"]):
            print(f"  {r['direction']} {r['protocol']}: BufferFull yields per run "
                  f"{r['buffer_full_yields']}")
    print(f"\n{elapsed:.1f} s")
    common.write_json(args.json, "throughput", args.quick, facts,
                      {"elapsed_s": round(elapsed, 1), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
