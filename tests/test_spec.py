"""Spec loading and validation: every rule has a broken spec that trips it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fsm_live.errors import SpecError
from fsm_live.spec import Spec, default_spec_path

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "connection.yaml"
SPEC_TEXT = SPEC_PATH.read_text(encoding="utf-8")


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        Spec.from_yaml(text, source="broken.yaml")
    return list(caught.value.problems)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def mapping() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SPEC_TEXT)
    return copy.deepcopy(data)


def test_connection_spec_loads() -> None:
    spec = Spec.from_path(SPEC_PATH)
    assert spec.initial == "DISCONNECTED"
    assert list(spec.states) == [
        "DISCONNECTED",
        "CONNECTING",
        "CONNECTED",
        "RECONNECTING",
        "WAITING",
        "FAILED",
        "CLOSED",
    ]
    assert spec.final_states == {"CLOSED"}
    assert spec.states["CONNECTED"].success
    assert spec.states["RECONNECTING"].log_level == "WARNING"
    assert spec.states["FAILED"].log_level == "ERROR"
    assert "heartbeat" in spec.states["CONNECTED"].tasks
    assert spec.errors.default == "lost"
    assert spec.source == str(SPEC_PATH)


def test_default_spec_is_the_repository_spec() -> None:
    assert default_spec_path().read_text(encoding="utf-8") == SPEC_TEXT
    assert Spec.default() == Spec.from_path(SPEC_PATH)


def test_every_non_final_state_can_close() -> None:
    spec = Spec.default()
    closable = {source for source, t in spec.edges() if t.trigger == "close"}
    assert closable == set(spec.states) - spec.final_states


def test_from_mapping_equals_from_yaml() -> None:
    from_data = Spec.from_mapping(mapping())
    from_text = Spec.from_yaml(SPEC_TEXT)
    assert from_data.states == from_text.states
    assert from_data.transitions == from_text.transitions
    assert from_data.errors == from_text.errors


def test_specs_are_hashable_and_equal_by_value() -> None:
    assert Spec.default() == Spec.default()
    assert len({Spec.default(), Spec.default()}) == 1


def test_unknown_dest_state_names_state_file_and_line() -> None:
    text = SPEC_TEXT.replace(
        "source: CONNECTING, dest: CONNECTED}", "source: CONNECTING, dest: CONECTED}"
    )
    [problem] = problems_of(text)
    assert "CONECTED" in problem
    assert problem.startswith(f"broken.yaml:{line_of(text, 'CONECTED')}:")
    assert "transitions.1.dest" in problem


def test_unknown_source_state() -> None:
    text = SPEC_TEXT.replace(
        "source: [CONNECTING, CONNECTED], dest: FAILED", "source: [CONNECTING, LIMBO], dest: FAILED"
    )
    [problem] = problems_of(text)
    assert "unknown state 'LIMBO'" in problem
    assert f":{line_of(text, 'LIMBO')}:" in problem


def test_unreachable_state() -> None:
    data = mapping()
    data["states"]["ORPHAN"] = {"log": "INFO", "final": True}
    with pytest.raises(SpecError, match="state ORPHAN is unreachable from DISCONNECTED"):
        Spec.from_mapping(data)


def test_unreachable_state_has_its_line() -> None:
    text = SPEC_TEXT.replace("  CLOSED:\n", "  ORPHAN:\n    final: true\n  CLOSED:\n")
    [problem] = problems_of(text)
    assert problem.startswith(f"broken.yaml:{line_of(text, 'ORPHAN:')}: states.ORPHAN:")


def test_non_final_dead_end() -> None:
    data = mapping()
    data["states"]["STUCK"] = {"log": "INFO"}
    data["transitions"].append({"trigger": "wedge", "source": "CONNECTED", "dest": "STUCK"})
    with pytest.raises(SpecError, match="state STUCK is not final and has no way out"):
        Spec.from_mapping(data)


def test_final_state_must_absorb() -> None:
    data = mapping()
    data["transitions"].append({"trigger": "revive", "source": "CLOSED", "dest": "CONNECTING"})
    with pytest.raises(SpecError, match="final state CLOSED has outgoing transitions"):
        Spec.from_mapping(data)


def test_missing_initial_state() -> None:
    text = SPEC_TEXT.replace("initial: DISCONNECTED\n", "")
    assert any("missing initial state" in p for p in problems_of(text))


def test_unknown_initial_state() -> None:
    text = SPEC_TEXT.replace("initial: DISCONNECTED", "initial: NOWHERE")
    [problem] = problems_of(text)
    assert "unknown initial state 'NOWHERE'" in problem
    assert problem.startswith(f"broken.yaml:{line_of(text, 'NOWHERE')}:")


def test_duplicate_unconditional_transition() -> None:
    text = SPEC_TEXT.replace(
        "  - {trigger: opened, source: CONNECTING, dest: CONNECTED}\n",
        "  - {trigger: opened, source: CONNECTING, dest: CONNECTED}\n"
        "  - {trigger: opened, source: CONNECTING, dest: FAILED}\n",
    )
    [problem] = problems_of(text)
    assert "second unconditional transition for trigger 'opened' from CONNECTING" in problem
    assert problem.startswith(f"broken.yaml:{line_of(text, 'dest: FAILED}')}:")


def test_guarded_transitions_may_share_trigger_and_source() -> None:
    data = mapping()
    retry = next(i for i, row in enumerate(data["transitions"]) if row["trigger"] == "retry")
    data["transitions"].insert(
        retry,
        {
            "trigger": "retry",
            "source": "RECONNECTING",
            "dest": "FAILED",
            "conditions": ["exhausted"],
        },
    )
    Spec.from_mapping(data)


def test_unknown_task() -> None:
    text = SPEC_TEXT.replace("tasks: [dial]", "tasks: [dial, telepathy]")
    [problem] = problems_of(text)
    assert "unknown task 'telepathy'" in problem
    assert problem.startswith(f"broken.yaml:{line_of(text, 'telepathy')}:")


def test_unknown_log_level() -> None:
    text = SPEC_TEXT.replace("log: WARNING", "log: LOUD")
    [problem] = problems_of(text)
    assert "unknown log level 'LOUD'" in problem
    assert problem.startswith(f"broken.yaml:{line_of(text, 'LOUD')}:")


def test_unknown_timer_and_guard() -> None:
    data = mapping()
    data["states"]["CONNECTED"]["timers"]["egg_timer"] = None
    data["transitions"][0]["conditions"] = ["lucky"]
    with pytest.raises(SpecError) as caught:
        Spec.from_mapping(data)
    text = str(caught.value)
    assert "unknown timer 'egg_timer'" in text
    assert "unknown guard 'lucky'" in text


def test_timer_trigger_must_leave_its_state() -> None:
    data = mapping()
    data["states"]["RECONNECTING"]["timers"]["backoff"] = ["opened"]
    with pytest.raises(SpecError, match="timer backoff fires 'opened', which has no transition"):
        Spec.from_mapping(data)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(states=["A", "B"]), "expected a mapping of state names"),
        (lambda d: d["states"]["CONNECTING"].update(tasks=[1]), "expected a task name"),
        (lambda d: d["states"]["CLOSED"].update(final="yes"), "expected true or false"),
        (lambda d: d["transitions"][0].update(trigger=["a", "b"]), "single name"),
        (lambda d: d["transitions"][0].pop("dest"), "missing dest"),
        (lambda d: d["transitions"][0].update(colour="red"), "unknown key 'colour'"),
        (lambda d: d.update(transitions={"start": "x"}), "expected a list of transitions"),
        (
            lambda d: d["errors"]["classes"]["network"].update(action="panic"),
            "unknown action 'panic'",
        ),
        (
            lambda d: d["errors"]["rules"][0].update(kinds=["gremlins"]),
            "unknown failure kind 'gremlins'",
        ),
        (lambda d: d["errors"]["rules"][2].update(http_status=["600-700"]), "outside 100-599"),
        (lambda d: d["errors"]["rules"][5].update(close_codes=["x"]), "expected a code"),
        (lambda d: d["errors"].update(default="mystery"), "unknown error class 'mystery'"),
        (lambda d: d["errors"]["rules"][0].update({"class": "nope"}), "unknown error class"),
        (lambda d: d["errors"]["classes"]["throttled"].update(min_delay=-1), "finite and >= 0"),
    ],
)
def test_malformed_types_and_values(change: Any, expected: str) -> None:
    data = mapping()
    change(data)
    with pytest.raises(SpecError, match=expected):
        Spec.from_mapping(data)


def test_all_problems_reported_at_once() -> None:
    text = SPEC_TEXT.replace("log: WARNING", "log: LOUD").replace(
        "tasks: [dial]", "tasks: [telepathy]"
    )
    assert len(problems_of(text)) == 2


def test_not_yaml() -> None:
    [problem] = problems_of("states: [unclosed\n")
    assert problem.startswith("broken.yaml:")
    assert "not valid YAML" in problem


def test_empty_and_non_mapping() -> None:
    assert problems_of("") == ["broken.yaml:1: the spec is empty"]
    assert "a spec is a mapping" in problems_of("- 1\n- 2\n")[0]


def test_spec_without_errors_table_gets_default() -> None:
    spec = Spec.from_mapping(
        {
            "initial": "A",
            "states": {"A": {}, "B": {"final": True}},
            "transitions": [{"trigger": "go", "source": "A", "dest": "B"}],
        }
    )
    assert spec.errors.default == "retry"
    assert spec.source == "<mapping>"


def test_spec_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="missing states"):
        Spec.from_mapping({"initial": "A", "transitions": []})


def test_spec_is_frozen() -> None:
    spec = Spec.default()
    with pytest.raises(AttributeError):
        spec.initial = "CLOSED"  # type: ignore[misc]
