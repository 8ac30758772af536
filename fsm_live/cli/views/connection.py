"""Rich renderables and plain-text lines for the CLI (one of two modules importing rich).

Everything here is a pure function of data (a :class:`~fsm_live._runtime.stats.Stats`
snapshot, transition records), so tests render into a ``StringIO`` console at a
fixed width and compare text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fsm_live._runtime.stats import Stats
from fsm_live.cli.views.styles import StateStyles
from fsm_live.core.effects import TransitionRecord
from fsm_live.transport.redaction import peer_text
from fsm_live.transport.url import safe_url

__all__ = (
    "MESSAGE_CHARS",
    "plain_message",
    "plain_stats",
    "plain_transition",
    "stats_table",
    "status_panel",
)

#: A message line shows at most this many characters of the message.
MESSAGE_CHARS: Final = 500


def _rtt(stats: Stats) -> str:
    return "-" if stats.heartbeat_rtt is None else f"{stats.heartbeat_rtt * 1000:.1f} ms"


def plain_transition(record: TransitionRecord, started_at: float) -> str:
    """One line for a transition, for logs and non-terminal output."""
    reason = f" ({record.reason})" if record.reason else ""
    return (
        f"{record.at - started_at:9.3f}s  {record.source} -> {record.dest}"
        f"  [{record.trigger}]{reason}"
    )


def plain_stats(stats: Stats, now: float, started_at: float) -> str:
    """One line with a connection's figures at ``now``: state, connects, failures,
    heartbeats and messages (for non-terminal output)."""
    failures = ", ".join(f"{k} {v}" for k, v in sorted(stats.failures.items()))
    return (
        f"summary {now - started_at:9.3f}s  {stats.state}; {stats.connects} connects, "
        f"{stats.reconnects} reconnects; failures: {failures or 'none'}; "
        f"heartbeats {stats.heartbeats_acked}/{stats.heartbeats_sent} acked; "
        f"messages {stats.messages_in} in, {stats.messages_out} out, "
        f"{stats.duplicates_dropped} duplicates dropped"
    )


def plain_message(message: Any, at: float, started_at: float) -> str:
    """One line for a message received at ``at``: text as it is, anything else as
    JSON (``repr`` for what JSON cannot show), cut at :data:`MESSAGE_CHARS`
    characters with line breaks and other control characters escaped (the peer
    chose it: it must not write lines of its own or drive the terminal), as
    :func:`~fsm_live.transport.redaction.peer_text` does."""
    if isinstance(message, str):
        text = message
    elif isinstance(message, bytes | bytearray):
        text = repr(bytes(message))
    else:
        try:
            text = json.dumps(message, ensure_ascii=False, default=repr)
        except (ValueError, RecursionError):  # nested too deeply, or a cycle
            text = peer_text(message, MESSAGE_CHARS)
    return f"{at - started_at:9.3f}s  message: {peer_text(text, MESSAGE_CHARS)}"


def stats_table(stats: Stats, *, styles: StateStyles) -> Table:
    """The connection's counters as a two-column table."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    state = Text(stats.state, style=styles(stats.state))
    rows: list[tuple[str, str | Text]] = [
        ("state", state),
        ("time in state", f"{stats.time_in_state:.1f} s"),
        ("heartbeat rtt", _rtt(stats)),
        ("heartbeats", f"{stats.heartbeats_acked}/{stats.heartbeats_sent} acked"),
        ("connects", str(stats.connects)),
        ("reconnects", str(stats.reconnects)),
        ("failures", ", ".join(f"{k} {v}" for k, v in sorted(stats.failures.items())) or "0"),
        ("last error", stats.last_error or "-"),
        (
            "messages",
            f"{stats.messages_in} in, {stats.messages_out} out, "
            f"{stats.duplicates_dropped} duplicates dropped, {stats.buffered} buffered",
        ),
        ("tasks alive", str(stats.tasks_alive)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def status_panel(
    url: str,
    stats: Stats,
    recent: Iterable[TransitionRecord],
    started_at: float,
    *,
    styles: StateStyles,
) -> RenderableType:
    """The live status of ``fsm-live connect``: counters and the latest transitions.

    ``url`` is shown without its user info and query (:func:`safe_url`): a terminal
    is read over shoulders and recorded."""
    timeline = Text()
    for record in recent:
        timeline.append(plain_transition(record, started_at) + "\n", style=styles(record.dest))
    table = stats_table(stats, styles=styles)
    return Panel(
        Group(table, Text(""), timeline or Text("(no transitions yet)")),
        title=f"fsm-live {safe_url(url)}",
        title_align="left",
    )
