"""``fsm-live report TRACE... | DIR``: what the traces say, for a person.

For one trace, many, or a fleet's ``--trace-dir``: per connection and for all,
time in each state, availability, reconnects and time back, failures by class
over time, heartbeats with their round trips, messages, token refreshes, and
the spec's edges with how often each was taken (the figures:
:mod:`fsm_live.diagnostics.report`).

Output: a rich report on a terminal, the same tables as plain text into a pipe
or a file; ``--json``: the figures as JSON on stdout instead; ``--html FILE``:
also one self-contained page with charts (needs the ``report`` extra).

Exit codes: 0 the report was written; 1 it could not be (``--html`` without
Plotly, or FILE cannot be written); 2 bad arguments (a trace or directory that
does not exist or cannot be read, an invalid ``--spec``), with one line naming
what was typed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console, RenderableType

from fsm_live.cli._output import EXIT_BAD_USAGE, PROG, Output, Subparsers, check_writable
from fsm_live.cli._specs import load_spec
from fsm_live.cli.views.report import report_view
from fsm_live.diagnostics.files import load_reports, trace_paths
from fsm_live.diagnostics.html import render_html, require_plotly
from fsm_live.diagnostics.report import combine
from fsm_live.diagnostics.summary import report_json
from fsm_live.errors import ConfigError, MissingExtra
from fsm_live.spec import Spec

__all__ = ("EXIT_BAD_USAGE", "EXIT_FAILED", "PLAIN_WIDTH", "add", "plain_text", "run")

EXIT_FAILED = 1
#: Columns of the plain-text report (a pipe or a file has no width of its own).
PLAIN_WIDTH = 120


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="figures and charts from trace files",
        description="Report what traces say: time in each state, availability, reconnects "
        "and time back, failures by class over time, heartbeats and round trips, "
        "messages, token refreshes, and how often each edge of the spec was taken; "
        "per connection and for all.",
        epilog="Exit codes: 0 written; 1 Plotly is missing for --html (pip install "
        "'fsm_live[report]'), or writing the page failed; 2 bad arguments (among them a "
        "--html path that cannot be opened for writing, checked before the report).",
    )
    parser.add_argument(
        "traces",
        nargs="+",
        metavar="TRACE",
        help="a trace file (JSON lines), or a directory of *.jsonl traces "
        "(fsm-live fleet --trace-dir)",
    )
    parser.add_argument(
        "--spec",
        metavar="SPEC",
        help="the spec the traces ran (default: the packaged connection.yaml)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON instead of tables"
    )
    parser.add_argument(
        "--html", metavar="FILE", help="also write a self-contained HTML page with charts to FILE"
    )
    parser.set_defaults(handler=run)


def plain_text(view: RenderableType, width: int = PLAIN_WIDTH) -> str:
    """``view`` as plain text ``width`` columns wide: no escape codes, no trailing blanks."""
    console = Console(width=width, color_system=None, highlight=False, force_terminal=False)
    with console.capture() as capture:
        console.print(view)
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"


def run(args: argparse.Namespace, out: Output) -> int:
    try:
        spec = Spec.default() if args.spec is None else load_spec(args.spec)
        paths = trace_paths(args.traces)
        if args.html is not None:
            require_plotly()
            check_writable(args.html, "--html")
        reports = load_reports(spec, paths)
    except ConfigError as exc:
        out.problem(f"{PROG} report: error: {exc}")
        return EXIT_BAD_USAGE
    except MissingExtra as exc:
        out.problem(f"{PROG} report: {exc}")
        return EXIT_FAILED
    everything = combine(reports)
    if args.json:
        out.text(json.dumps(report_json(spec, reports, everything), indent=2) + "\n")
    else:
        view = report_view(spec, reports, everything)
        if out.stdout.isatty():
            Console(file=out.stdout, highlight=False).print(view)
        else:
            out.text(plain_text(view))
    if args.html is not None:
        page = render_html(spec, reports, everything)
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as exc:
            out.problem(f"{PROG} report: {args.html}: cannot write: {exc.strerror or exc}")
            return EXIT_FAILED
        out.stderr.write(
            f"{PROG} report: wrote {args.html} ({len(page) // 1024} KiB, opens offline)\n"
        )
    return 0
