"""Shared helpers of the live-runtime benchmarks (not a benchmark itself).

* :class:`ServerProcess`: a benchmark server in its own process (``sys.executable``
  running this file), bound to 127.0.0.1, reporting its port on stdout, answering
  one-line commands on stdin, always killed at the end;
* the servers themselves (``python bench/_common.py serve MODE``):

  - ``raw``: a minimal hand-written WebSocket server (asyncio protocol, no
    extensions, so no compression) for the throughput benchmark.  The first text
    frame a client sends is a JSON command: ``{"cmd": "flood", "n": N, "size": S}``
    writes N pre-built ~S-byte JSON text frames in one go (the server costs next to
    nothing, so the client is the bottleneck); ``{"cmd": "count", "n": N}`` counts N
    data frames (headers parsed, payloads not unmasked) and answers ``{"done": N}``;
    ``{"cmd": "echo"}`` sends every later data frame back as a text frame (unmasked
    with websockets' C ``apply_mask``), for request/response round trips.
  - ``hold``: a websockets asyncio server whose handler waits until the client
    closes (pongs are automatic); no keepalive, no compression, backlog 4096.  It
    logs the ``time.monotonic()`` of every opening-handshake request (CLOCK_MONOTONIC
    is system-wide on Linux, so client and server times compare directly).
  - ``accept_close``: like ``hold`` but the handler returns at once (close 1000).
  - ``proxy``: ``hold`` behind a :class:`fsm_live.fault_proxy.FaultProxy`; the
    port reported is the proxy's; the stdin command ``black_hole`` black-holes both
    directions of every link.

  Stdin commands: ``times`` (JSON list of request times), ``count``, ``black_hole``;
  EOF ends the server.  ``--at T`` waits until ``time.monotonic() >= T`` before
  binding (a restart at a precise moment); ``--port P`` binds that port (asyncio sets
  SO_REUSEADDR).
* machine facts, percentiles, a plain-text table, JSON output, ``/proc`` readers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import json
import os
import platform
import queue
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(ROOT))

HOST: Final = "127.0.0.1"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE: Final = os.sysconf("SC_PAGE_SIZE")


# -- command lines ----------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """``argparse`` that reports a bad argument in one line (no usage block), exit status 2."""

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def json_path(text: str) -> Path:
    """``--json FILE``: checked before the run, so a long run never ends in a traceback."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"no directory {str(path.parent)!r}")
    return path


def variant_list(
    parser: argparse.ArgumentParser, text: str, known: Sequence[str]
) -> tuple[str, ...]:
    """``--variants A,B``: the names, in order, each known; a parser error otherwise."""
    variants = tuple(v.strip() for v in text.split(",") if v.strip())
    if not variants:
        parser.error("--variants: no variant given")
    unknown = [v for v in variants if v not in known]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return variants


def installed(variants: Iterable[str]) -> tuple[str, ...]:
    """``variants`` without picows' when picows is not installed (said on stdout)."""
    if find_spec("picows") is not None:
        return tuple(variants)
    print("picows is not installed (pip install picows): its variants are skipped")
    return tuple(v for v in variants if not v.startswith("picows"))


# -- machine, statistics, output --------------------------------------------------------------


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "(not installed)"


def commit() -> str:
    """The checkout's commit (short), with ``+dirty`` if fsm_live/ has changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "fsm_live"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + ("+dirty" if dirty else "")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "loadavg_1_5_15": loadavg(),
        "commit": commit(),
        "websockets": _version("websockets"),
        "anyio": _version("anyio"),
        "trio": _version("trio"),
        "picows": _version("picows"),
        "aiofastnet": _version("aiofastnet"),  # picows uses it when it is installed
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def run_on(backend: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a fresh event loop of ``backend`` ("asyncio" or "trio")."""
    if backend == "trio":
        import trio

        return trio.run(fn, *args)
    return asyncio.run(fn(*args))


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def print_header(title: str, quick: bool, facts: dict[str, Any]) -> None:
    print(title + (" (--quick)" if quick else ""))
    for key, value in facts.items():
        print(f"  {key}: {value}")
    print()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; numbers right-aligned."""
    table = [list(map(str, header))] + [[str(cell) for cell in row] for row in rows]
    numeric = [all(_numeric(line[i]) for line in table[1:]) for i in range(len(header))]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    out = []
    for index, line in enumerate(table):
        out.append(
            "  ".join(
                cell.rjust(w) if numeric[i] else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").replace("x", "").split(" ")[0]
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def met(value: float, target: float, *, at_most: bool) -> str:
    ok = value <= target if at_most else value >= target
    return "met" if ok else "NOT MET"


def write_json(
    path: Path | None, name: str, quick: bool, facts: dict[str, Any], payload: dict[str, Any]
) -> None:
    if path is None:
        return
    data = {"benchmark": name, "quick": quick, "machine": facts, **payload}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def quiet_logs() -> None:
    """No log output from fsm_live or websockets (transitions to RECONNECTING are WARNINGs;
    websockets logs its retries at INFO, which Python drops without configuration)."""
    import logging

    for name in ("fsm_live", "websockets"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def busiest_window(times: Sequence[float], width: float = 0.1) -> tuple[int, float]:
    """The most ``times`` in any window ``[t, t + width)``, and where it starts."""
    ordered = sorted(times)
    best, at, lo = 0, float("nan"), 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= width:
            lo += 1
        if hi - lo + 1 > best:
            best, at = hi - lo + 1, ordered[lo]
    return best, at


def counting_connect(attempts: list[float]) -> type:
    """``websockets.asyncio.client.connect`` that appends the time of every attempt
    (every dial of its ``async for`` loop) to ``attempts``."""
    import websockets.asyncio.client

    class CountingConnect(websockets.asyncio.client.connect):
        async def connect(self) -> Any:
            attempts.append(time.monotonic())
            return await super().connect()

    return CountingConnect


# -- /proc --------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``/proc/PID/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/PID/stat``)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


# -- the server process (client side) -----------------------------------------------------------


class ServerProcess:
    """A benchmark server in a separate process; use as a context manager.

    Its stdout is read by a thread into a queue, so waiting for a line never
    blocks on a dead pipe; :meth:`kill` is SIGKILL and always reaps it.  With
    ``gc=False`` the server runs without Python's cyclic garbage collector: holding
    thousands of connections, its collections pause it for a second at times, and
    the requests that arrived meanwhile are then logged together.
    """

    def __init__(
        self,
        mode: str,
        *,
        port: int = 0,
        at: float | None = None,
        start_timeout: float = 20.0,
        gc: bool = True,
    ) -> None:
        self.mode = mode
        argv = [sys.executable, str(Path(__file__).resolve()), "serve", mode, "--port", str(port)]
        if at is not None:
            argv += ["--at", repr(at)]
        if not gc:
            argv.append("--no-gc")
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.port = 0
        self.listening_at = 0.0
        try:
            ready = self.line(
                timeout=start_timeout + (max(0.0, at - time.monotonic()) if at else 0.0)
            )
            _, port_text, at_text = ready.split()
            self.port, self.listening_at = int(port_text), float(at_text)
        except BaseException:
            self.kill()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    def line(self, timeout: float = 10.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"server {self.mode}: no answer within {timeout} s") from None
        if line is None:
            raise RuntimeError(f"server {self.mode} exited (code {self.proc.poll()})")
        return line

    def command(self, text: str, timeout: float = 30.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.line(timeout)

    def times(self) -> list[float]:
        times: list[float] = json.loads(self.command("times"))
        return times

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# -- the servers (server side) -----------------------------------------------------------------

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def text_frame(payload: bytes) -> bytes:
    """An unmasked (server-to-client) FIN text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def flood_payloads(n: int, size: int) -> list[bytes]:
    """``n`` JSON objects of exactly ``size`` bytes each (``size`` >= 60), ``seq`` 0..n-1."""
    out = []
    for i in range(n):
        head = f'{{"seq":{i},"kind":"tick","data":"'
        out.append((head + "x" * (size - len(head) - 2) + '"}').encode())
    return out


try:
    from websockets.speedups import apply_mask as _apply_mask  # C
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask as _apply_mask


class _RawServer(asyncio.Protocol):
    """One connection of the ``raw`` server (see the module docstring)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.counting = -1  # frames still to count; -1: waiting for a command
        self.echoing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._handshake(bytes(buf[:end]))
            del buf[: end + 4]
        self._frames()

    def _handshake(self, head: bytes) -> None:
        assert self.transport is not None
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True

    def _frames(self) -> None:
        buf, pos, end = self.buf, 0, len(self.buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            masked = b1 & 0x80
            if end - pos < head + (4 if masked else 0) + length:
                break
            opcode = b0 & 0x0F
            if opcode in (1, 2, 0) and self.counting > 0:  # the hot path: count only
                self.counting -= 1
                if self.counting == 0:
                    self._send_text(json.dumps({"done": True}).encode())
            elif self.echoing and opcode in (1, 2):  # round trips: echo it at once
                start = pos + head + (4 if masked else 0)
                payload = bytes(buf[start : start + length])
                if masked:
                    payload = _apply_mask(payload, bytes(buf[pos + head : pos + head + 4]))
                self._send_text(payload)
            else:
                mask = bytes(buf[pos + head : pos + head + 4]) if masked else b"\0\0\0\0"
                start = pos + head + (4 if masked else 0)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[start : start + length]))
                self._control(opcode, payload)
            pos += head + (4 if masked else 0) + length
        del buf[:pos]

    def _send_text(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(text_frame(payload))

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 8:  # close: echo it, then close the TCP connection
            self.transport.write(bytes((0x88, len(payload))) + payload)
            self.transport.close()
        elif opcode == 9:  # ping: pong
            self.transport.write(bytes((0x8A, len(payload))) + payload)
        elif opcode == 1 and self.counting < 0:
            command = json.loads(payload)
            if command["cmd"] == "flood":
                frames = [text_frame(p) for p in flood_payloads(command["n"], command["size"])]
                self.transport.write(b"".join(frames))
            elif command["cmd"] == "count":
                self.counting = command["n"]
            elif command["cmd"] == "echo":
                self.echoing = True


async def _serve(mode: str, port: int, at: float | None) -> None:
    import websockets.asyncio.server as ws_server

    raise_nofile()
    loop = asyncio.get_running_loop()
    requests: list[float] = []
    commands: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, None)

    def process_request(connection: Any, request: Any) -> None:
        requests.append(time.monotonic())

    async def hold(ws: Any) -> None:
        await ws.wait_closed()

    async def accept_close(ws: Any) -> None:
        return None

    if at is not None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
    proxy: Any = None
    if mode == "raw":
        server: Any = await loop.create_server(_RawServer, HOST, port, backlog=4096)
    else:
        server = await ws_server.serve(
            accept_close if mode == "accept_close" else hold,
            HOST,
            0 if mode == "proxy" else port,
            ping_interval=None,
            compression=None,
            process_request=process_request,
            backlog=4096,
            close_timeout=2,
        )
    bound = server.sockets[0].getsockname()[1]
    listening_at = time.monotonic()
    if mode == "proxy":
        from fsm_live.fault_proxy import FaultProxy

        proxy = FaultProxy(upstream=(HOST, bound))
        await proxy.__aenter__()
        bound = proxy.port
    print(f"READY {bound} {listening_at!r}", flush=True)
    threading.Thread(target=read_stdin, daemon=True).start()
    while (command := await commands.get()) is not None:
        if command == "times":
            print(json.dumps(requests), flush=True)
        elif command == "count":
            print(len(requests), flush=True)
        elif command == "black_hole" and proxy is not None:
            from fsm_live.fault_proxy import Faults

            proxy.set_faults(Faults(black_hole=True))
            print(repr(time.monotonic()), flush=True)
        else:
            print(f"ERROR unknown command {command!r}", flush=True)
    server.close()


def _main(argv: list[str]) -> int:
    parser = Parser(description="a benchmark server (see the docstring)")
    parser.add_argument("serve", choices=["serve"])
    parser.add_argument("mode", choices=["raw", "hold", "accept_close", "proxy"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--at", type=float, default=None)
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="no cyclic garbage collection (its pauses would bunch the times logged)",
    )
    args = parser.parse_args(argv)
    if args.no_gc:
        gc.disable()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.mode, args.port, args.at))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
