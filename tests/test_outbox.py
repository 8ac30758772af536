"""The outbound buffer: bounded, ordered, an explicit error at the bound."""

from __future__ import annotations

import pytest

from fsm_live._runtime.outbox import Outbox
from fsm_live.errors import BufferFull


def test_outbox_is_ordered_and_bounded() -> None:
    outbox = Outbox(capacity=2)
    assert not outbox
    outbox.put("a")
    outbox.put("b")
    with pytest.raises(BufferFull, match="maximum of 2"):
        outbox.put("c")
    assert outbox.peek() == "a"
    assert outbox.peek() == "a"  # peek keeps it: a failed send is retried
    outbox.pop()
    assert outbox.peek() == "b"
    assert outbox.clear() == 1
    assert len(outbox) == 0


def test_empty_outbox_refuses_peek_and_pop() -> None:
    outbox = Outbox(capacity=2)
    for empty in (outbox, Outbox(capacity=2)):
        if empty is outbox:
            outbox.put("a")
            outbox.pop()
        with pytest.raises(IndexError):
            empty.peek()
        with pytest.raises(IndexError):
            empty.pop()
    assert outbox.clear() == 0
