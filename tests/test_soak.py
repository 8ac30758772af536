"""Soak: ``fsm-live fleet`` of 100 lwp accounts against ``fsm-live serve``, both as
users run them (child processes, plain output, real sockets on 127.0.0.1), with
the server killed twice.

The story (about 110 s):

1. healthy: the fleet connects, then runs until its summary line at 20 s; no
   account may see a ``lost`` (or any transition but its first two), and the
   accounts must receive well over 100 messages each (the server pushes 3 items
   every 0.2 s to each);
2. short outage: the server is killed (SIGKILL) and started again on the same
   port 3 s later; every account must be CONNECTED again, and still CONNECTED
   when the window of ``SHORT_RECOVERY`` s after the server's return ends;
3. long outage: killed again, back after 25 s; every account must be CONNECTED
   again before the fleet's ``--duration`` ends (at least ``LONG_RECOVERY`` s
   after the server's return; the requirement is 90 s);
4. the fleet exits 0, and each account's trace ends with CONNECTED -> CLOSED
   [close]: CONNECTED when the fleet closed, none FAILED.

The figures (time from the server's return to all CONNECTED, lost transitions
while healthy, messages per account) are printed: ``pytest -s`` shows them, and
a failure's report includes them.

The CLI is ``$TEST_FSM_LIVE_CLI`` (.ci/run sets it to the user venv's
``fsm-live``, installed by ``pip install .`` without extras); unset, the
``fsm-live`` of the venv running pytest.  (Not an ``FSM_LIVE_*`` name: those
configure fsm_live, which refuses unknown ones.)  Deselect with ``-m "not slow"``.

The server's port is below the kernel's ephemeral range, so that no client's
reconnect can take it while the server is down.  The fleet's own summary lines
give messages for the whole fleet only, so "per account" is their average.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ACCOUNTS = 100
PUSH_INTERVAL = 0.2  # 3 items per push: 15 messages a second per account
HEALTHY = 20.0  # the fleet's second summary line (every 10 s) ends the healthy stretch
SHORT_OUTAGE = 3.0
SHORT_RECOVERY = 15.0  # from the server's return to the next kill
LONG_OUTAGE = 25.0
#: From the server's return to the fleet's end, at least.  The product's requirement
#: is 90 s after a 25 s outage with the default timings; with these compressed ones
#: (retry from FAILED after 3 s, backoff up to 2 s) a few seconds are expected.
LONG_RECOVERY = 40.0
#: Messages per account by the summary at HEALTHY s: half of what the server pushes
#: (3 items every PUSH_INTERVAL s), and well over the 100 asked for.
MIN_MESSAGES = 150
#: The fleet's --duration: the story plus slack for the steps that wait for output.
DURATION = HEALTHY + SHORT_OUTAGE + SHORT_RECOVERY + LONG_OUTAGE + LONG_RECOVERY + 3.0
STARTUP = 20.0  # the server listening, every account CONNECTED the first time
POLL = 0.1

#: Compressed timings, so that an outage of seconds exercises backoff, max_failures
#: and FAILED as one of minutes would with the defaults.
DEFAULTS = """\
[defaults]
heartbeat_interval = 1
heartbeat_timeout = 3
stability_window = 2
open_timeout = 2
close_timeout = 1
# Being added to Config on main (a FAILED connection retries after this long);
# until then the fleet refuses this file ("unknown key") and this test fails.
failed_retry_delay = 3
[defaults.backoff]
policy = "exponential"
initial = 0.2
maximum = 2
"""


def cli() -> list[str]:
    """The ``fsm-live`` command under test: ``$TEST_FSM_LIVE_CLI``, else the one of
    the venv running the tests (else ``python -m fsm_live``)."""
    chosen = os.environ.get("TEST_FSM_LIVE_CLI")
    if chosen:
        assert Path(chosen).is_file(), f"TEST_FSM_LIVE_CLI={chosen}: no such file"
        return [chosen]
    beside = Path(sys.executable).parent / "fsm-live"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "fsm_live"]


def child_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}


def port_outside_the_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range.  While the server is down,
    the clients' reconnects take ephemeral ports; one could take the server's own
    port (a TCP self-connect) and keep the restarted server from listening."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port found below {low}")


def write_fleet_file(directory: Path, url: str) -> tuple[Path, list[str]]:
    """ACCOUNTS lwp accounts of ``url``, each with its own cookies file (unb)."""
    (directory / "cookies").mkdir()
    keys = [f"lwp{i:03d}" for i in range(ACCOUNTS)]
    lines = [DEFAULTS]
    for i, key in enumerate(keys):
        (directory / "cookies" / f"{key}.txt").write_text(
            f"unb={900_000 + i}; cna=soak-{i}\n", encoding="utf-8"
        )
        lines += [
            f"[accounts.{key}]",
            f'url = "{url}"',
            'protocol = "lwp"',
            f'cookies_file = "cookies/{key}.txt"',
        ]
    path = directory / "fleet.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, keys


class Tail:
    """The complete lines appended to a file since the last :meth:`lines` call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._partial = ""

    def lines(self) -> list[str]:
        if self._file is None:
            if not self.path.exists():
                return []
            self._file = self.path.open(encoding="utf-8")
        text = self._partial + self._file.read()
        *complete, self._partial = text.split("\n")
        return complete

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Traces:
    """Every account's transition rows (``--trace-dir``), read as the fleet appends them
    (the failure and stats records between them are left out)."""

    def __init__(self, directory: Path, keys: list[str]) -> None:
        self.tails = {key: Tail(directory / f"{key}.jsonl") for key in keys}
        self.rows: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}

    def refresh(self) -> None:
        for key, tail in self.tails.items():
            rows = (json.loads(line) for line in tail.lines() if line.strip())
            self.rows[key] += [row for row in rows if "kind" not in row]

    def state(self, key: str) -> str:
        rows = self.rows[key]
        return rows[-1]["to"] if rows else "DISCONNECTED"

    def not_in(self, state: str) -> dict[str, str]:
        """The accounts not in ``state`` now, with the state they are in."""
        return {key: self.state(key) for key in self.rows if self.state(key) != state}

    def marks(self) -> dict[str, int]:
        """How many rows each account has: rows after a mark are newer."""
        return {key: len(rows) for key, rows in self.rows.items()}

    def since(self, marks: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
        return {key: rows[marks[key] :] for key, rows in self.rows.items()}

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


class Server:
    """``fsm-live serve --port PORT`` as a child process, killed with SIGKILL."""

    def __init__(self, command: list[str], port: int, directory: Path) -> None:
        self.command, self.port, self.directory = command, port, directory
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> float:
        """Start it; return the (monotonic) time it printed that it listens."""
        self.starts += 1
        out = self.directory / f"serve-{self.starts}.out"
        err = self.directory / f"serve-{self.starts}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    *self.command,
                    "serve",
                    "--port",
                    str(self.port),
                    "--push-interval",
                    str(PUSH_INTERVAL),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=child_env(),
            )
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if "listening on" in out.read_text(encoding="utf-8", errors="replace"):
                return time.monotonic()
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(
            f"fsm-live serve (start {self.starts}, port {self.port}) did not listen "
            f"(exit {self.process.poll()}): {err.read_text(errors='replace')[-2000:]}"
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@contextmanager
def killed_at_exit(*items: Server | subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for item in items:
            if isinstance(item, Server):
                item.kill()
            elif item.poll() is None:
                item.kill()
                item.wait(timeout=10)


def some(keys: list[str], limit: int = 6) -> str:
    """The first ``limit`` keys, and how many more."""
    more = len(keys) - limit
    return ", ".join(keys[:limit]) + (f" and {more} more" if more > 0 else "")


def grouped(accounts: dict[str, str], groups: int = 4) -> str:
    """Accounts by what was seen of them, the commonest first: one line per kind."""
    kinds: dict[str, list[str]] = {}
    for key, what in accounts.items():
        kinds.setdefault(what, []).append(key)
    ordered = sorted(kinds.items(), key=lambda item: -len(item[1]))
    lines = [f"\n    {len(keys)} x {what}: {some(keys)}" for what, keys in ordered[:groups]]
    if len(ordered) > groups:
        lines.append(f"\n    ... and {len(ordered) - groups} other kinds")
    return "".join(lines)


def edge(row: dict[str, Any]) -> str:
    reason = f" ({row['reason']})" if row.get("reason") else ""
    return f"{row['from']} -> {row['to']} [{row['trigger']}]{reason}"


SUMMARY_AT = re.compile(r"^summary\s+(?P<at>[\d.]+)s\s")
MESSAGES_IN = re.compile(r"\bmessages (?P<messages>\d+) in\b")


def test_fleet_survives_server_outages(tmp_path: Path) -> None:
    command = cli()
    port = port_outside_the_ephemeral_range()
    url = f"ws://127.0.0.1:{port}/"
    path, keys = write_fleet_file(tmp_path, url)
    server = Server(command, port, tmp_path)
    trace_dir = tmp_path / "traces"
    traces = Traces(trace_dir, keys)
    fleet_out, fleet_err = tmp_path / "fleet.out", tmp_path / "fleet.err"
    out_tail = Tail(fleet_out)
    summaries: list[tuple[float, int | None, str]] = []  # (at, messages in, line)
    problems: list[str] = []
    figures: dict[str, str] = {"CLI": " ".join(command), "accounts": str(ACCOUNTS)}

    server.start()
    with fleet_out.open("wb") as stdout, fleet_err.open("wb") as stderr:
        fleet = subprocess.Popen(
            [
                *command,
                "fleet",
                str(path),
                "--trace-dir",
                str(trace_dir),
                "--duration",
                f"{DURATION:g}",
            ],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=child_env(),
        )
    fleet_started = time.monotonic()

    def fleet_gone() -> str:
        return (
            f"fsm-live fleet exited {fleet.returncode} early, "
            f"{time.monotonic() - fleet_started:.1f} s after its start; stderr: "
            f"{fleet_err.read_text(errors='replace')[-2000:]}"
        )

    def poll() -> None:
        traces.refresh()
        for line in out_tail.lines():
            if found := SUMMARY_AT.match(line):
                messages = MESSAGES_IN.search(line)
                summaries.append(
                    (
                        float(found["at"]),
                        None if messages is None else int(messages["messages"]),
                        line,
                    )
                )

    def wait_until(done: Callable[[], bool], until: float) -> float | None:
        """Poll until ``done()`` or the monotonic time ``until``; when done, the time."""
        while True:
            poll()
            if done():
                return time.monotonic()
            if fleet.poll() is not None:
                pytest.fail(fleet_gone())
            if time.monotonic() >= until:
                return None
            time.sleep(POLL)

    def all_connected() -> bool:
        return not traces.not_in("CONNECTED")

    def outage(number: int, seconds: float) -> tuple[dict[str, int], set[str], float]:
        """Kill the server, start it again after ``seconds``; (marks, the accounts
        CONNECTED at the kill, the server's return)."""
        poll()
        marks = traces.marks()
        connected = set(traces.rows) - set(traces.not_in("CONNECTED"))
        server.kill()
        wait_until(lambda: False, time.monotonic() + seconds)
        back = server.start()
        figures[f"outage {number}"] = f"{seconds:g} s (SIGKILL, restarted on port {port})"
        return marks, connected, back

    def recovery(number: int, back: float, window_end: float) -> bool:
        """Whether every account was CONNECTED at once before ``window_end``."""
        connected = wait_until(all_connected, window_end)
        if connected is None:
            window = window_end - back
            figures[f"recovery {number}"] = f"not all CONNECTED within {window:.1f} s"
            missing = {
                key: f"{state}, last {edge(traces.rows[key][-1])}"
                for key, state in traces.not_in("CONNECTED").items()
            }
            problems.append(
                f"outage {number}: {len(missing)} of {ACCOUNTS} accounts not "
                f"CONNECTED {window:.1f} s after the server's return:"
                f"{grouped(missing)}"
            )
            return False
        figures[f"recovery {number}"] = (
            f"all {ACCOUNTS} CONNECTED {connected - back:.1f} s after the server's return"
        )
        return True

    def seen_outage(number: int, marks: dict[str, int], connected: set[str]) -> None:
        """Every account CONNECTED at the kill noticed it (the story's own check): it
        left CONNECTED, lost (the first few) or straight to waiting for the endpoint
        (the rest, once the endpoint is known down: a wait, not a failure)."""
        blind = [
            key
            for key, rows in traces.since(marks).items()
            if key in connected and not any(row["from"] == "CONNECTED" for row in rows)
        ]
        if blind:
            problems.append(
                f"outage {number}: {len(blind)} accounts CONNECTED at the kill "
                f"never saw it (never left CONNECTED): {some(blind)}"
            )
        entered = Counter(row["to"] for rows in traces.since(marks).values() for row in rows)
        figures[f"outage {number} transitions"] = (
            ", ".join(f"into {state} {count}" for state, count in sorted(entered.items())) or "none"
        )

    try:
        with killed_at_exit(fleet, server):
            # 1. healthy: every account CONNECTED, then nothing but pushes until 20 s.
            first = wait_until(all_connected, fleet_started + STARTUP)
            assert first is not None, (
                f"not every account CONNECTED {STARTUP:g} s after the fleet's start:"
                f"{grouped(traces.not_in('CONNECTED'))}"
            )
            figures["first connect"] = f"all CONNECTED {first - fleet_started:.1f} s after start"
            assert wait_until(
                lambda: any(at >= HEALTHY - 1 for at, _, _ in summaries),
                fleet_started + HEALTHY + 10,
            ), f"no summary line at {HEALTHY:g} s in the fleet's output: {summaries}"
            poll()
            healthy_end = time.monotonic()
            extra = {key: rows[2:] for key, rows in traces.rows.items() if len(rows) > 2}
            lost = sum(row["trigger"] == "lost" for rows in traces.rows.values() for row in rows)
            figures["healthy stretch"] = (
                f"{healthy_end - fleet_started:.1f} s; lost "
                f"transitions {lost}; accounts with a transition "
                f"after their first CONNECTED {len(extra)}"
            )
            if extra:
                first_t = sorted(rows[0]["t"] for rows in extra.values())
                problems.append(
                    f"healthy stretch: {len(extra)} of {ACCOUNTS} accounts left CONNECTED "
                    f"with the server up ({lost} lost transitions; the first at "
                    f"{first_t[0]:.1f}-{first_t[-1]:.1f} s of the accounts' traces); their "
                    f"first such transition:"
                    f"{grouped({key: edge(rows[0]) for key, rows in extra.items()})}"
                )
            at, messages, line = summaries[-1]
            if messages is None:
                problems.append(f"the fleet's summary line shows no messages count: {line}")
            else:
                per_account = messages / ACCOUNTS
                figures["messages"] = (
                    f"{messages} in by {at:.1f} s: {per_account:.0f} per "
                    f"account on average (the CLI shows fleet totals only); "
                    f"at each summary: "
                    f"{', '.join(f'{n} by {a:.0f} s' for a, n, _ in summaries)}"
                )
                if per_account <= MIN_MESSAGES:
                    problems.append(
                        f"healthy stretch: {per_account:.0f} messages per account "
                        f"on average by {at:.1f} s, expected over {MIN_MESSAGES} "
                        f"(fleet total {messages}): {line}"
                    )

            # 2. short outage.
            marks, connected, back = outage(1, SHORT_OUTAGE)
            recovered = recovery(1, back, back + SHORT_RECOVERY)
            wait_until(lambda: False, back + SHORT_RECOVERY)
            seen_outage(1, marks, connected)
            if recovered and (dropped := traces.not_in("CONNECTED")):
                problems.append(
                    f"outage 1: {len(dropped)} accounts not CONNECTED "
                    f"{SHORT_RECOVERY:g} s after the server's return (they "
                    f"were, then left again): {some(sorted(dropped))}"
                )

            # 3. long outage, then until the fleet's end.
            marks, connected, back = outage(2, LONG_OUTAGE)
            fleet_end = fleet_started + DURATION
            figures["long recovery window"] = f"{fleet_end - back:.1f} s"
            recovery(2, back, fleet_end - 1.0)
            seen_outage(2, marks, connected)

            # 4. the fleet closes and exits.
            try:
                code = fleet.wait(timeout=max(0.0, fleet_end - time.monotonic()) + 30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"fsm-live fleet still running 30 s after its --duration {DURATION:g}")
            poll()
    finally:
        traces.close()
        out_tail.close()
        print(f"\nsoak figures ({tmp_path}):")
        for name, value in figures.items():
            print(f"  {name}: {value}")

    err = fleet_err.read_text(errors="replace")
    if code != 0:
        problems.append(f"fsm-live fleet exited {code}; stderr: {err[-2000:]}")
    at_close: dict[str, str] = {}
    for key, rows in traces.rows.items():
        last = rows[-1] if rows else None
        if last is None or (last["to"], last["trigger"]) != ("CLOSED", "close"):
            at_close[key] = f"trace ends {edge(last) if last else 'empty'}"
        elif last["from"] != "CONNECTED":
            before = rows[-2] if len(rows) > 1 else None
            at_close[key] = f"{last['from']} when closed, after {edge(before) if before else '?'}"
    if at_close:
        failed = sum(what.startswith("FAILED") for what in at_close.values())
        problems.append(
            f"at the close: {len(at_close)} of {ACCOUNTS} accounts not CONNECTED "
            f"({failed} FAILED):{grouped(at_close)}"
        )
    final = summaries[-1][2] if summaries else "(no summary line)"
    if f" CLOSED {ACCOUNTS}; 0 crashed;" not in final:
        problems.append(
            f'the fleet\'s last summary is not "CLOSED {ACCOUNTS}; 0 crashed": '
            f"{final}; stderr: {err[-2000:]}"
        )
    assert not problems, "\n".join(["the soak found:", *problems])
