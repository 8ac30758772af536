"""The fsm-live command line: check and diagram, exit codes, messages."""

from __future__ import annotations

import argparse
import io
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsm_live.cli import Output, build_parser, main, spec_commands
from fsm_live.cli._output import host, parse_number
from fsm_live.diagram import to_dot, to_mermaid
from fsm_live.spec import Spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "connection.yaml"
TRAFFIC = ROOT / "specs" / "examples" / "traffic_light.yaml"
SIX_STATES = ("DISCONNECTED", "CONNECTING", "CONNECTED", "RECONNECTING", "FAILED", "CLOSED")
HAS_DOT = shutil.which("dot") is not None


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int | str | None, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    return caught.value.code, capsys.readouterr().err


@pytest.fixture
def broken_spec(tmp_path: Path) -> tuple[Path, int]:
    """connection.yaml with `lost` leading to an unknown state; returns (path, its line)."""
    lines = SPEC.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, start=1) if "trigger: lost," in line)
    lines[number - 1] = lines[number - 1].replace("dest: RECONNECTING", "dest: LIMBO")
    path = tmp_path / "broken.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path, number


# -- check ------------------------------------------------------------------------------------


def test_check_valid_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", SPEC)
    assert code == 0
    assert out == f"{SPEC}: ok (7 states, 13 transitions)\n"
    assert err == ""


def test_check_several_specs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", SPEC, TRAFFIC)
    assert code == 0
    assert out.splitlines() == [
        f"{SPEC}: ok (7 states, 13 transitions)",
        f"{TRAFFIC}: ok (6 states, 9 transitions)",
    ]


def test_check_unknown_state_names_it_and_its_line(
    capsys: pytest.CaptureFixture[str], broken_spec: tuple[Path, int]
) -> None:
    path, line = broken_spec
    code, out, err = run(capsys, "check", path)
    assert code == 1
    assert out == ""
    problems = err.splitlines()
    assert any(p.startswith(f"{path}:{line}:") and "'LIMBO'" in p for p in problems), err


def test_check_reports_every_problem_and_checks_every_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, broken_spec: tuple[Path, int]
) -> None:
    path, _ = broken_spec
    text = path.read_text(encoding="utf-8").replace("log: WARNING", "log: LOUD")
    path.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "check", path, SPEC)
    assert code == 1
    assert "LIMBO" in err
    assert "LOUD" in err
    assert out == f"{SPEC}: ok (7 states, 13 transitions)\n"


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, err = run(capsys, "check", missing)
    assert code == 2  # a usage error, as report and verify say of a missing file
    assert err == f"fsm-live check: error: {missing}: no such file\n"
    code, out, err = run(capsys, "check", SPEC, missing)
    assert code == 2
    assert out == f"{SPEC}: ok (7 states, 13 transitions)\n"
    assert err == f"fsm-live check: error: {missing}: no such file\n"
    code, _, err = run(capsys, "diagram", missing)
    assert code == 2
    assert err == f"fsm-live diagram: error: {missing}: no such file\n"


def test_check_directory_and_binary_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run(capsys, "check", tmp_path, binary)
    assert code == 2  # the directory: a usage error (the binary file: an invalid spec, 1)
    assert f"fsm-live check: error: {tmp_path}: a directory, not a spec file\n" in err
    assert f"{binary}: not UTF-8 text" in err
    code, _, err = run(capsys, "check", binary)
    assert code == 1


def test_check_invalid_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("states: [unclosed\n", encoding="utf-8")
    code, _, err = run(capsys, "check", path)
    assert code == 1
    assert err.startswith(f"{path}:")
    assert "not valid YAML" in err


# -- diagram ----------------------------------------------------------------------------------


def test_diagram_mermaid_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diagram", SPEC, "--format", "mermaid")
    assert code == 0
    assert err == ""
    assert out.startswith("stateDiagram-v2\n")
    for state in SIX_STATES:
        assert state in out
    assert out == to_mermaid(Spec.from_path(SPEC))


def test_diagram_defaults_to_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", SPEC)
    assert code == 0
    assert out == to_mermaid(Spec.from_path(SPEC))


def test_diagram_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "lifecycle.mmd"
    code, out, err = run(capsys, "diagram", SPEC, "--output", target)
    assert code == 0
    assert out == err == ""
    assert target.read_text(encoding="utf-8") == to_mermaid(Spec.from_path(SPEC))


def test_diagram_output_file_that_cannot_be_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "no" / "such" / "dir.mmd"
    code, out, err = run(capsys, "diagram", SPEC, "-o", target)
    assert code == 2
    assert out == ""
    assert err == f"fsm-live diagram: error: -o {target}: No such file or directory\n"


def test_diagram_dot(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", SPEC, "--format", "dot")
    assert code == 0
    assert out.startswith('digraph "connection" {\n')
    assert out == to_dot(Spec.from_path(SPEC))


def test_diagram_no_notes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", SPEC, "--no-notes")
    assert code == 0
    assert "note" not in out
    assert out == to_mermaid(Spec.from_path(SPEC), notes=False)


def test_diagram_svg_without_graphviz(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    target = tmp_path / "out.svg"
    code, out, err = run(capsys, "diagram", SPEC, "--format", "svg", "-o", target)
    assert code == 1
    assert out == ""
    assert "apt-get install graphviz" in err
    assert "--format dot" in err
    assert not target.exists()


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed")
def test_diagram_svg_with_graphviz(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diagram", SPEC, "--format", "svg")
    assert code == 0
    assert "<svg" in out
    assert "CONNECTED" in out


def test_diagram_of_invalid_spec(
    capsys: pytest.CaptureFixture[str], broken_spec: tuple[Path, int]
) -> None:
    path, line = broken_spec
    code, out, err = run(capsys, "diagram", path)
    assert code == 1
    assert out == ""
    assert f"{path}:{line}:" in err


# -- usage ------------------------------------------------------------------------------------


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = usage_error(capsys, "diagram", str(SPEC), "--format", "png")
    assert code == 2
    assert "invalid choice: 'png'" in err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["check"], ["diagram"]],
    ids=["nothing", "unknown-command", "check-no-spec", "diagram-no-spec"],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, err = usage_error(capsys, *argv)
    assert code == 2
    (line,) = err.splitlines()  # one line, naming the command and where help is
    assert line.startswith("fsm-live")
    assert ": error: " in line
    assert line.endswith("--help)")


def test_an_unknown_option_is_named_by_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = usage_error(capsys, "check", str(SPEC), "--bogus")
    assert code == 2
    assert err == (
        "fsm-live check: error: unrecognized arguments: --bogus (fsm-live check --help)\n"
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("fsm-live ")


def test_parser_lists_subcommands() -> None:
    help_text = build_parser().format_help()
    assert "check" in help_text
    assert "diagram" in help_text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_output_on_a_terminal_is_unwrapped_and_not_markup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "40")
    stdout, stderr = FakeTerminal(), FakeTerminal()
    output = Output(stdout, stderr)
    problem = "spec.yaml:3: states.X: [bold]not markup[/bold] " + "long " * 20
    output.problem(problem)
    output.ok("spec.yaml: ok")
    assert problem.rstrip() in stderr.getvalue()
    assert "spec.yaml: ok" in stdout.getvalue()


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fsm_live", "check", str(SPEC)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{SPEC}: ok (7 states, 13 transitions)\n"


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("x", {}, "expected a number, got 'x'"),
        ("0", {}, "expected a positive number, got '0'"),
        ("inf", {"unit": "number of seconds"}, "expected a positive number of seconds, got 'inf'"),
        ("-1", {"at_least": 0}, "expected a number >= 0, got '-1'"),
        ("nan", {"at_least": 0}, "expected a number >= 0, got 'nan'"),
    ],
)
def test_numbers_from_the_command_line_are_checked(
    text: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse_number(text, **options)
    assert str(caught.value) == message


def test_numbers_in_range_are_returned() -> None:
    assert parse_number("0", at_least=0) == 0
    assert parse_number("2.5", unit="number of seconds") == 2.5


# -- Ctrl-C outside a command's signal receiver, and the demo's arguments --------------------


@pytest.fixture
def sigint_handler() -> Iterator[None]:
    """Restores SIGINT's handler: main() ignores SIGINT after an interrupted command."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.usefixtures("sigint_handler")
@pytest.mark.parametrize(
    "raised",
    [
        KeyboardInterrupt(),
        BaseExceptionGroup("through a task group", [KeyboardInterrupt()]),
    ],
    ids=["plain", "in-a-group"],
)
def test_a_keyboard_interrupt_in_a_command_is_one_line_and_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise raised

    monkeypatch.setattr(spec_commands.Spec, "from_path", interrupted)
    assert main(["check", str(SPEC)]) == 130
    assert capsys.readouterr() == ("", "fsm-live check: interrupted\n")
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the process only exits now


def test_other_errors_in_a_group_are_not_taken_for_an_interrupt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise BaseExceptionGroup("both", [KeyboardInterrupt(), RuntimeError("bug")])

    monkeypatch.setattr(spec_commands.Spec, "from_path", broken)
    with pytest.raises(BaseExceptionGroup):
        main(["check", str(SPEC)])


@pytest.mark.parametrize(
    ("trace", "reason"),
    [
        ("no/such/dir/t.jsonl", "No such file or directory"),
        (".", "Is a directory"),
    ],
)
def test_demo_trace_that_cannot_be_written_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, trace: str, reason: str
) -> None:
    path = tmp_path / trace
    assert main(["demo", "--trace", str(path)]) == 2
    assert capsys.readouterr() == ("", f"fsm-live demo: error: --trace {path}: {reason}\n")


def test_check_loads_neither_the_runtime_nor_the_other_commands() -> None:
    """``fsm-live check`` imports only what it needs (a check of 5,000 rows is then about
    0.45 s in a new process: bench/spec_check.py)."""
    probe = (
        "import sys; from fsm_live.cli import main; "
        f"code = main(['check', {str(SPEC)!r}]); "
        "print(code, sorted(m for m in sys.modules if m.startswith("
        "('fsm_live._runtime', 'fsm_live.connection', 'fsm_live.cli.connect'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr


@pytest.mark.parametrize("value", ["bad..host", "", "a b", "a" * 64 + ".example"])
def test_a_host_to_listen_on_is_checked(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an IP address or a host"):
        host(value)


@pytest.mark.parametrize("value", ["127.0.0.1", "::1", "localhost", "bücher.example"])
def test_good_hosts_to_listen_on(value: str) -> None:
    assert host(value) == value


@pytest.mark.parametrize(
    ("missing", "argv", "message"),
    [
        (
            "aetcd",
            ["fleet", "{fleet}", "--coordinator", "etcd://127.0.0.1:9", "--worker-id", "w1"],
            "fsm-live fleet: error: --coordinator: the etcd coordinator needs aetcd: "
            "pip install 'fsm_live[cluster]' ",
        ),
        (
            "prometheus_client",
            ["fleet", "{fleet}", "--metrics-port", "9"],
            "fsm-live fleet: error: --metrics-port: metrics need prometheus-client: "
            "pip install 'fsm_live[metrics]'",
        ),
        (
            "prometheus_client",
            ["connect", "ws://127.0.0.1:9/", "--metrics-port", "9"],
            "fsm-live connect: error: --metrics-port: metrics need prometheus-client: "
            "pip install 'fsm_live[metrics]'",
        ),
    ],
    ids=["fleet-coordinator", "fleet-metrics", "connect-metrics"],
)
def test_a_flag_whose_extra_is_missing_exits_2_naming_the_extra(
    tmp_path: Path, missing: str, argv: list[str], message: str
) -> None:
    """One line naming the extra to install, exit 2 (bad usage, as --help says), before
    anything starts; the package is hidden from the child as if not installed."""
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[accounts.a]\nurl = "ws://127.0.0.1:9/"\n', encoding="utf-8")
    args = [arg.format(fleet=fleet) for arg in argv]
    probe = (
        f"import sys; sys.modules[{missing!r}] = None; from fsm_live.cli import main; "
        f"sys.exit(main({args!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
