"""The etcd coordinator's own side at scale: 100,000 accounts over 4 workers, no connections.

Usage::

    python bench/cluster_rebalance.py [--accounts N] [--workers N] [--json FILE]

One etcd (Debian's etcd-server, started on free ports in a temporary directory)
and ``--workers`` :class:`~fsm_live.cluster.EtcdCoordinator` in this process, each
with a holder that only counts (no connection), claims and releases unpaced
(``claims_per_second`` and ``releases_per_second`` 10^6).  Measured:

* **cold**: from every worker wanting every account until each account is held
  exactly once; the largest share against the mean;
* **steady state**: etcd's revision over 5 s once placed (every write to etcd
  makes one): 0 writes per account, the keepalives write nothing;
* **a worker dies**: its tasks cancelled without revoking its lease (as a kill -9);
  from then until the survivors hold every account;
* **drain**: one survivor hands its accounts over; until the others hold them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import anyio.abc  # noqa: E402

from fsm_live.cluster import ClusterSettings, EtcdCoordinator, Ownership  # noqa: E402
from fsm_live.cluster._etcd import EtcdClient  # noqa: E402
from fsm_live.testing.etcd import EtcdServer  # noqa: E402

SETTINGS = ClusterSettings(claims_per_second=1e6, releases_per_second=1e6, rpc_timeout=10)


class Counting:
    def __init__(self) -> None:
        self.running: set[str] = set()

    async def acquire(self, key: str, ownership: Ownership) -> None:
        if ownership.valid():
            self.running.add(key)

    async def release(self, key: str) -> None:
        self.running.discard(key)

    def abort(self, key: str) -> None:
        self.running.discard(key)

    async def stopped(self) -> None:
        self.running.clear()


async def until_held(holders: list[Counting], accounts: int, within: float = 600) -> float:
    started = time.monotonic()
    with anyio.fail_after(within):
        while True:
            held = Counter(key for holder in holders for key in holder.running)
            if len(held) == accounts and max(held.values()) == 1:
                return time.monotonic() - started
            await anyio.sleep(0.1)


async def run(endpoint: str, accounts: int, workers: int) -> dict[str, Any]:
    keys = [f"acct-{i:06d}" for i in range(accounts)]
    coordinators = [
        EtcdCoordinator(endpoint, worker_id=f"w{i}", settings=SETTINGS) for i in range(workers)
    ]
    holders = [Counting() for _ in range(workers)]
    figures: dict[str, Any] = {"accounts": accounts, "workers": workers}
    async with anyio.create_task_group() as task_group:
        scopes = []
        for coordinator, holder in zip(coordinators, holders, strict=True):
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def run_one(
                c: EtcdCoordinator = coordinator,
                h: Counting = holder,
                s: anyio.CancelScope = scope,
                *,
                task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
            ) -> None:
                with s:
                    await c.run(h, task_status=task_status)

            await task_group.start(run_one)
        for coordinator in coordinators:
            for key in keys:
                coordinator.want(key)
        figures["cold_s"] = await until_held(holders, accounts)
        shares = [len(h.running) for h in holders]
        figures["shares"] = shares
        figures["largest_over_mean"] = max(shares) / statistics.mean(shares)

        async with EtcdClient(endpoint, timeout=10) as client:
            before, _ = await client.snapshot(b"/fsm_live/members/")
            await anyio.sleep(5)
            after, _ = await client.snapshot(b"/fsm_live/members/")
        figures["steady_writes_in_5s"] = after - before

        died = time.monotonic()
        scopes[0].cancel()  # as a kill -9: no revoke, the lease expires
        holders[0].running.clear()
        figures["a_worker_dies_s"] = await until_held(holders[1:], accounts)
        figures["after_death_shares"] = [len(h.running) for h in holders[1:]]
        del died

        drained = time.monotonic()
        await coordinators[1].drain()
        holders[1].running.clear()
        figures["drain_s"] = await until_held(holders[2:], accounts)
        figures["drain_call_s"] = time.monotonic() - drained
        for coordinator in coordinators[2:]:
            coordinator.leave()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with EtcdServer() as etcd:
        figures = anyio.run(run, etcd.endpoint, args.accounts, args.workers)
    print(json.dumps(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
