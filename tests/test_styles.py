"""fsm_live.cli.views.styles: a state's colour comes from its role and log level in the
spec, never from its name."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from rich.style import Style

from fsm_live.cli.views.styles import CRASHED_STYLE, StateStyles
from fsm_live.spec import Spec, default_spec_path

#: Names chosen to mislead a styler that reads names: the success state is "Idle",
#: the failed one "Up", the final one "INITIAL", the initial one "CONNECTED", and
#: states with no role are called "failed" and "FAILED".
MISLEADING = Spec.from_mapping(
    {
        "name": "misleading",
        "initial": "CONNECTED",
        "states": {
            "CONNECTED": {"log": "WARNING"},  # initial beats the log level: dim
            "failed": {"log": "INFO"},
            "Idle": {"success": True, "log": "ERROR"},  # the role beats the log level
            "Up": {"failed": True, "log": "DEBUG"},
            "FAILED": {"log": "WARNING"},
            "wobbly": {"log": "CRITICAL"},
            "limbo": {"log": "DEBUG"},
            "INITIAL": {"final": True, "log": "ERROR"},
        },
        "transitions": [
            {"trigger": "go", "source": "CONNECTED", "dest": "failed"},
            {"trigger": "go", "source": "failed", "dest": "Idle"},
            {"trigger": "go", "source": "Idle", "dest": "Up"},
            {"trigger": "go", "source": "Up", "dest": "FAILED"},
            {"trigger": "go", "source": "FAILED", "dest": "wobbly"},
            {"trigger": "go", "source": "wobbly", "dest": "limbo"},
            {"trigger": "go", "source": "limbo", "dest": "CONNECTED"},
            {
                "trigger": "stop",
                "source": ["CONNECTED", "failed", "Idle", "Up", "FAILED", "wobbly", "limbo"],
                "dest": "INITIAL",
            },
        ],
    }
)


def test_styles_follow_roles_not_names() -> None:
    styles = StateStyles(MISLEADING)
    assert styles("Idle") == "bold green"  # success
    assert styles("Up") == "bold red"  # failed
    assert styles("INITIAL") == "dim"  # final
    assert styles("CONNECTED") == "dim"  # initial


def test_other_states_are_yellow_from_warning_up_and_cyan_below() -> None:
    styles = StateStyles(MISLEADING)
    assert styles("FAILED") == "yellow"  # WARNING, no role
    assert styles("wobbly") == "yellow"  # CRITICAL
    assert styles("failed") == "cyan"  # INFO, no role
    assert styles("limbo") == "cyan"  # DEBUG


def test_an_unknown_name_has_no_style() -> None:
    styles = StateStyles(MISLEADING)
    assert styles("NOWHERE") == ""
    assert styles("connected") == ""  # names are matched exactly
    assert styles("CRASHED") == ""


def test_every_style_is_a_valid_rich_style() -> None:
    styles = StateStyles(MISLEADING)
    for name in MISLEADING.states:
        Style.parse(styles(name))
    Style.parse(CRASHED_STYLE)
    assert CRASHED_STYLE == "bold red"


def _renamed(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    def one(value: str | list[str]) -> str | list[str]:
        return names[value] if isinstance(value, str) else [names[v] for v in value]

    return {
        **data,
        "initial": names[data["initial"]],
        "states": {names[name]: body for name, body in data["states"].items()},
        "transitions": [
            {**row, "source": one(row["source"]), "dest": one(row["dest"])}
            for row in data["transitions"]
        ],
    }


def test_the_packaged_spec_renamed_is_styled_the_same() -> None:
    data = yaml.safe_load(default_spec_path().read_text(encoding="utf-8"))
    names = {name: f"s{i}_{name.lower()[::-1]}" for i, name in enumerate(data["states"])}
    packaged, renamed = Spec.from_mapping(data), Spec.from_mapping(_renamed(data, names))
    before, after = StateStyles(packaged), StateStyles(renamed)
    assert {name: before(name) for name in packaged.states} == {
        old: after(new) for old, new in names.items()
    }
    assert all(before(new) == "" for new in names.values())


@pytest.mark.parametrize(("role", "style"), [("success", "bold green"), ("failed", "bold red")])
def test_moving_a_role_moves_the_style(role: str, style: str) -> None:
    def spec(holder: str) -> Spec:  # the same names; only the role moves
        states: dict[str, Any] = {"a": {}, "b": {}, "c": {}, "d": {"final": True}}
        states[holder] = {role: True}
        return Spec.from_mapping(
            {
                "name": "moved",
                "initial": "a",
                "states": states,
                "transitions": [
                    {"trigger": "go", "source": "a", "dest": "b"},
                    {"trigger": "go", "source": "b", "dest": "c"},
                    {"trigger": "go", "source": "c", "dest": "a"},
                    {"trigger": "stop", "source": ["a", "b", "c"], "dest": "d"},
                ],
            }
        )

    on_b, on_c = StateStyles(spec("b")), StateStyles(spec("c"))
    assert (on_b("b"), on_b("c")) == (style, "cyan")
    assert (on_c("b"), on_c("c")) == ("cyan", style)
