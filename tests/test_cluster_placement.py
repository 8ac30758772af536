"""The cluster's pure parts: rendezvous placement, the view's decisions, fences,
ownerships, keys, settings and the coordinator URL (no etcd, no event loop)."""

from __future__ import annotations

import math
import statistics
from collections import Counter

import pytest

from fsm_live.cluster import (
    ClusterSettings,
    CoordinatorUrl,
    Fence,
    KeyLayout,
    MemberInfo,
    Ownership,
    place,
    rendezvous_owner,
)
from fsm_live.cluster.placement import ClusterView, OwnerKey
from fsm_live.errors import ConfigError

ACCOUNTS = [f"acct-{i}" for i in range(100_000)]


def test_100k_accounts_over_4_workers_largest_share_within_5_percent_of_the_mean() -> None:
    counts = Counter(place(ACCOUNTS, {f"w{i}": 1.0 for i in range(4)}).values())
    assert max(counts.values()) <= 1.05 * statistics.mean(counts.values())


def test_a_worker_leaving_moves_only_its_accounts_and_spreads_them() -> None:
    four = place(ACCOUNTS[:20_000], {f"w{i}": 1.0 for i in range(4)})
    three = place(ACCOUNTS[:20_000], {f"w{i}": 1.0 for i in range(3)})
    moved = [a for a in four if four[a] != three[a]]
    assert all(four[a] == "w3" for a in moved)
    assert len(moved) == sum(1 for owner in four.values() if owner == "w3")
    spread = Counter(three[a] for a in moved)
    assert max(spread.values()) <= 1.1 * statistics.mean(spread.values())


def test_capacity_weighs_the_share() -> None:
    counts = Counter(place(ACCOUNTS[:40_000], {"big": 3.0, "small": 1.0}).values())
    assert 2.8 <= counts["big"] / counts["small"] <= 3.2


def test_placement_is_the_same_on_every_host_and_without_members_none() -> None:
    assert rendezvous_owner("alice", {"w1": 1, "w2": 1}) == rendezvous_owner(
        "alice", {"w2": 1, "w1": 1}
    )
    assert rendezvous_owner("alice", {}) is None
    assert place(["alice"], {}) == {}


def member(worker: str, *, draining: bool = False, capacity: float = 1.0) -> MemberInfo:
    return MemberInfo(worker=worker, host="h", pid=1, capacity=capacity, draining=draining)


def view_of(me: str, workers: list[str], accounts: list[str]) -> ClusterView:
    view = ClusterView(me, handover_delay=1.0)
    view.lease = 7
    view.reset([member(w) for w in workers], {}, now=0.0)
    for account in accounts:
        view.want(account, now=0.0)
    return view


def test_claims_wait_for_the_handover_delay_after_a_snapshot_then_take_only_own_targets() -> None:
    view = view_of("w1", ["w1", "w2"], [f"a{i}" for i in range(100)])
    assert view.to_claim(0.5, set()) == ([], 1.0)
    claims, later = view.to_claim(1.0, set())
    assert later is None
    assert claims == [a for a in view.wanted if view.target(a) == "w1"]
    assert 30 < len(claims) < 70
    assert view.to_claim(1.0, set(claims))[0] == []  # busy ones are not claimed twice


def test_an_owned_account_is_not_claimed_and_a_released_one_is_claimed_at_once() -> None:
    view = view_of("w1", ["w1", "w2"], ["x"])
    target = view.target("x")
    other = "w2" if target == "w1" else "w1"
    view.owner_put("x", OwnerKey(other, revision=5, lease=99))
    assert view.to_claim(10.0, set())[0] == []
    view.owner_deleted("x", now=10.0)  # its owner is still a member: released on purpose
    assert view.to_claim(10.0, set())[0] == (["x"] if target == "w1" else [])


def test_an_owner_key_gone_with_its_lease_is_claimed_only_after_the_handover_delay() -> None:
    view = view_of("w1", ["w1", "w2", "w3"], [f"a{i}" for i in range(60)])
    mine = [a for a in view.wanted if view.target(a) == "w1"]
    for account in view.wanted:
        if view.target(account) == "w3":
            view.owner_put(account, OwnerKey("w3", revision=3, lease=33))
    view.member_deleted("w3", now=20.0)  # the same revision as its owner keys
    for account in [a for a, o in view.owners.items() if o.worker == "w3"]:
        view.owner_deleted(account, now=20.0)
    claims, later = view.to_claim(20.0, set(mine))
    assert claims == []
    assert later == 21.0
    claims, _ = view.to_claim(21.0, set(mine))
    assert claims
    assert all(view.target(a) == "w1" for a in claims)


def test_revoke_before_assign_accounts_that_belong_elsewhere_are_released() -> None:
    view = view_of("w1", ["w1"], [f"a{i}" for i in range(40)])
    for account in view.wanted:
        view.owner_put(account, OwnerKey("w1", revision=9, lease=7))
        view.hold(account)
    assert view.to_release(set()) == []
    view.member_put(member("w2"), now=5.0)
    released = view.to_release(set())
    assert released
    assert all(view.target(a) == "w2" for a in released)
    view.unwant("a0")
    assert "a0" in view.to_release(set())
    view.draining = True
    assert sorted(view.to_release(set())) == sorted(view.owners)
    assert view.to_claim(100.0, set()) == ([], None)


def test_a_key_of_our_lease_without_a_session_here_is_deleted() -> None:
    view = view_of("w1", ["w1"], ["x"])
    view.owner_put("x", OwnerKey("w1", revision=9, lease=7))
    assert view.to_release(set()) == ["x"]
    view.owner_put("x", OwnerKey("w1", revision=9, lease=6))  # an older lease: not ours
    assert view.to_release(set()) == []


def test_a_draining_member_gets_no_accounts() -> None:
    view = view_of("w1", ["w1", "w2"], [f"a{i}" for i in range(50)])
    view.member_put(member("w2", draining=True), now=1.0)
    assert all(view.target(a) == "w1" for a in view.wanted)


def test_a_fence_is_valid_until_its_deadline_and_only_moves_later() -> None:
    now = [0.0]
    fence = Fence(5.0, clock=lambda: now[0])
    ownership = Ownership("alice", "w1", 42, fence)
    assert ownership.valid()
    assert fence.extend(6.0)
    assert not fence.extend(5.5)
    now[0] = 6.0
    assert not ownership.valid()
    assert not fence.extend(10.0)  # a renewal that comes too late renews nothing
    fence = Fence(5.0, clock=lambda: now[0])
    now[0] = 1.0
    ownership = Ownership("alice", "w1", 43, fence)
    ownership.release()
    assert not ownership.valid()
    fence.trip()
    assert not fence.valid()
    assert not fence.extend(math.inf)


def test_keys_escape_accounts_and_member_values_hold_no_secret() -> None:
    layout = KeyLayout("/fleet/prod")
    key = layout.owner("team/ops alice")
    assert key == b"/fleet/prod/owners/team%2Fops%20alice"
    assert layout.parse(key) == ("owner", "team/ops alice")
    assert layout.parse(b"/other") is None
    info = MemberInfo(worker="w1", host="h", pid=3, capacity=2.0, draining=True)
    assert MemberInfo.decode("w1", info.encode()) == info
    assert set(__import__("json").loads(info.encode())) == {"host", "pid", "capacity", "draining"}
    assert MemberInfo.decode("w9", b"not json").capacity == 1.0
    with pytest.raises(ConfigError, match="prefix"):
        KeyLayout("fleet/")


def test_settings_check_their_rules_and_give_the_failover_bound() -> None:
    settings = ClusterSettings()
    assert settings.failover_bound(accounts=100) == pytest.approx(8.2)
    assert settings.failover_bound(accounts=100) <= 15
    with pytest.raises(ConfigError, match="fence_margin"):
        ClusterSettings(lease_ttl=2, fence_margin=1.5)
    with pytest.raises(ConfigError, match="lease_ttl"):
        ClusterSettings(lease_ttl=1)
    with pytest.raises(ConfigError, match="claims_per_second"):
        ClusterSettings(claims_per_second=0)
    env = {"FSM_LIVE_CLUSTER_LEASE_TTL": "10", "FSM_LIVE_CLUSTER_HANDOVER_DELAY": "2", "X": "1"}
    assert ClusterSettings.from_env(env) == ClusterSettings(lease_ttl=10, handover_delay=2)
    with pytest.raises(ConfigError, match="FSM_LIVE_CLUSTER_TTL: unknown"):
        ClusterSettings.from_env({"FSM_LIVE_CLUSTER_TTL": "3"})
    with pytest.raises(ConfigError, match=r"^FSM_LIVE_CLUSTER_LEASE_TTL: expected a number"):
        ClusterSettings.from_env({"FSM_LIVE_CLUSTER_LEASE_TTL": "soon"})
    with pytest.raises(ConfigError, match="FSM_LIVE_CLUSTER_LEASE_TTL"):
        ClusterSettings.from_env({"FSM_LIVE_CLUSTER_LEASE_TTL": "1"})


@pytest.mark.parametrize(
    ("text", "endpoint", "prefix"),
    [
        ("etcd://127.0.0.1:2379", "127.0.0.1:2379", "/fsm_live"),
        ("etcd://etcd.internal:2379/fleets/prod/", "etcd.internal:2379", "/fleets/prod"),
        ("etcd://[::1]:2379/x", "[::1]:2379", "/x"),
    ],
)
def test_coordinator_urls(text: str, endpoint: str, prefix: str) -> None:
    assert CoordinatorUrl.parse(text) == CoordinatorUrl(endpoint, prefix)


@pytest.mark.parametrize(
    "text",
    ["http://h:1", "etcd://h", "etcd://h:0", "etcd://h:99999", "etcd://u:p@h:1", "etcd://h:1?x"],
)
def test_bad_coordinator_urls_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--coordinator: "):
        CoordinatorUrl.parse(text)


def test_the_cluster_views_name_the_worker_and_every_member() -> None:
    from io import StringIO

    from rich.console import Console

    from fsm_live.cli.views.cluster import cluster_table, plain_cluster
    from fsm_live.cluster import MemberView

    members = (
        MemberView(member("w1"), 50),
        MemberView(member("w2", draining=True), 7),
    )
    assert plain_cluster("w1", "active", 50, 150, members) == (
        "cluster: worker w1 active, 50 of 150 accounts here; members: w1 50, w2 7 (draining)"
    )
    assert plain_cluster("w1", "joining", 0, 3, ()).endswith("members: none known")
    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(cluster_table("w1", "active", 50, 150, members))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "worker w1: active, 50 of 150 accounts here" in text
    assert "w1 (this)" in text
    assert "draining" in text
