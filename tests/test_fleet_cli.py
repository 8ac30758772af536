"""``fsm-live fleet`` end to end against a local websockets echo server and the local lwp
server (100 lwp accounts), and its output.

The servers run in the test's event loop (asyncio, 127.0.0.1, port 0); the CLI
runs as ``python -m fsm_live fleet`` in a child process (bounded by the test's
deadline), except the dashboard test, which runs :func:`run_fleet` in-process
on a fake terminal.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from servers import ServerSide, echo, websocket_server
from terminal import terminal_screen
from test_docs import block
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from fsm_live._runtime.trace import TRACE_KEYS, read_trace
from fsm_live.cli import Output, main
from fsm_live.cli._signals import Stop
from fsm_live.cli.connect import configure_logging
from fsm_live.cli.fleet import run_fleet, trace_file_name
from fsm_live.cli.views.fleet import KEY_COLUMN_MAX, key_column
from fsm_live.config import Config
from fsm_live.fleet import Fleet
from fsm_live.fleet.config import Account, FleetConfig
from fsm_live.lwp.faults import parse_schedule
from fsm_live.lwp.server import LwpServer
from fsm_live.spec import Spec

pytestmark = pytest.mark.timeout(60)

DEADLINE = 30.0
SPEC_FILE = Path(__file__).resolve().parent.parent / "specs" / "connection.yaml"
COMMAND = (sys.executable, "-m", "fsm_live", "fleet")
ACCOUNTS = 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _echo(connection: ServerConnection) -> None:
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass


@asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A websockets echo server on 127.0.0.1 (port 0); yields its ws:// URL."""
    async with serve(_echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


#: The fleet files' heartbeat interval (s).
HEARTBEAT_INTERVAL = 0.5


def fleet_file(tmp_path: Path, url: str, keys: list[str]) -> Path:
    lines = ["[defaults]", f"heartbeat_interval = {HEARTBEAT_INTERVAL}", "heartbeat_timeout = 2"]
    for key in keys:
        lines += [f'[accounts."{key}"]', f'url = "{url}"']
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}


def keys() -> list[str]:
    return [f"acct{i:02d}" for i in range(ACCOUNTS - 1)] + ["team/ops"]


# -- the command ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_duration_with_20_accounts_writes_lines_and_traces(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    with anyio.fail_after(DEADLINE):
        async with echo_server() as url:
            path = fleet_file(tmp_path, url, keys())
            started = anyio.current_time()
            done = await anyio.run_process(
                [*COMMAND, str(path), "--duration", "2", "--trace-dir", str(traces)],
                check=False,
                env=_env(),
            )
            took = anyio.current_time() - started
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    # --duration 2 ended the run, and not before.  Its end is not timed: the child's
    # start-up alone took up to 8 s with both cores busy (the deadline bounds the run).
    assert took >= 2.0
    lines = done.stdout.decode().splitlines()
    for key in keys():
        mine = [line.split()[1:] for line in lines if line.startswith(f"{key} ")]
        assert [line[1:4] for line in mine] == [
            ["DISCONNECTED", "->", "CONNECTING"],
            ["CONNECTING", "->", "CONNECTED"],
            ["CONNECTED", "->", "CLOSED"],
        ], mine
    assert any(line.startswith(f"all {ACCOUNTS} connections CONNECTED after ") for line in lines)
    summary = lines[-1]
    assert summary.startswith("summary ")
    assert f"{ACCOUNTS} connections: CLOSED {ACCOUNTS}; 0 crashed; " in summary
    assert f"{3 * ACCOUNTS} transitions" in summary
    assert "failures: none" in summary
    acked, sent = summary.partition("heartbeats ")[2].partition(" acked")[0].split("/")

    assert sorted(p.name for p in traces.iterdir()) == sorted(trace_file_name(k) for k in keys())
    assert (traces / "team%2Fops.jsonl").exists()
    connected_for = []
    for key in keys():
        trace = read_trace(traces / trace_file_name(key))
        assert [(line["from"], line["to"], line["trigger"]) for line in trace] == [
            ("DISCONNECTED", "CONNECTING", "start"),
            ("CONNECTING", "CONNECTED", "opened"),
            ("CONNECTED", "CLOSED", "close"),
        ]
        assert tuple(trace[0]) == TRACE_KEYS
        assert trace[0]["t"] >= 0.0
        assert trace[0]["reason"] == "started"
        connected_for.append(trace[2]["t"] - trace[1]["t"])
    # The summary adds up the members' heartbeats: a member CONNECTED for two heartbeat
    # intervals (its trace says how long) sent one at least, however late its event loop
    # ran; how many exactly is counted in virtual time (tests/test_fleet.py).
    assert 0 < int(acked) <= int(sent)
    assert int(sent) >= sum(span > 2 * HEARTBEAT_INTERVAL for span in connected_for) > 0

    # The traces conform to the spec, and the report reads them (docs/diagnostics.md).
    with anyio.fail_after(DEADLINE):
        verified = await anyio.run_process(
            [sys.executable, "-m", "fsm_live", "verify", str(SPEC_FILE), str(traces)],
            check=False,
            env=_env(),
        )
        report = await anyio.run_process(
            [sys.executable, "-m", "fsm_live", "report", str(traces)], check=False, env=_env()
        )
    assert verified.returncode == 0, verified.stderr.decode()
    assert verified.stdout.decode().count(": ok (3 transitions, 1 run)") == ACCOUNTS
    assert report.returncode == 0, report.stderr.decode()
    text = report.stdout.decode()
    assert text.startswith(f"fsm-live report: {ACCOUNTS} connections, {ACCOUNTS} runs")
    availability = text.partition("availability")[2].split()[0]
    # CONNECTED from its first dial to the close; first dials are paced (200 a second
    # by default), so the last member waits ACCOUNTS / 200 s in DISCONNECTED first.
    assert float(availability) > 100 * (1 - (ACCOUNTS / 200 + 0.5) / 2.0)
    assert "heartbeats" in text
    assert "team/ops" in text


async def read_until(process: anyio.abc.Process, text: str) -> str:
    """The child's stdout up to the chunk in which ``text`` appeared."""
    assert process.stdout is not None
    seen = ""
    async for chunk in process.stdout:
        seen += chunk.decode()
        if text in seen:
            return seen
    raise AssertionError(f"stdout ended without {text!r}: {seen[-500:]!r}")


async def read_to_the_end(process: anyio.abc.Process) -> str:
    """The rest of the child's stdout."""
    assert process.stdout is not None
    return "".join([chunk.decode() async for chunk in process.stdout])


LWP_ACCOUNTS = 100
CANARY = "s3cr3t-cookie-6502"


def lwp_fleet_file(tmp_path: Path, server: LwpServer) -> tuple[Path, dict[str, str]]:
    """A fleet file of LWP_ACCOUNTS lwp accounts with distinct ``unb`` cookies (and a
    canary each): even ones in cookies files, odd ones in environment variables, every
    tenth with an explicit token_url.  Returns the file and the variables to set."""
    (tmp_path / "cookies").mkdir()
    # The open timeout is not what this is about: 100 accounts opening at once took up
    # to 3.4 s in all with both cores busy, so one attempt gets 15 s.
    lines = ["[defaults]", "open_timeout = 15"]
    env: dict[str, str] = {}
    for i in range(LWP_ACCOUNTS):
        key = f"lwp{i:03d}"
        lines += [f"[accounts.{key}]", f'url = "{server.url}"', 'protocol = "lwp"']
        cookies = f"unb={700000 + i}; cna={CANARY}-{i}"
        if i % 2 == 0:  # one cookie per line
            (tmp_path / "cookies" / f"{key}.txt").write_text(
                cookies.replace("; ", "\n"), encoding="utf-8"
            )
            lines.append(f'cookies_file = "cookies/{key}.txt"')
        else:
            env[f"FLEET_TEST_COOKIES_{i}"] = cookies
            lines.append(f'cookies_env = "FLEET_TEST_COOKIES_{i}"')
        if i % 10 == 0:
            lines.append(f'token_url = "{server.token_url}"')
    path = tmp_path / "lwp-fleet.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, env


@pytest.mark.anyio
async def test_100_lwp_accounts_against_the_local_lwp_server(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    all_connected = f"all {LWP_ACCOUNTS} connections CONNECTED after "
    with anyio.fail_after(DEADLINE):
        async with LwpServer(push_interval=1.0) as server:
            path, env = lwp_fleet_file(tmp_path, server)
            async with await anyio.open_process(
                [*COMMAND, str(path), "--trace-dir", str(traces)],
                env=_env() | env,
                stderr=subprocess.PIPE,
            ) as process:
                # Ended once every account is CONNECTED (SIGTERM: the graceful stop, exit
                # 0), not after a duration: how long 100 accounts take to connect is the
                # machine's load, not the command's.
                out = await read_until(process, all_connected)
                process.send_signal(signal.SIGTERM)
                out += await read_to_the_end(process)
                code = await process.wait()
                assert process.stderr is not None
                errors = b"".join([chunk async for chunk in process.stderr])
            seen = await server.wait_until(lambda stats: stats.connections_open == 0)
    assert code == 0, errors.decode()
    assert errors == b""
    assert (seen.tokens_issued, seen.handshakes) == (LWP_ACCOUNTS, LWP_ACCOUNTS)
    assert (seen.registrations, seen.registrations_rejected) == (LWP_ACCOUNTS, 0)
    assert len([line for line in out.splitlines() if line.startswith(all_connected)]) == 1
    summary = out.splitlines()[-1]
    assert f"{LWP_ACCOUNTS} connections: CLOSED {LWP_ACCOUNTS}; 0 crashed; " in summary
    assert f" {3 * LWP_ACCOUNTS} transitions " in summary
    assert "failures: none" in summary

    keys = [f"lwp{i:03d}" for i in range(LWP_ACCOUNTS)]
    assert sorted(p.name for p in traces.iterdir()) == [trace_file_name(k) for k in keys]
    for key in keys:
        edges = [(line["from"], line["to"]) for line in read_trace(traces / f"{key}.jsonl")]
        assert edges[:2] == [("DISCONNECTED", "CONNECTING"), ("CONNECTING", "CONNECTED")], key
        assert edges[-1][1] == "CLOSED", key
    written = out + "".join(p.read_text(encoding="utf-8") for p in traces.iterdir())
    assert CANARY not in written
    assert "700000" not in written  # nor a unb


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)], ids=["INT", "TERM"]
)
async def test_a_signal_closes_everything(tmp_path: Path, signum: int, code: int) -> None:
    with anyio.fail_after(DEADLINE):
        async with echo_server() as url:
            path = fleet_file(tmp_path, url, keys()[:5])
            async with await anyio.open_process(
                [*COMMAND, str(path)], env=_env(), stderr=subprocess.PIPE
            ) as process:
                assert process.stdout is not None
                assert process.stderr is not None
                seen = ""
                async for chunk in process.stdout:
                    seen += chunk.decode()
                    if "all 5 connections CONNECTED" in seen:
                        break
                process.send_signal(signum)
                async for chunk in process.stdout:
                    seen += chunk.decode()
                assert await process.wait() == code
                errors = b"".join([chunk async for chunk in process.stderr]).decode()
    # Ctrl-C: exit 130 and one line; SIGTERM: the graceful stop, exit 0 and nothing.
    assert errors == ("fsm-live fleet: interrupted\n" if code else "")
    assert seen.count("CONNECTED -> CLOSED") == 5
    assert "5 connections: CLOSED 5; 0 crashed" in seen.splitlines()[-1]


#: Three times message_concurrency, to each account: unread, they would stop its reader.
PUSHES = 300


async def push_then_echo(side: ServerSide) -> None:
    for number in range(PUSHES):
        await side.send(f"push {number}")
    await echo(side)


@pytest.mark.anyio
async def test_every_member_takes_its_messages(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with websocket_server(push_then_echo) as server:
            path = fleet_file(tmp_path, server.url, ["a", "b", "c"])
            done = await anyio.run_process(
                [*COMMAND, str(path), "--duration", "3"], check=False, env=_env()
            )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    # Never lost: a reader stopped by unread messages would have missed its heartbeats.
    assert not [line for line in lines if "RECONNECTING" in line]
    assert f"messages {3 * PUSHES} in, 0 out" in lines[-1]


@pytest.mark.anyio
async def test_a_refused_account_does_not_hold_up_the_others(tmp_path: Path) -> None:
    # A bound socket that does not listen: connecting to it is refused.
    with socket.socket() as bound, anyio.fail_after(DEADLINE):
        bound.bind(("127.0.0.1", 0))
        gone_url = f"ws://127.0.0.1:{bound.getsockname()[1]}/"
        async with echo_server() as url:
            path = fleet_file(tmp_path, url, ["a", "b"])
            text = path.read_text(encoding="utf-8")
            path.write_text(text + f'[accounts.gone]\nurl = "{gone_url}"\n', encoding="utf-8")
            done = await anyio.run_process(
                [*COMMAND, str(path), "--duration", "1.5"], check=False, env=_env()
            )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert out.count("CONNECTING -> CONNECTED") == 2
    assert "gone " in out
    assert "CONNECTING -> RECONNECTING  [connect_failed] (network: " in out
    assert "3 connections: CLOSED 3; 0 crashed" in out.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.toml"], "missing.toml: cannot read"),
        (["bad.toml"], "bad.toml: accounts.alice.protocol: unknown protocol 'smoke'"),
        (["good.toml", "--trace-dir", "a-file"], "--trace-dir a-file: File exists"),
        (["good.toml", "--trace-dir", "a-file/sub"], "--trace-dir a-file/sub: Not a directory"),
        (["good.toml", "--trace-dir", "traces"], "--trace-dir traces/alice.jsonl: Is a directory"),
        (
            ["no-unb.toml"],
            "no-unb.toml: accounts.alice.cookies_file: the 'unb' cookie is required (found: cna)",
        ),
        (
            ["bad-port.toml"],
            "bad-port.toml: accounts.alice.url: expected a port from 1 to 65535, "
            "got '127.0.0.1:99999'",
        ),
        (["no-scheme.toml"], "no-scheme.toml: accounts.alice.url: expected a ws:// or wss:// URL"),
        (
            ["fixed.toml"],
            "fixed.toml: defaults.backoff.initial: not a parameter of the 'fixed' "
            "policy (its parameters: seconds)",
        ),
    ],
    ids=[
        "missing-file",
        "bad-protocol",
        "trace-dir-is-a-file",
        "trace-dir-in-a-file",
        "trace-file-is-a-directory",
        "lwp-without-unb",
        "bad-port",
        "no-scheme",
        "backoff-parameter-of-another-policy",
    ],
)
def test_bad_config_exits_2_with_a_clear_message(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "bad.toml").write_text(
        '[accounts.alice]\nurl = "ws://127.0.0.1:1/"\nprotocol = "smoke"\n', encoding="utf-8"
    )
    (tmp_path / "good.toml").write_text(
        '[accounts.alice]\nurl = "ws://127.0.0.1:1/"\n', encoding="utf-8"
    )
    (tmp_path / "bad-port.toml").write_text(
        '[accounts.alice]\nurl = "ws://127.0.0.1:99999/"\n', encoding="utf-8"
    )
    (tmp_path / "no-scheme.toml").write_text(
        '[accounts.alice]\nurl = "127.0.0.1:18080"\n', encoding="utf-8"
    )
    (tmp_path / "fixed.toml").write_text(
        '[defaults.backoff]\npolicy = "fixed"\ninitial = 1\n'
        '[accounts.alice]\nurl = "ws://127.0.0.1:1/"\n',
        encoding="utf-8",
    )
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    (tmp_path / "traces" / "alice.jsonl").mkdir(parents=True)
    (tmp_path / "no-unb.toml").write_text(
        '[accounts.alice]\nurl = "ws://127.0.0.1:1/"\nprotocol = "lwp"\ncookies_file = "c.txt"\n',
        encoding="utf-8",
    )
    (tmp_path / "c.txt").write_text(f"cna={CANARY}\n", encoding="utf-8")
    done = subprocess.run(
        [*COMMAND, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        env=_env(),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("fsm-live fleet: error: ")
    assert done.stderr.count("\n") == 1
    assert message in done.stderr
    assert CANARY not in done.stderr


@pytest.mark.anyio
async def test_a_url_the_connection_refuses_is_one_line(tmp_path: Path) -> None:
    # FleetConfig.load checks URLs itself; this is what the connection refuses beyond that.
    path = tmp_path / "fleet.toml"
    account = Account(key="a", url="http://127.0.0.1:1/", protocol="ping", config=Config())
    stdout, stderr = io.StringIO(), io.StringIO()
    with anyio.fail_after(DEADLINE):
        code = await run_fleet(FleetConfig(path, (account,)), None, 1.0, Output(stdout, stderr))
    assert code == 2
    assert stderr.getvalue().startswith(f"fsm-live fleet: error: {path}: accounts.a: url: ")
    assert stderr.getvalue().count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--duration", "-1"], "expected a positive number of seconds"),
        (["--reconnects-per-second", "0"], "--reconnects-per-second: expected a positive number"),
        (["--reconnects-per-second", "many"], "expected a number, got 'many'"),
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    done = subprocess.run(
        [*COMMAND, "fleet.toml", *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        env=_env(),
    )
    assert done.returncode == 2
    assert message in done.stderr


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _last_frame(screen: str) -> list[str]:
    """The last frame a live display drew: the lines from the last top border on, the
    terminal's escape sequences (colours, cursor moves) left out."""
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).splitlines()
    top = max(i for i, line in enumerate(lines) if line.lstrip().startswith("╭"))
    return lines[top:]


def _counts(frame: list[str]) -> dict[str, int]:
    """The dashboard's members per state (its first two rows), by column."""
    names, counts = (line.strip("│ ").split() for line in frame[1:3])
    return dict(zip(names, map(int, counts), strict=True))


@pytest.mark.anyio
async def test_dashboard_on_a_terminal(tmp_path: Path) -> None:
    spec = Spec.default()
    (final,) = spec.final_states
    stdout, stderr = FakeTerminal(), io.StringIO()
    with anyio.fail_after(DEADLINE):
        async with echo_server() as url:
            config = FleetConfig.load(fleet_file(tmp_path, url, ["a", "b"]))
            code = await run_fleet(config, None, 1.5, Output(stdout, stderr))
    assert code == 0
    screen = stdout.getvalue()
    assert "fsm-live fleet fleet.toml · running" in screen
    assert "every connection is well" in screen
    assert not any(line.startswith(("a ", "b ")) for line in screen.splitlines())  # not plain
    (success,) = spec.success_states
    assert f"-> {success}" in screen  # the recent transitions
    # The last frame is the fleet once closed, never a frame drawn before the close.
    frame = _last_frame(screen)
    assert "fsm-live fleet fleet.toml · closed" in frame[0]
    counts = _counts(frame)
    assert counts[final] == 2
    assert sum(counts.values()) == 2
    recent = frame.index(next(line for line in frame if "recent transitions" in line))
    assert f"-> {final}" in frame[recent + 1]  # newest first
    assert stderr.getvalue() == ""


class WatchedTerminal(FakeTerminal):
    """A fake terminal whose output can be awaited."""

    def __init__(self) -> None:
        super().__init__()
        self._written = anyio.Event()

    def write(self, text: str) -> int:
        self._written.set()
        return super().write(text)

    async def showing(self, text: str, times: int = 1) -> None:
        """Return once ``text`` was written ``times`` times."""
        while self.getvalue().count(text) < times:
            self._written = anyio.Event()
            await self._written.wait()


@pytest.mark.anyio
async def test_a_log_line_during_the_dashboard_leaves_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ERROR of an endpoint down past outage_error_after, logged while the dashboard
    is drawn on the same terminal, shows whole above it; no frame is shifted, none
    leaves a stale line (before, the line was written after the frame's last line and
    every later frame was drawn one line lower, under a stale header)."""
    columns, rows = 200, 40
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", str(rows))
    monkeypatch.setenv("TERM", "xterm")  # a terminal that draws in place (not "dumb")
    terminal = WatchedTerminal()  # stdout and stderr: one screen
    configure_logging(False, terminal)
    stop = Stop()
    with socket.socket() as bound, anyio.fail_after(DEADLINE):
        bound.bind(("127.0.0.1", 0))  # bound, not listening: refused
        path = tmp_path / "fleet.toml"
        path.write_text(
            "[defaults]\nendpoint_failures = 1\noutage_error_after = 0.5\n"
            f'[accounts.gone]\nurl = "ws://127.0.0.1:{bound.getsockname()[1]}/"\n',
            encoding="utf-8",
        )

        async def stop_after_the_error() -> None:
            await terminal.showing("has been down for")
            frames = terminal.getvalue().count("fleet.toml · running")
            await terminal.showing("fleet.toml · running", frames + 2)  # two frames after it
            stop._set(signal.SIGTERM)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(stop_after_the_error)
            code = await run_fleet(
                FleetConfig.load(path), None, None, Output(terminal, terminal), stop=stop
            )
    assert code == 0
    screen = terminal_screen(terminal.getvalue(), columns, rows)
    (error,) = [line for line in screen if "has been down for" in line]
    assert " ERROR fsm_live: ws://127.0.0.1:" in error
    assert error.endswith("(1 connection waiting for it)")
    titles = [n for n, line in enumerate(screen) if "fsm-live fleet fleet.toml" in line]
    assert len(titles) == 1, screen  # no stale header of an earlier frame
    (title,) = titles
    assert screen.index(error) < title
    assert "· closed" in screen[title]
    bottom = next(n for n in range(title, rows) if screen[n].lstrip().startswith("╰"))
    frame = screen[title : bottom + 1]
    assert all(line.lstrip()[0] in "╭│╰" for line in frame), frame  # no line cut into it
    assert _counts(frame)["CLOSED"] == 1


@pytest.mark.anyio
async def test_piped_lines_keep_the_times_in_one_column(tmp_path: Path) -> None:
    """Not a terminal: the key column is as wide as the fleet's longest key (at most
    KEY_COLUMN_MAX), a longer key is cut head…tail, and every transition and summary
    line has its time in the same column (before: ``probe     0.003s`` above
    ``carol@example.org     0.020s``)."""
    long_key = "tenant-with-a-very-long-name-0042"
    keys = ["probe", "carol@example.org", long_key]
    stdout, stderr = io.StringIO(), io.StringIO()
    with anyio.fail_after(DEADLINE):
        async with echo_server() as url:
            config = FleetConfig.load(fleet_file(tmp_path, url, keys))
            code = await run_fleet(config, None, 1.0, Output(stdout, stderr))
    assert code == 0, stderr.getvalue()
    width = KEY_COLUMN_MAX
    lines = [line for line in stdout.getvalue().splitlines() if not line.startswith("all ")]
    assert {line[: width + 1].rstrip() for line in lines} == {
        "probe",
        "carol@example.org",
        "tenant-with-a-v…ame-0042",
        "summary",
    }
    for line in lines:
        assert re.fullmatch(r" +\d+\.\d{3}s", line[width + 1 : width + 11]), line


def test_the_key_column_is_the_longest_key_within_bounds() -> None:
    assert key_column(["a", "bb"]) == len("summary")  # summary lines line up too
    assert key_column(["probe", "carol@example.org"]) == len("carol@example.org")
    assert key_column(["x" * 60]) == KEY_COLUMN_MAX
    assert key_column([]) == len("summary")


def test_the_python_example_of_the_docs_is_the_file_and_prints_its_output() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "fleet.md").read_text(encoding="utf-8")
    code = block(text, "<!-- example:begin docs/examples/fleet.py -->", "<!-- example:end -->")
    path = root / "docs" / "examples" / "fleet.py"
    assert code == path.read_text(encoding="utf-8"), "docs/examples/fleet.py differs from the doc"
    result = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
        env=_env(),
    )
    assert result.stdout == block(text, "<!-- output:begin -->", "<!-- output:end -->")
    assert result.stderr == ""


def test_the_docs_show_the_usage_and_every_flag_of_fleet_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/fleet.md's usage block is ``fsm-live fleet --help``'s, at 80 columns, and
    its flag table has a row for every option the help lists."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as caught:
        main(["fleet", "--help"])
    assert caught.value.code == 0
    help_text = capsys.readouterr().out
    usage = help_text.partition("\n\n")[0] + "\n"
    text = (Path(__file__).resolve().parent.parent / "docs" / "fleet.md").read_text("utf-8")
    doc_usage = re.search(r"```text\n(usage: fsm-live fleet .*?)```", text, re.S)
    assert doc_usage is not None, "docs/fleet.md has no usage block"
    assert doc_usage.group(1) == usage
    table = text.partition(doc_usage.group(0))[2].partition("\n\n\n")[0]
    options = re.findall(r"^  (--[\w-]+(?: [^\s,]+)?)", help_text, re.M)
    assert len(options) > 5
    missing = [o for o in options if o != "--help" and f"`{o}`" not in table]
    assert missing == [], f"docs/fleet.md's flag table lacks {missing}"


def test_trace_file_names_are_safe_and_distinct() -> None:
    assert trace_file_name("alice") == "alice.jsonl"
    assert trace_file_name("a.b-c_d") == "a.b-c_d.jsonl"
    assert trace_file_name("team/ops") == "team%2Fops.jsonl"
    assert trace_file_name("..") == "%2E..jsonl"
    assert trace_file_name("é") == "%C3%A9.jsonl"
    assert trace_file_name("%41") != trace_file_name("A")
    long_a, long_b = trace_file_name("x" * 300 + "a"), trace_file_name("x" * 300 + "b")
    assert long_a != long_b
    assert len(long_a) <= 210
    assert "/" not in trace_file_name("/etc/passwd")


@pytest.mark.anyio
async def test_an_lwp_account_of_a_fleet_file_that_goes_failed_recovers(tmp_path: Path) -> None:
    """docs/fleet.md: a fleet file gives no escalation, yet an lwp account that goes
    FAILED after max_failures retries by itself after failed_retry_delay."""
    spec = Spec.default()
    (failed,) = spec.failed_states
    (success,) = spec.success_states
    (tmp_path / "a.cookies").write_text("unb=4242\n", encoding="utf-8")
    seen: list[tuple[str, str]] = []
    # The server closes every connection and refuses new ones for 2 s: two refused
    # dials (max_failures 2) send the account FAILED, then it recovers and connects.
    schedule = parse_schedule("0.3s restart 2s")
    with anyio.fail_after(DEADLINE):
        async with LwpServer(schedule=schedule, push_interval=None) as server:
            path = tmp_path / "fleet.toml"
            path.write_text(
                "[defaults]\nmax_failures = 2\nfailed_retry_delay = 1\n"  # the least allowed
                "[defaults.backoff]\npolicy = 'fixed'\nseconds = 0.1\n"
                f"[accounts.a]\nurl = '{server.url}'\nprotocol = 'lwp'\n"
                "cookies_file = 'a.cookies'\n",
                encoding="utf-8",
            )
            (account,) = FleetConfig.load(path).accounts
            assert "escalation" not in account.connection_options()
            async with Fleet() as fleet:
                connection = await fleet.add(
                    account.key, account.url, **account.connection_options()
                )
                fleet.on_transition(lambda key, record: seen.append((record.source, record.dest)))
                await connection.wait_for(failed, raise_on_failed=False)
                await connection.wait_for(success, raise_on_failed=False)
    assert any(dest == failed for _, dest in seen), seen
    left = next(i for i, (source, _) in enumerate(seen) if source == failed)
    assert seen[left][1] not in spec.final_states  # FAILED -> retrying, by itself
    assert any(dest == success for _, dest in seen[left:])
