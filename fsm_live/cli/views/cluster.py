"""What ``fsm-live fleet --coordinator`` shows of the cluster: this worker and its accounts,
every member and how many accounts it holds.

Pure functions of a coordinator's figures (its status, members and holds), as
the other views are; worker ids and account keys come from configuration and
other hosts: always :class:`~rich.text.Text`, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from fsm_live.cluster import MemberView

__all__ = ("cluster_table", "plain_cluster")


def plain_cluster(
    worker: str, status: str, held: int, accounts: int, members: Sequence[MemberView]
) -> str:
    """One line, as ``cluster: worker w1 active, 50 of 150 accounts here; members: w1 50,
    w2 50 (draining)``."""
    listed = ", ".join(
        f"{m.info.worker} {m.accounts}{' (draining)' if m.info.draining else ''}" for m in members
    )
    return (
        f"cluster: worker {worker} {status}, {held} of {accounts} accounts here; "
        f"members: {listed or 'none known'}"
    )


def cluster_table(
    worker: str, status: str, held: int, accounts: int, members: Sequence[MemberView]
) -> RenderableType:
    """The members, one row each (this worker marked), under a title line."""
    table = Table(
        title=Text(f"worker {worker}: {status}, {held} of {accounts} accounts here"),
        title_justify="left",
        expand=False,
    )
    table.add_column("member")
    table.add_column("host")
    table.add_column("pid", justify="right")
    table.add_column("capacity", justify="right")
    table.add_column("accounts", justify="right")
    table.add_column("")
    for member in members:
        info = member.info
        table.add_row(
            Text(info.worker + (" (this)" if info.worker == worker else "")),
            Text(info.host),
            str(info.pid),
            f"{info.capacity:g}",
            str(member.accounts),
            "draining" if info.draining else "",
        )
    return table
