"""Request/response round trips at window 1: fsm_live vs websockets (and picows).

Usage::

    python bench/roundtrip.py [--quick] [--json FILE] [--reps N] [--trips N]
                              [--variants A,B,...]

picows is a bench-only dependency: ``pip install picows`` (or ``pip install -e '.[bench]'``);
without it the picows variants are skipped.

The server is the ``raw`` server of ``bench/_common.py`` in its own process, told
``{"cmd": "echo"}``: it sends every data frame back at once (unmasked with websockets'
C ``apply_mask``), so its cost is small and the same for every variant.  One message
is in flight at a time (window 1): the client sends a 100-byte JSON object, waits for
its echo, then sends the next.  Two rows: the ``ping`` adapter (text frames as ``str``)
and the ``json`` adapter (``dict`` in, ``dict`` out; websockets and picows do the
``json.dumps``/``json.loads`` themselves).

Variants, each in a fresh event loop with a fresh connection, ABBA order over
repetitions:

* ``raw``: websockets' asyncio client, ``await ws.send(m)`` then ``await ws.recv()``
  (the baseline);
* ``fsm_live``: ``await conn.send(m)`` then ``await anext(messages)`` of
  ``aiter(conn)``, on asyncio;
* ``fsm_live-trio``, ``raw-trio``: the same under ``trio.run`` (websockets' trio client);
* ``picows``: ``transport.send(...)``, then await a future that ``on_ws_frame`` resolves
  (the same shape as the others: a coroutine waits for each reply);
* ``picows-cb``: picows' own style, no coroutine per trip: ``on_ws_frame`` sends the next
  request itself (picows' echo benchmark does this).

Each round trip is timed with ``time.perf_counter`` (the same cost in every variant);
the table shows the mean per round trip (run time / trips; for ``picows-cb``, the only
figure it has) and the p50 and p99 of single trips, each the median over repetitions,
and the ratio of means to raw's within a repetition.  Target,
fsm_live on asyncio: no slower than raw (ratio of means <= 1.0).
"""

from __future__ import annotations

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
import websockets.asyncio.client
import websockets.trio.client

import fsm_live

SIZE: Final = 100
TARGET: Final = 1.0
RUN_TIMEOUT: Final = 120.0
VARIANTS: Final = ("raw", "fsm_live", "fsm_live-trio", "raw-trio", "picows", "picows-cb")
ECHO: Final = json.dumps({"cmd": "echo"})

Result = tuple[float, list[float]]  # run time, single trips (may be empty)


def _messages(protocol: str, n: int) -> list[Any]:
    return [
        json.loads(p) if protocol == "json" else p.decode() for p in common.flood_payloads(n, SIZE)
    ]


def _check(sent: Any, got: Any) -> None:
    assert got == sent, (sent, got)


async def rt_fsm(url: str, protocol: str, n: int) -> Result:
    messages = _messages(protocol, n)
    trips: list[float] = []
    clock = time.perf_counter
    async with fsm_live.connect(url, protocol=protocol) as conn:
        await conn.wait_connected()
        await conn.send(json.loads(ECHO) if protocol == "json" else ECHO)
        replies = aiter(conn)
        send = conn.send
        with anyio.fail_after(RUN_TIMEOUT):
            start = clock()
            for message in messages:
                t = clock()
                await send(message)
                reply = await anext(replies)
                trips.append(clock() - t)
            elapsed = clock() - start
        _check(messages[-1], reply)
    return elapsed, trips


async def rt_ws(url: str, protocol: str, n: int, trio: bool = False) -> Result:
    messages = _messages(protocol, n)
    trips: list[float] = []
    clock = time.perf_counter
    connect = websockets.trio.client.connect if trio else websockets.asyncio.client.connect
    async with connect(url, compression=None) as ws:
        await ws.send(ECHO)
        send, recv, dumps, loads = ws.send, ws.recv, json.dumps, json.loads
        with anyio.fail_after(RUN_TIMEOUT):
            start = clock()
            if protocol == "json":
                for message in messages:
                    t = clock()
                    await send(dumps(message, separators=(",", ":"), ensure_ascii=False))
                    reply = loads(await recv())
                    trips.append(clock() - t)
            else:
                for message in messages:
                    t = clock()
                    await send(message)
                    reply = await recv()
                    trips.append(clock() - t)
            elapsed = clock() - start
        _check(messages[-1], reply)
    return elapsed, trips


async def rt_ws_trio(url: str, protocol: str, n: int) -> Result:
    return await rt_ws(url, protocol, n, trio=True)


async def rt_picows(url: str, protocol: str, n: int, chained: bool = False) -> Result:
    import picows

    text = picows.WSMsgType.TEXT
    messages = _messages(protocol, n)
    parse = protocol == "json"
    loop = asyncio.get_running_loop()
    dumps, loads = json.dumps, json.loads

    def encode(message: Any) -> bytes:
        if parse:
            return dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        return message.encode()  # type: ignore[no-any-return]

    class Listener(picows.WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.reply: asyncio.Future[Any] | None = None
            self.done: asyncio.Future[Any] = loop.create_future()
            self.sent = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != text:
                return
            message = frame.get_payload_as_utf8_text()
            if parse:
                message = loads(message)
            if chained:  # picows' style: the callback sends the next request
                self.sent += 1
                if self.sent < n:
                    transport.send(text, encode(messages[self.sent]))
                else:
                    self.done.set_result(message)
            elif self.reply is not None:
                self.reply.set_result(message)

    transport, listener = await picows.ws_connect(Listener, url)
    trips: list[float] = []
    clock = time.perf_counter
    send = transport.send
    try:
        transport.send(text, ECHO.encode())
        async with asyncio.timeout(RUN_TIMEOUT):
            start = clock()
            if chained:
                send(text, encode(messages[0]))
                reply = await listener.done
            else:
                for message in messages:
                    t = clock()
                    listener.reply = loop.create_future()
                    send(text, encode(message))
                    reply = await listener.reply
                    trips.append(clock() - t)
            elapsed = clock() - start
    finally:
        transport.disconnect()
    _check(messages[-1], reply)
    return elapsed, trips


async def rt_picows_cb(url: str, protocol: str, n: int) -> Result:
    return await rt_picows(url, protocol, n, chained=True)


FUNCTIONS: Final = {
    "raw": ("asyncio", rt_ws),
    "fsm_live": ("asyncio", rt_fsm),
    "fsm_live-trio": ("trio", rt_fsm),
    "raw-trio": ("trio", rt_ws_trio),
    "picows": ("asyncio", rt_picows),
    "picows-cb": ("asyncio", rt_picows_cb),
}


def one_run(variant: str, url: str, protocol: str, n: int) -> Result:
    backend, fn = FUNCTIONS[variant]
    gc.collect()
    return common.run_on(backend, fn, url, protocol, n)  # type: ignore[no-any-return]


def measure(url: str, n: int, reps: int, variants: tuple[str, ...]) -> list[dict[str, Any]]:
    results = []
    for protocol in ("ping", "json"):
        mean: dict[str, list[float]] = {v: [] for v in variants}
        p50: dict[str, list[float]] = {v: [] for v in variants}
        p99: dict[str, list[float]] = {v: [] for v in variants}
        for variant in variants:  # warm-up, not counted
            one_run(variant, url, protocol, min(n, 1000))
        for rep in range(reps):
            order = variants if rep % 2 == 0 else tuple(reversed(variants))  # ABBA
            for variant in order:
                elapsed, trips = one_run(variant, url, protocol, n)
                mean[variant].append(elapsed / n)
                if trips:
                    p50[variant].append(common.percentile(trips, 50))
                    p99[variant].append(common.percentile(trips, 99))
        row: dict[str, Any] = {
            "protocol": protocol,
            "trips": n,
            "size": SIZE,
            "reps": reps,
            "mean_s": mean,
            "p50_s": p50,
            "p99_s": p99,
            "vs_raw": {},
        }
        for variant in variants:
            row["vs_raw"][variant] = [
                a / b for a, b in zip(mean[variant], mean["raw"], strict=True)
            ]
        if "fsm_live" in variants:
            row["met"] = common.median(row["vs_raw"]["fsm_live"]) <= TARGET
        results.append(row)
        print(
            f"  {protocol}: "
            + ", ".join(f"{v} {1e6 * common.median(mean[v]):.1f} us" for v in variants),
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 trips per run, 3 reps")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    parser.add_argument(
        "--reps", type=common.positive_int, default=None, help="repetitions (default 5)"
    )
    parser.add_argument(
        "--trips", type=common.positive_int, default=None, help="round trips per run"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (raw is always run)",
    )
    args = parser.parse_args(argv)
    n = args.trips or (2_000 if args.quick else 20_000)
    reps = args.reps or (3 if args.quick else 5)
    variants = common.installed(
        dict.fromkeys(["raw", *common.variant_list(parser, args.variants, VARIANTS)])
    )
    common.quiet_logs()
    facts = common.machine_facts()
    common.print_header(
        "fsm_live request/response round trip (window 1) vs websockets and picows",
        args.quick,
        facts,
    )
    print(
        f"  {n:,} round trips of {SIZE}-byte messages per run, {reps} repetitions, ABBA "
        f"order over {', '.join(variants)}; server: bench/_common.py raw (echo), separate "
        "process\n"
    )
    started = time.perf_counter()
    with common.ServerProcess("raw") as server:
        results = measure(server.url, n, reps, variants)
    elapsed = time.perf_counter() - started
    rows = []
    for r in results:
        for variant in variants:
            is_target = variant == "fsm_live"
            rows.append(
                (
                    r["protocol"],
                    variant,
                    common.spread([1e6 * v for v in r["mean_s"][variant]], "{:.1f}"),
                    f"{1e6 * common.median(r['p50_s'][variant]):.1f}"
                    if r["p50_s"][variant]
                    else "-",
                    f"{1e6 * common.median(r['p99_s'][variant]):.1f}"
                    if r["p99_s"][variant]
                    else "-",
                    common.spread(r["vs_raw"][variant]) + "x" if variant != "raw" else "-",
                    f"<= {TARGET:.2f}x" if is_target else "",
                    ("met" if r["met"] else "NOT MET") if is_target else "",
                )
            )
    print()
    print(
        common.render(
            (
                "adapter",
                "variant",
                "us/trip median (range)",
                "p50 us",
                "p99 us",
                "vs raw",
                "target",
                "met",
            ),
            rows,
        )
    )
    print(f"\n{elapsed:.1f} s")
    common.write_json(
        args.json,
        "roundtrip",
        args.quick,
        facts,
        {"elapsed_s": round(elapsed, 1), "variants": variants, "results": results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
