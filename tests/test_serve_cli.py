"""``fsm-live serve``, and ``fsm-live connect --protocol lwp`` against it.

End-to-end tests run both commands as child processes (``python -m fsm_live``);
argument errors are checked in-process through ``fsm_live.cli.main``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

from fsm_live._runtime.trace import read_trace
from fsm_live.cli import main

pytestmark = pytest.mark.timeout(30)

DEADLINE = 20.0
FSM_LIVE = (sys.executable, "-m", "fsm_live")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}
    return {**env, **extra}


class Lines:
    """The stdout of a child process, line by line."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self._text = TextReceiveStream(process.stdout)
        self._buffer = ""
        self.seen: list[str] = []

    async def next(self) -> str:
        while "\n" not in self._buffer:
            self._buffer += await self._text.receive()
        line, self._buffer = self._buffer.split("\n", 1)
        self.seen.append(line)
        return line

    async def until(self, text: str) -> str:
        while text not in (line := await self.next()):
            pass
        return line

    async def rest(self) -> str:
        """Everything left, up to the end of the stream."""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                self._buffer += await self._text.receive()
        rest, self._buffer = self._buffer, ""
        return rest


@pytest.mark.anyio
async def test_connect_lwp_against_serve_with_a_cookies_file(tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("unb=4242\ncna=abc\n", encoding="utf-8")  # one cookie per line works
    trace = tmp_path / "t.jsonl"
    with anyio.fail_after(DEADLINE):
        # The fault waits for the client whenever it comes (the next registration is
        # refused), so the client's start-up, seconds on a busy machine, races nothing.
        async with await anyio.open_process(
            [*FSM_LIVE, "serve", "--push-interval", "0.1", "--faults", "0s refuse-reg"], env=_env()
        ) as serve:
            lines = Lines(serve)
            first = await lines.next()
            assert first.startswith("lwp server listening on ws://127.0.0.1:")
            url = first.split()[4]
            assert (await lines.next()) == "   scheduled: 0s refuse-reg x1"
            done = await anyio.run_process(
                [
                    *FSM_LIVE,
                    "connect",
                    url,
                    "--protocol",
                    "lwp",
                    "--cookies-file",
                    str(cookies),
                    "--heartbeat-interval",
                    "0.2",
                    "--heartbeat-timeout",
                    "5",  # the server is another process: a busy machine may pause it
                    "--duration",
                    "3",
                    "--trace",
                    str(trace),
                ],
                check=False,
                env=_env(),
            )
            assert "fault: refuse-reg x1" in await lines.until("fault:")
            serve.send_signal(signal.SIGINT)
            assert await serve.wait() == 130  # Ctrl-C (SIGTERM exits 0: see below)
            assert await lines.rest() == ""  # Ctrl-C: "interrupted" on stderr, nothing else
            assert serve.stderr is not None
            errors = (await serve.stderr.receive()).decode()
            assert errors == "fsm-live serve: interrupted\n"
    assert done.returncode == 0, done.stderr.decode()
    transitions = read_trace(trace)
    edges = [(line["from"], line["trigger"], line["to"]) for line in transitions]
    # The refused registration is an authentication failure: the cookies get a new token
    # and the retry, at once, registers.
    assert edges == [
        ("DISCONNECTED", "start", "CONNECTING"),
        ("CONNECTING", "connect_failed", "RECONNECTING"),
        ("RECONNECTING", "retry", "CONNECTING"),
        ("CONNECTING", "opened", "CONNECTED"),
        ("CONNECTED", "close", "CLOSED"),
    ]
    assert transitions[1]["reason"] == "auth: registration rejected (code 401)"
    rows = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    [stats] = [row for row in rows if row.get("kind") == "stats"]
    # Cookies are refreshed by age (cookie_refresh_interval, 3600 s), counted from the
    # start on the event loop's clock: none within the 3 s run (before, their age counted
    # from the clock's zero, and every connection refreshed them at once).
    assert stats["cookie_refreshes"] == 0


@pytest.mark.anyio
async def test_serve_stops_cleanly_on_sigterm() -> None:
    with anyio.fail_after(DEADLINE):
        async with await anyio.open_process([*FSM_LIVE, "serve"], env=_env()) as serve:
            lines = Lines(serve)
            await lines.until("listening")
            serve.send_signal(signal.SIGTERM)
            assert await lines.next() == "SIGTERM: stopping"
            assert await serve.wait() == 0


def test_bad_faults_exit_2_naming_the_token_and_its_position(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--faults", "1s drop; 5s blackhol 2s"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "fsm-live serve: error: --faults:1:13: unknown fault (expected "
        "one of: drop, blackhole, close, reject, refuse-reg, restart), got "
        "'blackhol'\n"
    )


def test_the_protocol_doc_shows_the_real_faults_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/protocol.md's ``--faults`` mistake is the command's real output."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text("utf-8")
    match = re.search(r"```text\n\$ fsm-live (serve .*)\n(fsm-live serve: error: .*)\n```", doc)
    assert match is not None, "docs/protocol.md has no --faults error example"
    assert main(shlex.split(match.group(1))) == 2
    assert capsys.readouterr().err == match.group(2) + "\n"


def test_a_faults_file_that_cannot_be_read_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "faults.bin"
    binary.write_bytes(b"\xff\xfe1s drop")
    bad = tmp_path / "faults.txt"
    bad.write_text("1s drop\n5s nope\n", encoding="utf-8")
    for argument, message in (
        (f"@{binary}", f"--faults: {binary}: not UTF-8 text (byte 0)"),
        (f"@{tmp_path / 'missing'}", f"--faults: cannot read {tmp_path / 'missing'}: No such file"),
        (f"@{bad}", f"--faults: {bad}:2:4: unknown fault"),
    ):
        assert main(["serve", "--faults", argument]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"fsm-live serve: error: {message}"), err
        assert err.count("\n") == 1


def test_a_taken_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--duration", "1"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "env", "message"),
    [
        (
            [],
            {},
            "--protocol lwp: needs the account's cookies: --cookies-file PATH or the "
            "FSM_LIVE_COOKIES environment variable",
        ),
        (["--cookies-file", "{tmp}/missing.txt"], {}, "--cookies-file: cannot read "),
        (
            ["--cookies-file", "{tmp}/no-unb.txt"],
            {},
            "--cookies-file {tmp}/no-unb.txt: the 'unb' cookie is required (found: cna, sid)",
        ),
        (
            [],
            {"FSM_LIVE_COOKIES": "cna=1"},
            "FSM_LIVE_COOKIES: the 'unb' cookie is required (found: cna)",
        ),
        (
            ["--token-url", "ftp://x/?key=s3cr3t"],
            {"FSM_LIVE_COOKIES": "unb=1"},
            "--token-url 'ftp://x/?key=***': expected an http:// or https:// URL",
        ),
    ],
)
def test_connect_lwp_credential_errors_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    arguments: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.delenv("FSM_LIVE_COOKIES", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "no-unb.txt").write_text("cna=secret-value; sid=other-secret", encoding="utf-8")
    argv = [
        "connect",
        "ws://127.0.0.1:9/",
        "--protocol",
        "lwp",
        *(arg.format(tmp=tmp_path) for arg in arguments),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1
    assert "secret" not in err
    assert "s3cr3t" not in err


def test_cookie_flags_belong_to_lwp(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connect", "ws://127.0.0.1:9/", "--cookies-file", "x"]) == 2
    assert "--cookies-file: is only used with --protocol lwp" in capsys.readouterr().err
