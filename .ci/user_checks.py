"""What a user of ``pip install .`` sees: run with the Python of the venv to check.

    .venv-user/bin/python .ci/user_checks.py            # what .ci/run does
    .venv/bin/python .ci/user_checks.py                 # the same against the dev venv

Checks, each printing one line (``ci: VENV: CHECK: ok ...``) or failing with exit 1:

* ``imports``: the installed ``fsm_live`` (with ``--wheel``: an installed wheel,
  not the source tree of an editable install) imports every one
  of its modules outside ``fsm_live.testing`` (``fsm_live.testing`` needs the
  ``testing`` extra; what the CLI uses of it is imported through the CLI's
  modules).  Also says which optional packages are present, so a venv with
  extras is not mistaken for a plain one.
* ``demo``: ``fsm-live demo --duration 25 --seed 2 --trace FILE``, with the
  ``fsm-live`` next to this Python, output not a terminal: exit 0, every trace
  row has exactly the keys t, from, to, trigger, reason, all the spec's lifecycle
  states appear both in the trace and in the printed transitions, and the trace
  takes every transition of the spec (each source of each row; a row into a final
  state once).
* ``readme-demo``: the same for ``fsm-live demo`` with its defaults, as the
  README's first command runs it (30 s).

Standard library only: the user venv has no test tools.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fsm_live"
#: Needs the ``testing`` extra (Hypothesis); skipped with everything under it.
SKIPPED = "fsm_live.testing"
TRACE_KEYS = ("t", "from", "to", "trigger", "reason")
#: The trace's other record kinds (docs/diagnostics.md); transition rows have no ``kind``.
OTHER_KINDS = ("failure", "stats")
TRANSITION_LINE = re.compile(r"^\s*[\d.]+s\s+(\S+) -> (\S+)\s+\[")
#: Packages of the dev/testing/trio extras: present in a plain install only by accident.
EXTRAS = ("pytest", "hypothesis", "trio", "mypy", "ruff", "trustme")
DEMO_ARGS = ("demo", "--duration", "25", "--seed", "2")
#: The README's first command runs the demo with its defaults (30 s, seed 1).
README_DEMO_ARGS = ("demo",)
#: The stories last 25 and 30 s; a stuck one fails itself (StoryStuck) well before this.
DEMO_TIMEOUT = 120.0


class CheckFailed(Exception):
    """A check's assertion, with the evidence in its message."""


def module_names(package: str = PACKAGE, skipped: str = SKIPPED) -> Iterator[str]:
    """Every module and package under ``package``, found on disk (pkgutil), importing
    only packages to look inside them; ``skipped`` and what is under it left out.

    Unlike ``pkgutil.walk_packages``, a package that cannot be imported is not
    silently passed over: it is yielded, and its import fails in :func:`import_all`.
    """
    yield package
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return
    for info in pkgutil.iter_modules(spec.submodule_search_locations, prefix=f"{package}."):
        if info.name == skipped or info.name.startswith(f"{skipped}."):
            continue
        if info.ispkg:
            try:
                importlib.import_module(info.name)
            except Exception:  # reported by import_all
                yield info.name
                continue
            yield from module_names(info.name, skipped)
        else:
            yield info.name


def import_all(names: list[str]) -> dict[str, str]:
    """Import each module; the failures, as ``{name: "ExceptionType: message"}``."""
    failures: dict[str, str] = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1]
            failures[name] = (
                f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
            )
    return failures


def check_imports(*, wheel: bool = False) -> str:
    found = importlib.util.find_spec(PACKAGE)
    if found is None or found.origin is None:
        raise CheckFailed(f"{PACKAGE} is not installed in {sys.prefix}")
    origin = Path(found.origin).resolve()
    if wheel and origin.parent == ROOT / PACKAGE:
        raise CheckFailed(
            f"{PACKAGE} comes from the source tree ({origin}), not from an "
            f"installed wheel: install with `pip install .` (not -e)"
        )
    names = sorted(set(module_names()))
    failures = import_all(names)
    if failures:
        causes: dict[str, list[str]] = {}
        for name, why in sorted(failures.items()):
            causes.setdefault(why, []).append(name)
        lines = "\n".join(f"    {why}: {', '.join(modules)}" for why, modules in causes.items())
        raise CheckFailed(
            f"{len(failures)} of {len(names)} modules of {PACKAGE} do not import "
            f"in {sys.prefix} (is a dependency missing from pyproject.toml's "
            f"[project] dependencies?):\n{lines}"
        )
    extras = [name for name in EXTRAS if importlib.util.find_spec(name) is not None]
    present = (
        f"; extras' packages present: {', '.join(extras)}"
        if extras
        else "; no extras' packages present"
    )
    where = "the source tree" if origin.parent == ROOT / PACKAGE else "an installed wheel"
    return (
        f"imported all {len(names)} modules of {PACKAGE} outside {SKIPPED}, from {where}{present}"
    )


def states_seen(rows: list[dict[str, object]]) -> set[str]:
    """The states a trace's transition rows enter or leave; raises CheckFailed for a
    bad row.  Records of the other kinds (``failure``, ``stats``: docs/diagnostics.md)
    carry a ``kind`` and are left to ``fsm-live verify``."""
    seen: set[str] = set()
    for number, row in enumerate(rows, 1):
        if row.get("kind") in OTHER_KINDS:
            continue
        if tuple(row) != TRACE_KEYS:
            raise CheckFailed(
                f"trace row {number} has keys {list(row)}, expected {list(TRACE_KEYS)}: {row}"
            )
        seen.update((str(row["from"]), str(row["to"])))
    return seen


def packaged_states() -> tuple[str, ...]:
    """The states of the installed package's spec (the demo goes through all of them)."""
    from fsm_live.spec import Spec

    return tuple(Spec.default().states)


def untaken_transitions(rows: list[dict[str, object]]) -> list[str]:
    """The installed spec's transitions no trace row took: every edge (each source of
    a row), but those into a final state, which a connection takes once: each such
    row from some source."""
    from fsm_live.spec import Spec

    spec = Spec.default()
    taken = {(row["from"], row["trigger"], row["to"]) for row in rows if "kind" not in row}
    missing = [
        f"{source} -[{row.trigger}]-> {row.dest}"
        for source, row in spec.edges()
        if row.dest not in spec.final_states and (source, row.trigger, row.dest) not in taken
    ]
    missing += [
        f"{'|'.join(row.sources)} -[{row.trigger}]-> {row.dest}"
        for row in spec.transitions
        if row.dest in spec.final_states
        and not any((source, row.trigger, row.dest) in taken for source in row.sources)
    ]
    return missing


def states_printed(output: str, states: tuple[str, ...]) -> set[str]:
    """The states of the plain transition lines (``  12.5s  A -> B  [trigger] (reason)``);
    other lines, and states named in a reason, do not count."""
    seen: set[str] = set()
    for line in output.splitlines():
        if (found := TRANSITION_LINE.match(line)) and {found[1], found[2]} <= set(states):
            seen.update((found[1], found[2]))
    return seen


def tail(text: str, lines: int = 15) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in kept) or "    | (nothing)"


def cli_path() -> Path:
    """The ``fsm-live`` console script installed next to this Python."""
    path = Path(sys.executable).parent / "fsm-live"
    if not path.exists():
        raise CheckFailed(
            f"no fsm-live next to {sys.executable}: is fsm_live installed in this venv?"
        )
    return path


def check_demo(demo_args: tuple[str, ...]) -> str:
    cli = cli_path()
    with tempfile.TemporaryDirectory(prefix="fsm-live-user-demo-") as directory:
        trace = Path(directory) / "demo.jsonl"
        argv = [str(cli), *demo_args, "--trace", str(trace)]
        env = {
            name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")
        }
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=DEMO_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.run killed it
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            raise CheckFailed(
                f"`fsm-live {' '.join(demo_args)}` still running after "
                f"{DEMO_TIMEOUT:g} s (killed); its last lines:\n{tail(out)}"
            ) from None
        took = time.monotonic() - started
        command = f"`fsm-live {' '.join(demo_args)}`"
        if done.returncode != 0:
            raise CheckFailed(
                f"{command} exited {done.returncode} after {took:.1f} s; "
                f"stderr:\n{tail(done.stderr)}\n  last lines of stdout:\n"
                f"{tail(done.stdout)}"
            )
        if not trace.exists():
            raise CheckFailed(f"{command} exited 0 but wrote no trace at {trace}")
        rows = [
            json.loads(line)
            for line in trace.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    states = packaged_states()
    in_trace, printed = states_seen(rows), states_printed(done.stdout, states)
    missing = {
        "trace": [s for s in states if s not in in_trace],
        "output": [s for s in states if s not in printed],
    }
    if missing["trace"] or missing["output"]:
        raise CheckFailed(
            f"{command} exited 0 but states are missing: from the trace "
            f"{missing['trace'] or 'none'}, from the output "
            f"{missing['output'] or 'none'}; last lines:\n{tail(done.stdout)}"
        )
    untaken = untaken_transitions(rows)
    if untaken:
        raise CheckFailed(
            f"{command} exited 0 but its trace never took {', '.join(untaken)}; "
            f"last lines:\n{tail(done.stdout)}"
        )
    return (
        f"{command}: exit 0 after {took:.1f} s, {len(rows)} transitions, all "
        f"{len(states)} states in its trace and output, every transition of the spec"
    )


CHECKS: dict[str, Callable[[argparse.Namespace], str]] = {
    "imports": lambda args: check_imports(wheel=args.wheel),
    "demo": lambda args: check_demo(DEMO_ARGS),
    "readme-demo": lambda args: check_demo(README_DEMO_ARGS),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "checks",
        nargs="*",
        metavar="CHECK",
        help=f"checks to run, of {', '.join(CHECKS)} (default: all)",
    )
    parser.add_argument(
        "--wheel",
        action="store_true",
        help="fail unless fsm_live is installed (pip install .), not the "
        "source tree (an editable install)",
    )
    args = parser.parse_args(argv)
    for name in args.checks:
        if name not in CHECKS:
            parser.error(f"unknown check {name!r} (known: {', '.join(CHECKS)})")
    venv = Path(sys.prefix).name
    failed = 0
    for name in args.checks or CHECKS:
        started = time.monotonic()
        try:
            line = CHECKS[name](args)
        except CheckFailed as exc:
            print(f"ci: {venv}: {name}: FAILED: {exc}", flush=True)
            failed += 1
        else:
            print(
                f"ci: {venv}: {name}: ok ({time.monotonic() - started:.1f} s): {line}", flush=True
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
