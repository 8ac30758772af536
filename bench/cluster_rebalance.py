"""The etcd coordinator's own side at scale: 100,000 accounts over 4 workers, no connections.

Usage::

    python bench/cluster_rebalance.py [--accounts N] [--workers N] [--lease-ttl S] [--json FILE]

One etcd (Debian's etcd-server, started on free ports in a temporary directory)
and ``--workers`` workers, each in its own process (``python
bench/cluster_rebalance.py --worker ID --endpoint HOST:PORT``): an
:class:`~fsm_live.cluster.EtcdCoordinator` whose holder only counts (no
connection), claims and releases unpaced (``claims_per_second`` and
``releases_per_second`` 10^6), every worker wanting every account.  A worker
prints its accounts held every 0.2 s.  Measured, from etcd (the owner keys) and
the workers' counts:

* **cold**: from the workers' start until every account is held once (as many
  owner keys as accounts, and the workers' counts adding up to them); the largest
  share against the mean;
* **steady state**: etcd's revision over 5 s once placed (every write makes one):
  0 writes, so 0 per account; keepalives write nothing;
* **a worker dies**: SIGKILL of one worker; until the survivors hold every
  account again (its lease expires first: ``lease_ttl`` 5 s + ``handover_delay`` 1 s);
* **drain**: SIGTERM of a survivor (it drains, then exits); until the others hold
  every account again.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import anyio.abc  # noqa: E402

from fsm_live.cluster import ClusterSettings, EtcdCoordinator, Ownership  # noqa: E402
from fsm_live.cluster._etcd import EtcdClient  # noqa: E402
from fsm_live.testing.etcd import EtcdServer  # noqa: E402

UNPACED = {"claims_per_second": 1e6, "releases_per_second": 1e6, "rpc_timeout": 10}


class Counting:
    """A holder that runs nothing: it counts."""

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


async def worker(worker_id: str, endpoint: str, accounts: int, lease_ttl: int) -> None:
    settings = ClusterSettings(lease_ttl=lease_ttl, **UNPACED)
    coordinator = EtcdCoordinator(endpoint, worker_id=worker_id, settings=settings)
    holder = Counting()
    async with anyio.create_task_group() as task_group:
        await task_group.start(coordinator.run, holder)
        for index in range(accounts):
            coordinator.want(f"acct-{index:06d}")
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            task_group.start_soon(report, holder, task_group)
            async for _ in signals:
                await coordinator.drain()
                task_group.cancel_scope.cancel()
                return


async def report(holder: Counting, task_group: anyio.abc.TaskGroup) -> None:
    while True:
        print(len(holder.running), flush=True)
        await anyio.sleep(0.2)


class Worker:
    def __init__(self, worker_id: str, endpoint: str, accounts: int, lease_ttl: int) -> None:
        self.held = 0
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                worker_id,
                "--endpoint",
                endpoint,
                "--accounts",
                str(accounts),
                "--lease-ttl",
                str(lease_ttl),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.held = int(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


async def owner_keys(client: EtcdClient) -> tuple[int, int]:
    revision, kvs = await client.snapshot(b"/fsm_live/owners/")
    return revision, len(kvs)


async def until_placed(client: EtcdClient, workers: list[Worker], accounts: int) -> float:
    started = time.monotonic()
    with anyio.fail_after(900):
        while True:
            _, keys = await owner_keys(client)
            if keys == accounts and sum(w.held for w in workers) == accounts:
                return time.monotonic() - started
            await anyio.sleep(0.2)


async def run(endpoint: str, accounts: int, count: int, lease_ttl: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"accounts": accounts, "workers": count, "lease_ttl": lease_ttl}
    workers = [Worker(f"w{i}", endpoint, accounts, lease_ttl) for i in range(count)]
    try:
        async with EtcdClient(endpoint, timeout=30) as client:
            figures["cold_s"] = await until_placed(client, workers, accounts)
            shares = [w.held for w in workers]
            figures["shares"] = shares
            figures["largest_over_mean"] = round(max(shares) / statistics.mean(shares), 4)
            before, _ = await owner_keys(client)
            await anyio.sleep(5)
            after, _ = await owner_keys(client)
            figures["writes_in_5s_at_steady_state"] = after - before

            workers[0].process.send_signal(signal.SIGKILL)
            workers[0].process.wait()
            workers[0].held = 0
            figures["a_worker_dies_s"] = await until_placed(client, workers[1:], accounts)
            figures["survivor_shares"] = [w.held for w in workers[1:]]

            workers[1].process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            figures["drained_worker_exit"] = await anyio.to_thread.run_sync(workers[1].process.wait)
            workers[1].held = 0
            figures["drain_s"] = (
                time.monotonic() - started + await until_placed(client, workers[2:], accounts)
            )
            figures["after_drain_shares"] = [w.held for w in workers[2:]]
    finally:
        for w in workers:
            w.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--lease-ttl", type=int, default=ClusterSettings().lease_ttl, help="seconds (default 5)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        anyio.run(worker, args.worker, args.endpoint, args.accounts, args.lease_ttl)
        return
    with EtcdServer() as etcd:
        figures = anyio.run(run, etcd.endpoint, args.accounts, args.workers, args.lease_ttl)
    print(json.dumps(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
