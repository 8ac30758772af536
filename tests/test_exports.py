"""The public surface: a tuple __all__, every name importable, nothing private leaked."""

from __future__ import annotations

import fsm_live
import fsm_live.testing


def test_all_is_a_sorted_tuple_of_importable_names() -> None:
    assert isinstance(fsm_live.__all__, tuple)
    assert list(fsm_live.__all__) == sorted(fsm_live.__all__)
    for name in fsm_live.__all__:
        assert getattr(fsm_live, name) is not None


def test_no_private_names_exported() -> None:
    assert not [name for name in fsm_live.__all__ if name.startswith("_")
                and name != "__version__"]


def test_testing_names_resolve_lazily() -> None:
    for name in fsm_live.testing.__all__:
        assert callable(getattr(fsm_live.testing, name))
