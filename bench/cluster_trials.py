"""Cluster trials: workers of ``fsm-live fleet --coordinator`` under faults, counted.

Usage::

    python bench/cluster_trials.py [--kind kill|partition|stop|isolate] [--rounds N]
                                   [--accounts N] [--fast] [--json FILE]

One rig per kind (tests/cluster_rig.py): one etcd, the recording lwp server
(``fsm_live.testing.recorder``), a fleet file of ``--accounts`` lwp accounts and
three workers, each ``python -m fsm_live fleet FILE --coordinator etcd://...
--worker-id wN`` in its own process.  ``partition`` and ``isolate`` put each worker
in a network namespace of its own (root only), etcd and the server in a hub
namespace.  Each round, on one worker (w1, w2, w3 in turn):

* ``kill``: SIGKILL; the worker is started again once the others hold its accounts;
* ``stop``: SIGSTOP for lease_ttl + 3 s, then SIGCONT;
* ``partition``: every packet between the worker and etcd's port dropped (iptables,
  both directions; the server stays reachable) for lease_ttl + 3 s, then healed;
* ``isolate``: the worker's only link down for lease_ttl + 3 s, then up.

Then the round waits until every account has exactly one open session at the
server again, and until the cluster settled (its worker took its share back).

Counted per round, at the server: **stale frames** (frames a session sent after a
newer session of its account had opened: a message an old session acknowledged,
or a heartbeat: 0 means no two live sessions and no message handled by a fenced
worker) and **takeover**: for each account whose session changed after the fault,
the time from the fault to its new session; the round's worst.  ``--fast`` uses
lease_ttl 2, keepalive 0.5, fence margin 0.5, handover 0.5 (FSM_LIVE_CLUSTER_*);
the default is the settings' defaults.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cluster_rig import Rig, netns_available, summary, trial  # noqa: E402

from fsm_live.cluster import ClusterSettings  # noqa: E402

FAST = {
    "lease_ttl": "2",
    "keepalive_interval": "0.5",
    "fence_margin": "0.5",
    "handover_delay": "0.5",
}
WORKERS = ["w1", "w2", "w3"]


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the rig's finally clauses kill its processes


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["kill", "partition", "stop", "isolate"], default="kill")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = FAST if args.fast else {}
    ttl = int(settings.get("lease_ttl", ClusterSettings().lease_ttl))
    netns = None
    if args.kind in ("partition", "isolate"):
        if (why := netns_available()) is not None:
            raise SystemExit(f"cluster_trials: {args.kind} needs network namespaces: {why}")
        netns = "fsmct"
    results = []
    with (
        tempfile.TemporaryDirectory() as directory,
        Rig(
            Path(directory), accounts=args.accounts, workers=WORKERS, settings=settings, netns=netns
        ) as rig,
    ):
        rig.wait_one_each(90)
        time.sleep(ttl)
        for number in range(args.rounds):
            result = trial(rig, args.kind, WORKERS[number % 3], ttl)
            results.append(result)
            print(json.dumps(result), flush=True)
        final = rig.recorder.report()
    takeovers = [r["takeover"] for r in results if r["takeover"] is not None]
    figures = {
        "kind": args.kind,
        "rounds": len(results),
        "accounts": args.accounts,
        "settings": settings or "defaults",
        "stale_frames": sum(r["stale_frames"] for r in results),
        "takeover_p50": statistics.median(takeovers) if takeovers else None,
        "takeover_max": max(takeovers) if takeovers else None,
        "final": summary(final),
    }
    print(json.dumps(figures), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"figures": figures, "rounds": results}, indent=1))


if __name__ == "__main__":
    main()
