"""Throughput: fsm_live vs websockets (and picows), same server, same run.

Usage::

    python bench/throughput.py [--quick] [--json FILE] [--reps N] [--messages N]
                               [--variants A,B,...]

picows is a bench-only dependency: ``pip install picows`` (or ``pip install -e '.[bench]'``);
without it the picows variant is skipped.

The server is the ``raw`` server of ``bench/_common.py`` in its own process: a
hand-written WebSocket server that writes pre-built frames in one go (receive) or only
parses frame headers (send), so it is never the bottleneck; no extension is negotiated,
so there is no compression on either side.  Messages are JSON objects of exactly
``SIZE`` (100) bytes, without an ``"id"`` member (no de-duplication).

Rows: receive and send, each with the json and the ping adapter:

* receive, json: fsm_live ``protocol="json"``, ``async for message in conn``; websockets
  ``json.loads(await ws.recv())``; picows ``json.loads(frame.get_payload_as_utf8_text())``
  in ``on_ws_frame``;
* receive, ping (raw frames): fsm_live ``protocol="ping"`` async iteration; ``await
  ws.recv()``; picows ``frame.get_payload_as_utf8_text()``;
* send, json: ``await conn.send(dict)``; ``await ws.send(json.dumps(dict))``; picows
  ``transport.send(TEXT, json.dumps(dict).encode())``;
* send, ping: ``await conn.send(str)``; ``await ws.send(str)``; picows
  ``transport.send(TEXT, str.encode())``.

Variants, each run in a fresh event loop with a fresh connection, in ABBA order over
repetitions (``A B C D E``, then ``E D C B A``) so a drift of the machine's speed hits
all of them:

* ``raw``: websockets' asyncio client (the baseline of every ratio);
* ``fsm_live``: fsm_live on asyncio;
* ``fsm_live-trio``, ``raw-trio``: fsm_live and websockets' trio client under ``trio.run``;
* ``picows``: picows' callback API (``WSListener.on_ws_frame``; no coroutine per
  message: this is how picows is meant to be used).  The sender stops at picows'
  ``pause_writing`` and goes on at ``resume_writing``, as websockets' ``send`` waits
  for its drain.

A run is timed from the command (flood / count) to the last message received, or to the
server's ``{"done": true}``.  ``conn.send`` never waits while the link takes the bytes;
it waits only while the link's write buffer is above its high mark.  The ratio is a
variant's messages per second over raw's within one repetition; the table shows the
median and the range over repetitions.  Targets, fsm_live on
asyncio: receive >= 1.0 x raw, send >= 0.95 x raw.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import anyio
import websockets.asyncio.client
import websockets.trio.client

import fsm_live

SIZE: Final = 100
TARGETS: Final = {"receive": 1.0, "send": 0.95}
RUN_TIMEOUT: Final = 120.0
VARIANTS: Final = ("raw", "fsm_live", "fsm_live-trio", "raw-trio", "picows")


def _check(message: Any, n: int) -> None:
    seq = message["seq"] if isinstance(message, dict) else json.loads(message)["seq"]
    assert seq == n - 1, f"last message seq {seq}, expected {n - 1}"


def _command(protocol: str, cmd: dict[str, Any]) -> Any:
    return cmd if protocol == "json" else json.dumps(cmd)


def _messages(protocol: str, n: int) -> list[Any]:
    # Pre-built, so building them is not timed; the json row's dicts encode to SIZE bytes.
    return [
        json.loads(p) if protocol == "json" else p.decode() for p in common.flood_payloads(n, SIZE)
    ]


# -- fsm_live (asyncio and trio: the same code through anyio) --------------------------------


async def recv_fsm(url: str, protocol: str, n: int) -> float:
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
        return elapsed


async def send_fsm(url: str, protocol: str, n: int) -> float:
    messages = _messages(protocol, n)
    async with fsm_live.connect(url, protocol=protocol) as conn:
        await conn.wait_connected()
        replies = aiter(conn)
        send = conn.send
        with anyio.fail_after(RUN_TIMEOUT):
            start = time.perf_counter()
            await send(_command(protocol, {"cmd": "count", "n": n}))
            for message in messages:
                await send(message)
            done = await anext(replies)
            elapsed = time.perf_counter() - start
        assert "done" in (done if isinstance(done, dict) else json.loads(done)), done
        return elapsed


# -- websockets (asyncio and trio clients: the same code) ------------------------------------


def _ws_connect(backend: str) -> Callable[..., Any]:
    if backend == "trio":
        return websockets.trio.client.connect
    return websockets.asyncio.client.connect


async def recv_ws(url: str, protocol: str, n: int, backend: str = "asyncio") -> float:
    async with _ws_connect(backend)(url, compression=None) as ws:
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
        return elapsed


async def send_ws(url: str, protocol: str, n: int, backend: str = "asyncio") -> float:
    messages = _messages(protocol, n)
    async with _ws_connect(backend)(url, compression=None) as ws:
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
        return elapsed


async def recv_ws_trio(url: str, protocol: str, n: int) -> float:
    return await recv_ws(url, protocol, n, "trio")


async def send_ws_trio(url: str, protocol: str, n: int) -> float:
    return await send_ws(url, protocol, n, "trio")


# -- picows (asyncio; callbacks) ---------------------------------------------------------------


def picows_listener() -> type:
    """A ``WSListener`` that counts (and decodes) text frames, knows the server's
    ``{"done": ...}`` and follows picows' write flow control."""
    import picows

    text = picows.WSMsgType.TEXT

    class Listener(picows.WSListener):  # type: ignore[misc]
        def __init__(self, n: int, parse: bool) -> None:
            super().__init__()
            loop = asyncio.get_running_loop()
            self.n, self.parse, self.count = n, parse, 0
            self.done: asyncio.Future[Any] = loop.create_future()
            self.paused = False
            self.resumed: asyncio.Future[None] | None = None

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != text:
                return
            message = frame.get_payload_as_utf8_text()
            if self.parse:
                message = json.loads(message)
            self.count += 1
            if self.count == self.n:
                self.done.set_result(message)

        def pause_writing(self) -> None:
            self.paused = True

        def resume_writing(self) -> None:
            self.paused = False
            if self.resumed is not None and not self.resumed.done():
                self.resumed.set_result(None)

        async def drained(self) -> None:
            self.resumed = asyncio.get_running_loop().create_future()
            await self.resumed

    return Listener


async def recv_picows(url: str, protocol: str, n: int) -> float:
    import picows

    listener_type = picows_listener()
    transport, listener = await picows.ws_connect(lambda: listener_type(n, protocol == "json"), url)
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            start = time.perf_counter()
            transport.send(
                picows.WSMsgType.TEXT, json.dumps({"cmd": "flood", "n": n, "size": SIZE}).encode()
            )
            last = await listener.done
            elapsed = time.perf_counter() - start
    finally:
        transport.disconnect()
    _check(last, n)
    return elapsed


async def send_picows(url: str, protocol: str, n: int) -> float:
    import picows

    messages = _messages(protocol, n)
    listener_type = picows_listener()
    transport, listener = await picows.ws_connect(lambda: listener_type(1, False), url)
    send, text, dumps = transport.send, picows.WSMsgType.TEXT, json.dumps
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            start = time.perf_counter()
            send(text, json.dumps({"cmd": "count", "n": n}).encode())
            if protocol == "json":
                for message in messages:
                    send(text, dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
                    if listener.paused:
                        await listener.drained()
            else:
                for message in messages:
                    send(text, message.encode())
                    if listener.paused:
                        await listener.drained()
            done = await listener.done
            elapsed = time.perf_counter() - start
    finally:
        transport.disconnect()
    assert "done" in json.loads(done), done
    return elapsed


#: variant -> (backend, receive function, send function)
FUNCTIONS: Final = {
    "raw": ("asyncio", recv_ws, send_ws),
    "fsm_live": ("asyncio", recv_fsm, send_fsm),
    "fsm_live-trio": ("trio", recv_fsm, send_fsm),
    "raw-trio": ("trio", recv_ws_trio, send_ws_trio),
    "picows": ("asyncio", recv_picows, send_picows),
}
ROWS: Final = (("receive", "json"), ("receive", "ping"), ("send", "json"), ("send", "ping"))


def one_run(variant: str, direction: str, url: str, protocol: str, n: int) -> float:
    backend, recv_fn, send_fn = FUNCTIONS[variant]
    fn = recv_fn if direction == "receive" else send_fn
    gc.collect()
    return common.run_on(backend, fn, url, protocol, n)  # type: ignore[no-any-return]


def measure(url: str, n: int, reps: int, variants: tuple[str, ...]) -> list[dict[str, Any]]:
    results = []
    for direction, protocol in ROWS:
        rates: dict[str, list[float]] = {v: [] for v in variants}
        for variant in variants:  # warm-up, not counted
            one_run(variant, direction, url, protocol, min(n, 2000))
        for rep in range(reps):
            order = variants if rep % 2 == 0 else tuple(reversed(variants))  # ABBA
            for variant in order:
                rates[variant].append(n / one_run(variant, direction, url, protocol, n))
        row: dict[str, Any] = {
            "direction": direction,
            "protocol": protocol,
            "messages": n,
            "size": SIZE,
            "reps": reps,
            "target": TARGETS[direction],
            "msgs_per_s": rates,
            "vs_raw": {},
        }
        for variant in variants:
            ratios = [a / b for a, b in zip(rates[variant], rates["raw"], strict=True)]
            row["vs_raw"][variant] = ratios
        if "fsm_live" in variants:
            row["met"] = common.median(row["vs_raw"]["fsm_live"]) >= TARGETS[direction]
        results.append(row)
        print(
            f"  {direction} {protocol}: "
            + ", ".join(f"{v} {common.median(row['vs_raw'][v]):.2f}x" for v in variants),
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20,000 messages (< 1 min)")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    parser.add_argument(
        "--reps", type=common.positive_int, default=None, help="repetitions (default 5)"
    )
    parser.add_argument(
        "--messages", type=common.positive_int, default=None, help="messages per run"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (raw is always run)",
    )
    args = parser.parse_args(argv)
    n = args.messages or (20_000 if args.quick else 200_000)
    reps = args.reps or 5
    variants = common.installed(
        dict.fromkeys(["raw", *common.variant_list(parser, args.variants, VARIANTS)])
    )
    common.quiet_logs()
    facts = common.machine_facts()
    common.print_header("fsm_live throughput vs websockets and picows", args.quick, facts)
    print(
        f"  {n:,} messages of {SIZE} bytes per run, {reps} repetitions, ABBA order over "
        f"{', '.join(variants)}; server: bench/_common.py raw, separate process\n"
    )
    started = time.perf_counter()
    with common.ServerProcess("raw") as server:
        results = measure(server.url, n, reps, variants)
    elapsed = time.perf_counter() - started
    rows = []
    for r in results:
        for variant in variants:
            ratios = r["vs_raw"][variant]
            is_target = variant == "fsm_live"
            rows.append(
                (
                    f"{r['direction']} {r['protocol']}",
                    variant,
                    common.spread(r["msgs_per_s"][variant], "{:,.0f}"),
                    common.spread(ratios) + "x" if variant != "raw" else "-",
                    f">= {r['target']:.2f}x" if is_target else "",
                    ("met" if r["met"] else "NOT MET") if is_target else "",
                )
            )
    print()
    print(
        common.render(("row", "variant", "msg/s median (range)", "vs raw", "target", "met"), rows)
    )
    print(f"\n{elapsed:.1f} s")
    common.write_json(
        args.json,
        "throughput",
        args.quick,
        facts,
        {"elapsed_s": round(elapsed, 1), "variants": variants, "results": results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
