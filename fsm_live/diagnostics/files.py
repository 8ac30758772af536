"""Which files a report reads, and the connection each one is."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from fsm_live.diagnostics.records import read_trace_file
from fsm_live.diagnostics.report import ConnectionReport, analyze
from fsm_live.errors import ConfigError
from fsm_live.spec import Spec

__all__ = ("connection_name", "load_reports", "trace_paths")


def trace_paths(arguments: Iterable[str | Path]) -> list[Path]:
    """The trace files ``arguments`` name: files as given, and a directory's ``*.jsonl``
    files (sorted), as ``fsm-live fleet --trace-dir`` writes them.

    Raises :class:`ConfigError` naming the argument as typed: it does not exist, or
    is a directory without ``*.jsonl`` files.
    """
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise ConfigError(str(argument), "a directory without *.jsonl trace files")
            paths += found
        elif path.exists():
            paths.append(path)
        else:
            raise ConfigError(str(argument), "no such file or directory")
    return paths


def connection_name(path: Path) -> str:
    """The connection a trace file is: its name without ``.jsonl``, ``%XX`` decoded (a
    fleet's ``team%2Fops.jsonl`` is ``team/ops``)."""
    return urllib.parse.unquote(path.name.removesuffix(".jsonl"))


def load_reports(spec: Spec, paths: Iterable[Path]) -> list[ConnectionReport]:
    """One report per trace file.  Raises :class:`ConfigError` naming a file that
    cannot be read or is not UTF-8 text."""
    reports = []
    paths = list(paths)
    names = [connection_name(path) for path in paths]
    for path, name in zip(paths, names, strict=True):
        try:
            trace = read_trace_file(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(str(path), f"not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
        unique = name if names.count(name) == 1 else str(path)
        reports.append(analyze(unique, spec, trace.lines))
    return reports
