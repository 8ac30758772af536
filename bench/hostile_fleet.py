"""One hostile peer against a fleet: do the other members still get their heartbeats?

Usage::

    python bench/hostile_fleet.py [--quick] [--json FILE] [--kinds K,...]
                                  [--members N] [--interval S] [--window S]

A :class:`fsm_live.Fleet` of N members (default 1,000) runs in this process on
asyncio, ``ping`` protocol, heartbeats every ``interval`` (1 s).  N - 1 members
connect to a websockets server in a process of its own (``bench/_common.py serve
hold``: pongs are automatic); one member (or, for kind 8, the fleet's metrics
endpoint) is attacked by a hostile peer in a third process.  Once the N - 1 are
connected, the attack starts and lasts ``window`` seconds (20); the table gives the
heartbeat round trips of the N - 1 others over the window (p50, p99, max: the goal
is a p99 under 100 ms on an idle machine), this process's CPU (percent of one
core) and resident memory growth over the window, and what became of the attacked
member.  Kinds (issue 17; the numbers are its kinds):

* ``none``: no attack (the attacked member connects to the same server): the baseline;
* ``1-fragments``: a message that never ends: an empty text frame, then empty
  continuation frames as fast as the peer can write them;
* ``1-pings``: 125-byte pings as fast as the peer can write them, never reading a pong;
* ``2-nested``: the member speaks ``json``; the peer sends JSON nested 100,000 levels
  deep (200 KB), frame after frame;
* ``3-trickle``: a 1,000-byte frame announced, then one byte of it every 0.5 s;
* ``4-refusal``: the member speaks ``lwp``; the peer refuses its registration with a
  500,000-character ``code``, at every attempt;
* ``7-http-500``: the peer answers every handshake with HTTP 500 at once; the member
  has the smallest backoff allowed (ceiling 0.01 s);
* ``8-metrics``: the fleet's metrics endpoint (served on the fleet's event loop) gets
  1,500 slow partial requests and, alongside, 64 scrapers scraping in a loop.

Kinds 5 (secrets shown) and 6 (hostile files, read before a fleet starts) put no
load on a running fleet: they have no row.

The attacker runs on the same machine: with 2 cores, it competes with the fleet
for CPU (the table's load average says how busy the machine was).  ``--quick``:
200 members, a 6 s window.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

KINDS: Final = (
    "none",
    "1-fragments",
    "1-pings",
    "2-nested",
    "3-trickle",
    "4-refusal",
    "7-http-500",
    "8-metrics",
)
GOAL_P99: Final = 0.100
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- the attacker (a process of its own) ------------------------------------------------------


def _frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """An unmasked server-to-client frame."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


async def _accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the client's handshake request and answer a correct 101."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    await writer.drain()


async def _read_text(reader: asyncio.StreamReader) -> bytes:
    """The client's next text frame's payload (masked, as a client's are)."""
    while True:
        b0, b1 = await reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4)
        data = await reader.readexactly(length)
        if b0 & 0x0F == 1:
            return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def _flood(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    while True:
        writer.write(chunk)
        await writer.drain()


async def _attack(kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if kind == "7-http-500":
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return
    await _accept(reader, writer)
    if kind == "1-fragments":
        writer.write(_frame(1, fin=False))
        await _flood(writer, _frame(0, fin=False) * 32768)
    elif kind == "1-pings":
        await _flood(writer, _frame(9, b"p" * 125) * 512)
    elif kind == "2-nested":
        await _flood(writer, _frame(1, b"[" * 100_000 + b"]" * 100_000))
    elif kind == "3-trickle":
        writer.write(bytes((0x81, 126)) + (1000).to_bytes(2, "big"))
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.5)
    elif kind == "4-refusal":
        while True:
            request = json.loads(await _read_text(reader))
            if request.get("lwp") == "/reg":
                break
        mid = request["headers"]["mid"]
        reply = json.dumps({"code": "A" * 500_000, "headers": {"mid": mid}})
        writer.write(_frame(1, reply.encode()))
        await writer.drain()
        await reader.read()  # until the client hangs up


async def _serve_attack(kind: str) -> None:
    handlers: set[asyncio.Task[None]] = set()

    async def attack(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await _attack(kind, reader, writer)
        writer.close()

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(attack(reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.start_server(handle, common.HOST, 0)
    print(f"READY {server.sockets[0].getsockname()[1]} 0", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    server.close()
    for task in list(handlers):
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)


async def _scrape_attack(port: int) -> None:
    """Kind 8: 1,500 slow partial requests kept open, and 64 scrapers in a loop."""
    common.raise_nofile()
    print("READY 0 0", flush=True)
    counts = {"scrapes_answered": 0, "slow_requests_cut": 0}

    async def slow() -> None:
        while True:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection(common.HOST, port)
                writer.write(b"GET /metr")
                await reader.read()  # until the server's timeout cuts it: open another
                writer.close()
                counts["slow_requests_cut"] += 1

    async def scrape() -> None:
        while True:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection(common.HOST, port)
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                if (await reader.read()).startswith(b"HTTP/1.1 200 "):
                    counts["scrapes_answered"] += 1
                writer.close()

    tasks = [asyncio.ensure_future(slow()) for _ in range(1500)]
    tasks += [asyncio.ensure_future(scrape()) for _ in range(64)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


class Attacker:
    """This script as an attacker process (``--attacker KIND``); stdin EOF ends it."""

    def __init__(self, kind: str, target: int = 0) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "--attacker", kind]
        argv += ["--target", str(target)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self._lines.get(timeout=20).split()[1])
        #: What the attacker reported when it stopped (kind 8: its counts).
        self.report: dict[str, Any] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    @property
    def url(self) -> str:
        return f"ws://{common.HOST}:{self.port}/"

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(queue.Empty, ValueError):
            self.report = json.loads(self._lines.get(timeout=1))


# -- the fleet (this process) -------------------------------------------------------------------


class _LwpCredentials:
    """What an lwp member's registration needs (a fixed token and device id)."""

    device_id = "bench-device"

    async def access_token(self) -> Any:
        import fsm_live

        return fsm_live.Secret("bench-token")

    async def handshake_headers(self) -> dict[str, Any]:
        return {}

    async def refresh(self) -> bool:
        return True

    async def escalate(self) -> bool:
        return False


async def run_kind(
    kind: str,
    hold_url: str,
    url: str,
    members: int,
    interval: float,
    window: float,
    endpoint: Any,
) -> Any:
    """The fleet for one kind: N - 1 members on ``hold_url``, the attacked one on
    ``url``; ``endpoint``: the bound metrics server kind 8 serves."""
    import anyio

    from fsm_live import Config, ExponentialJitter, Fleet
    from fsm_live.metrics import FleetCollector

    common.quiet_logs()
    config = Config(heartbeat_interval=interval, heartbeat_timeout=3 * interval)
    rtts: list[tuple[float, float]] = []
    pid = os.getpid()

    def note(at: float, rtt: float) -> None:
        rtts.append((at, rtt))

    async with Fleet(close_timeout=2) as fleet:
        for index in range(members - 1):
            conn = await fleet.add(f"m{index}", hold_url, config=config)
            conn.on_heartbeat_ack(note)
        while fleet.count("CONNECTED") < members - 1:
            await fleet.wait_changed()
        await anyio.sleep(2 * interval)  # every member has had a heartbeat
        async with contextlib.AsyncExitStack() as stack:
            if endpoint is not None:  # the scrapers were started with the endpoint bound
                endpoint.registry.register(FleetCollector(fleet))
                await stack.enter_async_context(endpoint)
            start, cpu0, rss0 = anyio.current_time(), common.cpu_seconds(pid), common.rss_bytes(pid)
            options: dict[str, Any] = {"config": config}
            if kind == "2-nested":
                options["protocol"] = "json"
            elif kind == "4-refusal":
                options.update(protocol="lwp", credentials=_LwpCredentials())
            elif kind == "7-http-500":
                options["config"] = config.replace(
                    backoff=ExponentialJitter(initial=0.01, maximum=0.01)
                )
            if kind != "8-metrics":
                await fleet.add("attacked", url, **options)
            await anyio.sleep(window)
            cpu = (common.cpu_seconds(pid) - cpu0) / window
            rss = common.rss_bytes(pid) - rss0
            attacked = fleet["attacked"].stats() if "attacked" in fleet else None
    during = [rtt for at, rtt in rtts if at >= start]
    return {
        "kind": kind,
        "acks": len(during),
        "p50_ms": 1000 * common.percentile(during, 50),
        "p99_ms": 1000 * common.percentile(during, 99),
        "max_ms": 1000 * max(during, default=float("nan")),
        "cpu_percent": 100 * cpu,
        "rss_growth_mb": rss / 1e6,
        "attacked": None
        if attacked is None
        else {
            "state": attacked.state,
            "connects": attacked.connects,
            "failures": dict(attacked.failures),
            "messages_in": attacked.messages_in,
            "last_error": attacked.last_error[:80],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 members, a 6 s window")
    parser.add_argument("--json", type=common.json_path, metavar="FILE")
    parser.add_argument("--kinds", default=",".join(KINDS), help="kinds to run, comma-separated")
    parser.add_argument("--members", type=common.positive_int, default=None)
    parser.add_argument("--interval", type=common.positive_float, default=1.0)
    parser.add_argument("--window", type=common.positive_float, default=None)
    parser.add_argument("--attacker", choices=KINDS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attacker is not None:
        if args.attacker == "8-metrics":
            asyncio.run(_scrape_attack(args.target))
        else:
            asyncio.run(_serve_attack(args.attacker))
        return 0
    kinds = common.variant_list(parser, args.kinds, KINDS)
    members = args.members or (200 if args.quick else 1000)
    window = args.window or (6.0 if args.quick else 20.0)
    from fsm_live.metrics import new_registry, serve_metrics

    common.raise_nofile()
    facts = common.machine_facts()
    common.print_header(
        f"hostile_fleet: {members} members, heartbeats every {args.interval:g} s, "
        f"{window:g} s windows",
        args.quick,
        facts,
    )
    results = []
    with common.ServerProcess("hold") as hold:
        for kind in kinds:
            load = common.loadavg()[0]
            # The attacker starts before the fleet's event loop does (its start-up would
            # stall the loop); kind 8's endpoint is bound first, to give it the port.
            endpoint = serve_metrics(new_registry(), 0) if kind == "8-metrics" else None
            attacker = None
            if kind != "none":
                attacker = Attacker(kind, 0 if endpoint is None else endpoint.port)
            url = hold.url if attacker is None or endpoint is not None else attacker.url
            try:
                result = asyncio.run(
                    run_kind(kind, hold.url, url, members, args.interval, window, endpoint)
                )
            finally:
                if attacker is not None:
                    attacker.stop()
                if endpoint is not None:
                    endpoint.close()
            result["loadavg_1min_before"] = load
            if attacker is not None and attacker.report:
                result["attacker"] = attacker.report
            results.append(result)
            attacked = result["attacked"]
            print(
                f"{kind}: p99 {result['p99_ms']:.1f} ms over {result['acks']} acks; "
                f"attacked: {json.dumps(attacked) if attacked else '-'}"
                + (f"; attacker: {json.dumps(result['attacker'])}" if "attacker" in result else ""),
                flush=True,
            )
    print()
    rows = [
        [
            r["kind"],
            r["acks"],
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            f"{r['cpu_percent']:.0f}%",
            f"{r['rss_growth_mb']:.1f}",
            "-" if r["attacked"] is None else r["attacked"]["state"],
            r["loadavg_1min_before"],
            common.met(r["p99_ms"], GOAL_P99 * 1000, at_most=True),
        ]
        for r in results
    ]
    header = ["kind", "acks", "p50 ms", "p99 ms", "max ms", "CPU", "RSS +MB", "attacked"]
    print(common.render([*header, "load", "p99 < 100 ms"], rows))
    common.write_json(args.json, "hostile_fleet", args.quick, facts, {"results": results})
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)")
    raise SystemExit(code)
