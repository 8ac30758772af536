"""Secrets in the places a person looks (docs/security.md, kind 5 of issue 17).

A URL may carry a password (``ws://user:pass@host/``) and a token in its query
(``?token=...``).  Wherever a person or a log sees a URL it is shown by
:func:`fsm_live.transport.url.safe_url`: scheme, host, port and path only.  Here:
the live status ``fsm-live connect`` draws on a terminal (rendered in a real
pseudo-terminal), that view rendered alone, and the reprs of a fleet's accounts
and of the fleet file.
"""

from __future__ import annotations

import io
import os
import pty
import sys
from pathlib import Path

import anyio
import pytest
from rich.console import Console
from servers import websocket_server

from fsm_live._runtime.stats import Stats
from fsm_live.cli.views.connection import status_panel
from fsm_live.cli.views.styles import StateStyles
from fsm_live.fleet import FleetConfig
from fsm_live.spec import Spec, default_spec_path

pytestmark = pytest.mark.timeout(60)

PASSWORD = "hunter2-pw"
TOKEN = "s3cr3t-query-token"
SECRETS = (PASSWORD, TOKEN)


def _url(port: int) -> str:
    return f"ws://alice:{PASSWORD}@127.0.0.1:{port}/feed?token={TOKEN}&v=2"


def _read_all(fd: int) -> bytes:
    """Everything written to the pseudo-terminal until its last writer is gone."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_5_the_live_status_on_a_terminal_shows_no_password_or_token(
    anyio_backend: str,
) -> None:
    """``fsm-live connect`` on a terminal (a pseudo-terminal: its stdout isatty) draws
    its live status with the URL's scheme, host, port and path, never the password
    or the query.  Today the panel's title is the URL as typed."""
    with anyio.fail_after(30):
        async with websocket_server() as server:
            url = _url(server.port)
            controller, terminal = pty.openpty()
            env = {k: v for k, v in os.environ.items() if not k.startswith("FSM_LIVE_")}
            env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
            try:
                process = await anyio.open_process(
                    [sys.executable, "-m", "fsm_live", "connect", url, "--duration", "1"],
                    stdin=terminal,
                    stdout=terminal,
                    stderr=terminal,
                    env=env,
                )
                os.close(terminal)
                terminal = -1
                async with process:
                    shown = await anyio.to_thread.run_sync(_read_all, controller)
                    code = await process.wait()
            finally:
                os.close(controller)
                if terminal != -1:
                    os.close(terminal)
    text = shown.decode(errors="replace")
    assert code == 0, text
    assert f"ws://127.0.0.1:{server.port}/feed" in text  # the panel was drawn
    for secret in SECRETS:
        assert secret not in text


def test_5_the_status_panel_renders_the_url_without_secrets() -> None:
    spec = Spec.from_path(default_spec_path())
    stats = Stats(
        state="CONNECTED",
        time_in_state=1.0,
        transitions={},
        connects=1,
        reconnects=0,
        failures={},
        consecutive_failures=0,
        last_error="",
        heartbeats_sent=0,
        heartbeats_acked=0,
        heartbeat_rtt=None,
        messages_in=0,
        messages_out=0,
        duplicates_dropped=0,
        token_refreshes=0,
        token_refresh_failures=0,
        cookie_refreshes=0,
        buffered=0,
        tasks_alive=0,
    )
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(status_panel(_url(8765), stats, [], 0.0, styles=StateStyles(spec)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "fsm-live ws://127.0.0.1:8765/feed" in text
    for secret in SECRETS:
        assert secret not in text


def test_5_reprs_of_a_fleet_file_and_its_accounts_hide_the_url_secrets(
    tmp_path: Path,
) -> None:
    """docs/fleet.md: an Account's repr shows no cookie or token; nor a password or
    a query in its URL (nor does the FleetConfig's, which holds them)."""
    path = tmp_path / "fleet.toml"
    path.write_text(f'[accounts.alice]\nurl = "{_url(8765)}"\n', encoding="utf-8")
    config = FleetConfig.load(path, env={})
    for shown in (repr(config), repr(config.accounts[0]), str(config.accounts[0])):
        assert "ws://127.0.0.1:8765/feed" in shown
        for secret in SECRETS:
            assert secret not in shown
    assert config.accounts[0].url == _url(8765)  # kept whole for dialling
