"""Ctrl-C (SIGINT) and SIGTERM for every command, as a user sends them.

Each command runs as ``python -m fsm_live`` in a child process; the servers run
in the test's event loop (asyncio, 127.0.0.1).  A second SIGINT is sent while
the close started by the first is in progress: against a server that completes
the WebSocket handshake and then never answers (its close frame included), a
connection's close takes its whole ``close_timeout`` (20 s here), so a child that
exits well before that was cut short.

Every interrupted command must exit 130 with the one line
``fsm-live COMMAND: interrupted`` on stderr: no traceback, whatever the timing.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream
from servers import raw_server

from fsm_live._runtime.trace import read_trace

pytestmark = pytest.mark.timeout(60)

DEADLINE = 40.0
FSM_LIVE = (sys.executable, "-m", "fsm_live")
#: The graceful close would take this long against the black hole.
CLOSE_TIMEOUT = 20.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}
    return {**env, **extra}


async def black_hole(stream: anyio.abc.SocketStream) -> None:
    """Accept the WebSocket handshake, then read and ignore everything: pings and
    the client's close frame are never answered."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive()
    found = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", request)
    assert found is not None, request
    accept = base64.b64encode(hashlib.sha1(found.group(1) + _GUID).digest())
    await stream.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while True:
        await stream.receive()


class Child:
    """A running ``fsm-live`` command: its stdout read up to a line, signals, its end."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self.process = process
        self._text = TextReceiveStream(process.stdout)
        self.out = ""

    async def until(self, text: str, count: int = 1) -> None:
        """Read stdout until ``text`` appeared ``count`` times."""
        while self.out.count(text) < count:
            self.out += await self._text.receive()

    def send(self, signum: int) -> None:
        """Send ``signum``, unless the process already exited (a first SIGINT may end
        it before a second one is sent: the exit code tells the rest).

        ``os.kill``, not ``process.send_signal``: asyncio's ``send_signal`` polls the
        child first, and on a child that just exited that poll reaps it behind the
        child watcher's back, which then reports exit code 255 (seen on a busy
        machine: the first SIGINT ended the demo before the second was sent).  A
        signal to an exited child that is not reaped yet is ignored."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)

    async def end(self) -> tuple[int, str, float]:
        """Wait for the exit; its code, its whole stderr, and how long the wait took."""
        started = anyio.current_time()
        code = await self.process.wait()
        took = anyio.current_time() - started
        async for chunk in self._text:
            self.out += chunk
        assert self.process.stderr is not None
        errors = b"".join([chunk async for chunk in self.process.stderr]).decode()
        return code, errors, took


async def start(argv: Sequence[str | Path], **env: str) -> anyio.abc.Process:
    return await anyio.open_process(
        [*FSM_LIVE, *map(str, argv)],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def assert_interrupted(command: str, code: int, errors: str) -> None:
    assert code == 130, errors
    assert "Traceback" not in errors
    assert errors == f"fsm-live {command}: interrupted\n"


# -- connect and fleet: a second Ctrl-C cuts a slow close short ------------------------------


@pytest.mark.anyio
async def test_connect_second_sigint_cuts_a_slow_close_short(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE):
        async with (
            raw_server(black_hole) as server,
            await start(
                ["connect", server.url, "--trace", trace], FSM_LIVE_CLOSE_TIMEOUT=str(CLOSE_TIMEOUT)
            ) as process,
        ):
            child = Child(process)
            await child.until("CONNECTING -> CONNECTED")
            child.send(signal.SIGINT)
            await child.until("CONNECTED -> CLOSED")  # the close runs; the peer is silent
            child.send(signal.SIGINT)
            code, errors, took = await child.end()
    assert_interrupted("connect", code, errors)
    assert took < CLOSE_TIMEOUT / 2  # measured: about 0.01 s
    assert [line["to"] for line in read_trace(trace)] == ["CONNECTING", "CONNECTED", "CLOSED"]


@pytest.mark.anyio
async def test_fleet_second_sigint_cuts_a_slow_close_short(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    with anyio.fail_after(DEADLINE):
        async with raw_server(black_hole) as server:
            path.write_text(
                f"[defaults]\nclose_timeout = {CLOSE_TIMEOUT}\n"
                + "".join(f'[accounts.a{i}]\nurl = "{server.url}"\n' for i in range(3)),
                encoding="utf-8",
            )
            async with await start(["fleet", path]) as process:
                child = Child(process)
                await child.until("all 3 connections CONNECTED")
                child.send(signal.SIGINT)
                await child.until("CONNECTED -> CLOSED", count=3)
                child.send(signal.SIGINT)
                code, errors, took = await child.end()
    assert_interrupted("fleet", code, errors)
    assert took < CLOSE_TIMEOUT / 2


# -- demo and serve: once, twice, and SIGTERM ------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ([signal.SIGINT], 130),
        ([signal.SIGINT, signal.SIGINT], 130),
        ([signal.SIGTERM], 0),
    ],
    ids=["INT", "INT-INT", "TERM"],
)
async def test_demo_stops_on_signals(
    tmp_path: Path, signals: list[signal.Signals], expected: int
) -> None:
    with anyio.fail_after(DEADLINE):
        async with await start(["demo", "--trace", tmp_path / "t.jsonl"]) as process:
            child = Child(process)
            await child.until("CONNECTING -> CONNECTED")
            for signum in signals:
                child.send(signum)
                await anyio.sleep(0.05)  # the second one while everything closes
            code, errors, _ = await child.end()
    if expected == 130:
        assert_interrupted("demo", code, errors)
    else:
        assert (code, errors) == (0, "")
    assert "summary" not in child.out.lower()  # the story did not run to its end


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ([signal.SIGINT, signal.SIGINT], 130),
        ([signal.SIGTERM, signal.SIGINT], 130),
    ],
    ids=["INT-INT", "TERM-INT"],
)
async def test_serve_stops_on_two_signals(signals: list[signal.Signals], expected: int) -> None:
    with anyio.fail_after(DEADLINE):
        async with await start(["serve"]) as process:
            child = Child(process)
            await child.until("listening")
            port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/", child.out)[1])  # type: ignore[index]
            # A client that never answers the close: the first signal's close then
            # lasts the server's close timeout, and the second one lands during it.
            async with await anyio.connect_tcp("127.0.0.1", port) as silent:
                await _handshake(silent, port)
                child.send(signals[0])
                # The server's close frame to the client: the first signal's close began.
                assert (await silent.receive())[0] == 0x88
                child.send(signals[1])
                code, errors, took = await child.end()
    assert code == expected, errors
    assert_interrupted("serve", code, errors)
    assert took < 0.5  # the server's close timeout is 1 s


async def _handshake(stream: anyio.abc.SocketStream, port: int) -> None:
    """A WebSocket client's opening handshake (RFC 6455 section 4.1), its answer read."""
    key = base64.b64encode(os.urandom(16))
    await stream.send(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (port, key)
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await stream.receive()
    assert answer.startswith(b"HTTP/1.1 101"), answer


# -- short commands: the last resort in main() ---------------------------------------------

#: Runs fsm-live's main() with SIGINT's default handler (KeyboardInterrupt), as in a
#: terminal: a child of a test run started in the background by a non-interactive
#: shell inherits SIGINT ignored (POSIX), and Python then leaves it ignored.
_MAIN_WITH_CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from fsm_live.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def open_once_read(fifo: Path, process: anyio.abc.Process) -> int:
    """The write end of ``fifo``, opened once ``process`` opened it for reading (until
    then a non-blocking open fails with ENXIO): the command is past its arguments and
    reading its input, and waits in read() for data that never comes.  No event tells
    when a FIFO gets a reader, so this checks every 5 ms."""
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        assert process.returncode is None, "the command ended before reading its input"
        await anyio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.parametrize("command", ["check", "diagram"])
async def test_a_command_blocked_reading_a_fifo_is_interrupted(
    tmp_path: Path, command: str
) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)  # its reader waits for a writer, then for data: never any
    with anyio.fail_after(DEADLINE):
        async with await anyio.open_process(
            [sys.executable, "-c", _MAIN_WITH_CTRL_C, command, str(fifo)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as process:
            child = Child(process)
            writer = await open_once_read(fifo, process)  # the Ctrl-C lands in the command
            try:
                child.send(signal.SIGINT)
                code, errors, _ = await child.end()
            finally:
                os.close(writer)
    assert_interrupted(command, code, errors)


def test_a_ctrl_c_while_the_command_line_loads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``fsm-live`` script's entry point guards the import of the command line."""
    import builtins

    from fsm_live.__main__ import run

    real_import = builtins.__import__

    def interrupted_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "fsm_live.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    monkeypatch.delitem(sys.modules, "fsm_live.cli", raising=False)
    assert run() == 130
    assert capsys.readouterr().err == "fsm-live: interrupted\n"
