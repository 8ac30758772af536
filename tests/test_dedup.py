"""De-duplication: TTL, size cap, sweep."""

from __future__ import annotations

import pytest

from fsm_live.core.dedup import Deduplicator


def test_duplicate_within_ttl_only() -> None:
    dedup = Deduplicator(ttl=300, max_entries=10)
    assert not dedup.seen("a", 0.0)
    assert dedup.seen("a", 299.9)
    assert not dedup.seen("a", 300.0)  # expired: new again
    assert dedup.seen("a", 301.0)


def test_size_cap_forgets_the_oldest() -> None:
    dedup = Deduplicator(ttl=300, max_entries=3)
    for i in range(5):
        dedup.seen(str(i), float(i))
    assert len(dedup) == 3
    assert not dedup.seen("0", 5.0)  # forgotten
    assert dedup.seen("4", 5.0)


def test_sweep_drops_expired_in_order() -> None:
    dedup = Deduplicator(ttl=10, max_entries=100)
    for i in range(10):
        dedup.seen(str(i), float(i))
    assert dedup.sweep(14.5) == 5
    assert len(dedup) == 5
    assert dedup.sweep(14.5) == 0


def test_memory_stays_bounded_under_a_flood() -> None:
    dedup = Deduplicator(ttl=300, max_entries=1000)
    for i in range(100_000):
        dedup.seen(f"id-{i}", i / 1000)
    assert len(dedup) == 1000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ttl"):
        Deduplicator(ttl=0, max_entries=1)
