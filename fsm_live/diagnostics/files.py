"""Which files a report reads, and the connection each one is."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

from fsm_live.diagnostics.records import BadLine, Line, Transition, read_trace_file
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
    cannot be read, is not UTF-8 text, holds no record at all, or names a state the
    spec does not have (a trace of another spec: figures of it would all be zero)."""
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
        _check_belongs(spec, path, trace.lines)
        unique = name if names.count(name) == 1 else str(path)
        reports.append(analyze(unique, spec, trace.lines))
    return reports


def _check_belongs(spec: Spec, path: Path, lines: Sequence[Line]) -> None:
    if lines and all(isinstance(line, BadLine) for line in lines):
        raise ConfigError(str(path), "no record of a trace in it (fsm-live verify names each line)")
    for line in lines:
        if isinstance(line, Transition):
            unknown = next((s for s in (line.source, line.dest) if s not in spec.states), None)
            if unknown is not None:
                raise ConfigError(
                    f"{path}:{line.line}",
                    f"{unknown!r} is not a state of {spec.source} (a trace of another "
                    f"spec? name it with --spec)",
                )
