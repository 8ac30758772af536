"""``fsm-live connect`` end to end: the CLI as a subprocess against a local server.

The websockets server runs in the test's own event loop (asyncio); the CLI runs
as ``python -m fsm_live`` in a child process, started with anyio so the server
keeps serving while the test waits for the child.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from servers import ServerSide, echo, websocket_server
from terminal import terminal_screen
from test_cli import FakeTerminal

from fsm_live._runtime.stats import Stats
from fsm_live._runtime.trace import TRACE_KEYS, read_trace
from fsm_live.cli import main
from fsm_live.cli.views.connection import MESSAGE_CHARS, plain_message, plain_stats

pytestmark = pytest.mark.timeout(60)

#: Each test's own deadline; the child is also bounded by it.
DEADLINE = 30.0
COMMAND = (sys.executable, "-m", "fsm_live", "connect")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env() -> dict[str, str]:
    """The test's environment without FSM_LIVE_* settings (they would change Config)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}


def _edges(trace: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["from"], line["to"]) for line in trace]


def _check_lines(trace: list[dict[str, Any]]) -> None:
    """Exactly the five keys, in order; ``t`` from 0 and never going back."""
    times = [line["t"] for line in trace]
    assert times == sorted(times)
    assert times[0] >= 0.0
    for line in trace:
        assert tuple(line) == TRACE_KEYS
        assert isinstance(line["t"], float)
        assert all(isinstance(line[key], str) for key in TRACE_KEYS[1:])


@pytest.mark.anyio
async def test_duration_against_an_echo_server_exits_0_with_a_full_trace(tmp_path: Path) -> None:
    trace_path = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE):
        async with websocket_server() as server:
            done = await anyio.run_process(
                [*COMMAND, server.url, "--trace", str(trace_path), "--duration", "1"],
                check=False,
                env=_env(),
            )
    assert done.returncode == 0, done.stderr.decode()
    trace = read_trace(trace_path)
    _check_lines(trace)
    assert _edges(trace)[:2] == [("DISCONNECTED", "CONNECTING"), ("CONNECTING", "CONNECTED")]
    assert trace[-1]["to"] == "CLOSED"
    assert 1.0 <= trace[-1]["t"] < 5.0  # closed after --duration 1
    assert server.attempts.count == 1
    # Not a terminal: one plain line per transition, then a summary line.
    lines = done.stdout.decode().splitlines()
    assert len(lines) == len(trace) + 1
    assert lines[-1].startswith("summary ")
    assert "CLOSED; 1 connects, 0 reconnects; failures: none;" in lines[-1]
    assert "messages 0 in, 0 out" in lines[-1]


@pytest.mark.anyio
async def test_a_server_refusing_with_403_ends_failed_exit_3_after_one_attempt(
    tmp_path: Path,
) -> None:
    trace_path = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE):
        async with websocket_server(reject=lambda number, headers: (403, {})) as server:
            done = await anyio.run_process(
                [*COMMAND, server.url, "--trace", str(trace_path), "--duration", "5"],
                check=False,
                env=_env(),
            )
    assert done.returncode == 3, done.stderr.decode()
    assert server.attempts.count == 1
    assert "FAILED" in done.stderr.decode()
    assert "403" in done.stderr.decode()
    trace = read_trace(trace_path)
    _check_lines(trace)
    # FAILED for good (exit 3); leaving the connection then closes it.
    assert _edges(trace) == [
        ("DISCONNECTED", "CONNECTING"),
        ("CONNECTING", "FAILED"),
        ("FAILED", "CLOSED"),
    ]


@pytest.mark.anyio
async def test_the_endpoint_down_and_back_is_logged_by_default(tmp_path: Path) -> None:
    """docs/fleet.md and docs/troubleshooting.md: without -v, one WARNING when the
    endpoint goes down and one INFO line when it is back; nothing at DEBUG, no
    transition lines (stdout shows them)."""
    config = tmp_path / "f.toml"
    config.write_text("endpoint_failures = 1\n", encoding="utf-8")
    with anyio.fail_after(DEADLINE):
        # The first handshake answered 503 (an endpoint failure): down; the probe: back.
        async with websocket_server(
            reject=lambda number, headers: (503, {}) if number == 1 else None
        ) as server:
            done = await anyio.run_process(
                [*COMMAND, server.url, "--config", str(config), "--duration", "4"],
                check=False,
                env=_env(),
            )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stderr.decode().splitlines()
    assert [line.split()[2:4] for line in lines] == [
        ["WARNING", "fsm_live:"],
        ["INFO", "fsm_live:"],
    ], lines
    assert " is down (1 failure in a row)" in lines[0]
    assert re.search(r" is back \(known down for \d+\.\d s\)$", lines[1]), lines[1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["ws://127.0.0.1:9/", "--heartbeat-timeout", "1", "--heartbeat-interval", "5"],
            "--heartbeat-timeout: must be greater than --heartbeat-interval (5), got 1",
        ),
        (
            ["ws://127.0.0.1:9/", "--backoff-initial", "10", "--backoff-max", "1"],
            "--backoff-max: must be >= --backoff-initial (10), got 1",
        ),
        (["ws://127.0.0.1:9/", "--backoff-max", "0.5"], "--backoff-max: must be >= initial (1"),
        (
            ["ws://127.0.0.1:9/", "--trace", "{tmp}/no/such/dir/t.jsonl"],
            "--trace {tmp}/no/such/dir/t.jsonl: No such file or directory",
        ),
        (["ws://127.0.0.1:9/", "--trace", "{tmp}"], "--trace {tmp}: Is a directory"),
        (["http://127.0.0.1:9/"], "expected a ws:// or wss:// URL"),
        (
            ["ws://127.0.0.1:9/a b"],
            "url: 'ws://127.0.0.1:9/a b': a space at position 19 is not allowed in a URL",
        ),
        (["ws://alice@127.0.0.1:9/"], "username provided without password"),
        (["ws://127.0.0.1:9/", "--protocol", "nope"], "invalid choice: 'nope'"),
        (["ws://127.0.0.1:9/", "--duration", "-1"], "expected a positive number of seconds"),
    ],
    ids=[
        "heartbeats",
        "backoff",
        "backoff-max-below-the-default",
        "trace-dir-missing",
        "trace-is-a-directory",
        "http-url",
        "space-in-url",
        "user-without-password",
        "protocol",
        "duration",
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    # Port 9 (discard) is never dialled: the arguments are refused first.
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    done = subprocess.run(
        [*COMMAND, *arguments],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=_env(),
        check=False,
    )
    assert done.returncode == 2
    assert message.format(tmp=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr
    if "--protocol" not in arguments and "--duration" not in arguments:  # not argparse's
        assert done.stderr.startswith("fsm-live connect: error: ")
        assert done.stderr.count("\n") == 1
    assert done.stdout == ""


@pytest.fixture
def no_fsm_live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("FSM_LIVE_"):
            monkeypatch.delenv(name)


FIXED_WITH_INITIAL = "not a parameter of the 'fixed' policy (its parameters: seconds)"


@pytest.mark.usefixtures("no_fsm_live_env")
@pytest.mark.parametrize(
    ("toml", "env", "flags", "message"),
    [
        (
            '[backoff]\npolicy = "fixed"\ninitial = 1\n',
            {},
            [],
            f"{{config}}: backoff.initial: {FIXED_WITH_INITIAL}",
        ),
        (
            "",
            {"FSM_LIVE_BACKOFF_POLICY": "fixed", "FSM_LIVE_BACKOFF_INITIAL": "1"},
            [],
            f"FSM_LIVE_BACKOFF_INITIAL (initial): {FIXED_WITH_INITIAL}",
        ),
        (
            '[backoff]\npolicy = "fixed"\n',
            {},
            ["--backoff-initial", "2"],
            f"--backoff-initial: {FIXED_WITH_INITIAL}",
        ),
        (
            "heartbeat_timeout = 20\n",
            {},
            ["--heartbeat-interval", "30"],
            "{config}: heartbeat_timeout: must be greater than --heartbeat-interval (30), got 20",
        ),
        (
            "",
            {"FSM_LIVE_HEARTBEAT_TIMEOUT": "20"},
            ["--heartbeat-interval", "30"],
            "FSM_LIVE_HEARTBEAT_TIMEOUT (heartbeat_timeout): must be greater than "
            "--heartbeat-interval (30), got 20",
        ),
    ],
    ids=[
        "file-fixed-with-initial",
        "env-fixed-with-initial",
        "flag-fixed-with-initial",
        "file-and-flag",
        "env-and-flag",
    ],
)
def test_a_bad_setting_is_named_where_it_was_set(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    toml: str,
    env: dict[str, str],
    flags: list[str],
    message: str,
) -> None:
    config = tmp_path / "f.toml"
    config.write_text(toml, encoding="utf-8")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["connect", "ws://127.0.0.1:9/", "--config", str(config), *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"fsm-live connect: error: {message.format(config=config)}\n"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)], ids=["SIGINT", "SIGTERM"]
)
async def test_a_signal_closes_cleanly(tmp_path: Path, signum: signal.Signals, code: int) -> None:
    trace_path = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE):
        async with websocket_server() as server:
            process = await anyio.open_process(
                [*COMMAND, server.url, "--trace", str(trace_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(),
            )
            async with process:
                assert process.stdout is not None
                output = b""
                # Wait for the plain line of CONNECTING -> CONNECTED.
                while b"-> CONNECTED" not in output:
                    chunk = await process.stdout.receive()
                    output += chunk
                process.send_signal(signum)
                returncode = await process.wait()
                assert process.stderr is not None
                errors = b"".join([chunk async for chunk in process.stderr])
    # Ctrl-C: exit 130 and one line; SIGTERM: the graceful stop, exit 0 and nothing.
    assert returncode == code, errors.decode()
    assert errors.decode() == ("fsm-live connect: interrupted\n" if code else "")
    trace = read_trace(trace_path)
    _check_lines(trace)
    assert _edges(trace) == [
        ("DISCONNECTED", "CONNECTING"),
        ("CONNECTING", "CONNECTED"),
        ("CONNECTED", "CLOSED"),
    ]
    assert server.attempts.count == 1


#: Three times message_concurrency: unread, they would stop the reader.
PUSHES = 300


async def push_then_echo(side: ServerSide) -> None:
    for number in range(PUSHES):
        await side.send(f"push {number}")
    await echo(side)


@pytest.mark.anyio
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
async def test_every_message_is_taken_and_counted(tmp_path: Path, verbose: bool) -> None:
    trace_path = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE):
        async with websocket_server(push_then_echo) as server:
            done = await anyio.run_process(
                [
                    *COMMAND,
                    server.url,
                    "--trace",
                    str(trace_path),
                    "--duration",
                    "3",
                    "--heartbeat-interval",
                    "0.5",
                    "--heartbeat-timeout",
                    "2",
                    *(["-v"] if verbose else []),
                ],
                check=False,
                env=_env(),
            )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # Never lost: a reader stopped by unread messages would have missed its pongs.
    assert _edges(read_trace(trace_path)) == [
        ("DISCONNECTED", "CONNECTING"),
        ("CONNECTING", "CONNECTED"),
        ("CONNECTED", "CLOSED"),
    ]
    lines = done.stdout.decode().splitlines()
    assert lines[-1].startswith("summary ")
    assert f"messages {PUSHES} in, 0 out" in lines[-1]
    # -v: each message as a line, in order (and DEBUG logs on stderr, as before).
    messages = [line.partition("  message: ")[2] for line in lines if "  message: " in line]
    assert messages == ([f"push {number}" for number in range(PUSHES)] if verbose else [])
    assert (b" DEBUG " in done.stderr) is verbose
    assert b"transitions.core" not in done.stderr  # the library's "Executed callback" lines


# -- rendering --------------------------------------------------------------------------


def test_plain_message_lines() -> None:
    assert plain_message("hello", at=12.5, started_at=10.0) == "    2.500s  message: hello"
    assert plain_message("a\nb", 1, 0).endswith("message: a\\nb")  # one line each
    assert plain_message({"id": "é", "n": 1}, 1, 0).endswith('message: {"id": "é", "n": 1}')
    assert plain_message(b"\x00", 1, 0).endswith("message: b'\\x00'")
    long = plain_message("x" * 2000, 1, 0)
    assert long.endswith(f"{'x' * MESSAGE_CHARS}... (2000 characters)")


def test_plain_stats_line() -> None:
    stats = Stats(
        state="CONNECTED",
        time_in_state=1.0,
        transitions={},
        connects=2,
        reconnects=1,
        failures={"lost": 1},
        consecutive_failures=0,
        last_error="lost: closed 1006",
        heartbeats_sent=5,
        heartbeats_acked=4,
        heartbeat_rtt=0.01,
        messages_in=42,
        messages_out=3,
        duplicates_dropped=2,
        token_refreshes=0,
        token_refresh_failures=0,
        cookie_refreshes=0,
        buffered=0,
        tasks_alive=3,
    )
    assert plain_stats(stats, now=30.0, started_at=10.0) == (
        "summary    20.000s  CONNECTED; 2 connects, 1 reconnects; failures: lost 1; "
        "heartbeats 4/5 acked; messages 42 in, 3 out, 2 duplicates dropped"
    )


@pytest.mark.usefixtures("no_fsm_live_env")
def test_a_log_line_during_the_live_status_leaves_it_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a terminal, the endpoint's WARNING (down) and ERROR (down past
    outage_error_after) show whole above the live status, which stays one panel
    under one title."""
    columns, rows = 200, 40
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", str(rows))
    monkeypatch.setenv("TERM", "xterm")  # a terminal that draws in place (not "dumb")
    terminal = FakeTerminal()  # stdout and stderr: one screen
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    config = tmp_path / "f.toml"
    config.write_text("endpoint_failures = 1\noutage_error_after = 0.1\n", encoding="utf-8")
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: refused
        url = f"ws://127.0.0.1:{bound.getsockname()[1]}/"
        code = main(["connect", url, "--config", str(config), "--duration", "3"])
    assert code == 0
    screen = terminal_screen(terminal.getvalue(), columns, rows)
    (warning,) = [line for line in screen if " WARNING fsm_live: " in line]
    (error,) = [line for line in screen if " ERROR fsm_live: " in line]
    assert "is down (1 failure in a row)" in warning
    assert warning.endswith("one probing every 1 s or so")
    assert error.endswith("(1 connection waiting for it)")
    (title,) = [n for n, line in enumerate(screen) if f"fsm-live {url}" in line]
    assert screen.index(warning) < screen.index(error) < title
    bottom = next(n for n in range(title, rows) if screen[n].lstrip().startswith("╰"))
    assert all(line.lstrip()[0] in "╭│╰" for line in screen[title : bottom + 1])
