"""YAML text to plain data, keeping each item's line and refusing duplicate keys.

PyYAML's loaders keep the last of two equal keys in a mapping and say nothing
(a state listed twice loses the first one's ``final: true``; a second top-level
``transitions:`` replaces the first).  :func:`parse` composes the node tree
instead, builds the data itself, and reports every duplicate key, at any depth,
naming both lines.

Speed: composing runs in libyaml (``yaml.CSafeLoader``) where PyYAML was built
with it (``yaml.__with_libyaml__``), else in pure Python (``yaml.SafeLoader``);
the data is then built from the nodes here, with plain strings taken as they are
and other scalars constructed by PyYAML's safe constructor (YAML 1.1 rules, as
``yaml.safe_load``).  Merge keys (``<<``) are refused: the validator would not
see their lines.

Bounds (a spec file may come from anyone: ``fsm-live check`` reads it with time
and memory a small multiple of its size).  Every alias is expanded into its own
copy, so that each item keeps its line; aliases may repeat at most
:data:`MAX_ALIAS_NODES` nodes in all ("billion laughs", 596 bytes, repeats 10**9;
``yaml.safe_load`` shares the copies instead, but then the validator would walk
them all); an alias used inside its own anchor is refused; a document nests at
most :data:`MAX_DEPTH` levels.  A value the safe constructor cannot build (an
integer of more than 4,300 digits, a date with month 13) is a problem on its line.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from fsm_live.errors import FsmLiveError

__all__ = ("LIBYAML", "MAX_ALIAS_NODES", "MAX_DEPTH", "Lines", "Path", "YamlProblem", "parse")

#: An item's path in the data: keys and list indexes from the top.
Path = tuple[Any, ...]
#: The 1-based line of each item, by path; an entry is located at its key.
Lines = dict[Path, int]

#: The most nodes aliases may repeat in one document, in all (a spec's aliases share
#: a task list or a few settings: dozens of nodes).
MAX_ALIAS_NODES: Final = 10_000
#: The most levels one document nests (a spec nests about 6).
MAX_DEPTH: Final = 64
#: The most characters of a value an error quotes.
_QUOTED: Final = 200

#: True when PyYAML's libyaml binding is available (the fast path).
LIBYAML: Final = bool(getattr(yaml, "__with_libyaml__", False))
_Base: Final[Any] = yaml.CSafeLoader if LIBYAML else yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc]
    """The safe loader with implicit tag resolution memoised per document.

    PyYAML resolves every plain scalar's tag with regular expressions, in Python
    even under libyaml; a spec repeats its names (states, triggers) thousands of
    times, so most resolutions are repeats.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._resolved: dict[tuple[str, Any], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]
        key = (value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = self._resolved[key] = super().resolve(kind, value, implicit)
        return tag


_STR_TAG: Final = "tag:yaml.org,2002:str"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_KEY: Final = "<key>"


class YamlProblem(FsmLiveError):
    """The text is not YAML; ``line`` (1-based) is where the parser stopped, if known.

    Internal: the validator turns it into a located :class:`~fsm_live.errors.SpecError`."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse(text: str) -> tuple[Any, Lines, list[tuple[Path, int, str]]]:
    """Parse one YAML document: ``(data, lines, problems)``.

    ``data`` is None for an empty document.  ``problems`` are duplicate keys and
    merge keys as ``(path, line, message)``, the line being the offending
    key's; the first of two equal keys is kept.  Raises :class:`YamlProblem` when the text is not
    YAML (or holds more than one document), or is past a bound of the module docstring.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        builder = _Builder(loader)
        data = builder.build(node, ())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlProblem(None if mark is None else mark.line + 1, problem) from None
    except RecursionError:  # composing in pure Python (no libyaml) recurses per level
        raise YamlProblem(None, f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    return data, builder.lines, builder.problems


class _Builder:
    """Builds plain data from composed nodes, recording lines and duplicate keys.

    Lines are recorded where problems are located: the document, each mapping
    entry (at its key) and each sequence item; a scalar mapping value is located
    at its key.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.lines: Lines = {}
        self.problems: list[tuple[Path, int, str]] = []
        self._built: set[int] = set()  # collections built once (ids of their nodes)
        self._open: set[int] = set()  # collections being built: the current path
        self._repeated = 0  # nodes built again by aliases
        self._alias_line: int | None = None  # the entry holding the alias being expanded

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        return self.value(node, path)

    def value(self, node: yaml.Node, path: Path) -> Any:
        """The data of ``node`` (its own line already recorded by the caller)."""
        if self._alias_line is not None:
            self._repeated += 1
            if self._repeated > MAX_ALIAS_NODES:
                raise YamlProblem(
                    self._alias_line,
                    f"aliases repeat more than {MAX_ALIAS_NODES} nodes (refused: a YAML bomb?)",
                )
        if type(node) is yaml.ScalarNode:
            if node.tag == _STR_TAG:
                return node.value
            return self.construct(node)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self.construct(node)  # pragma: no cover - no other nodes
        ident = id(node)
        if ident in self._open:
            raise YamlProblem(self.line_of(path), "an alias used inside its own anchor")
        if len(path) >= MAX_DEPTH:
            raise YamlProblem(self.line_of(path), f"nested more than {MAX_DEPTH} levels deep")
        expands = ident in self._built and self._alias_line is None
        if expands:  # an alias: its copy counts against MAX_ALIAS_NODES
            self._alias_line = self.line_of(path)
        self._open.add(ident)
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return self.sequence(node, path)
        finally:
            self._open.discard(ident)
            self._built.add(ident)
            if expands:
                self._alias_line = None

    def line_of(self, path: Path) -> int:
        """The line of the entry at ``path`` (of a sequence item: of its sequence,
        since an aliased item's own mark is its anchor's)."""
        lines = self.lines
        if path and type(path[-1]) is int and path[:-1] in lines:
            return lines[path[:-1]]
        return lines.get(path, 1)

    def construct(self, node: yaml.Node) -> Any:
        """A scalar's value by PyYAML's safe constructor, or a problem on its line."""
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:
            message = str(exc)
            if len(message) > _QUOTED:
                message = f"{message[:_QUOTED]}..."
            kind = node.tag.rpartition(":")[2]  # tag:yaml.org,2002:int -> int
            raise YamlProblem(
                node.start_mark.line + 1, f"cannot read this {kind} value: {message}"
            ) from None

    def sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        lines = self.lines
        items = []
        for i, item in enumerate(node.value):
            item_path = (*path, i)
            lines[item_path] = item.start_mark.line + 1
            items.append(self.value(item, item_path))
        return items

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        lines = self.lines
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _STR_TAG and type(key_node) is yaml.ScalarNode:
                key = key_node.value
            elif key_node.tag == _MERGE_TAG:
                self.problems.append((path, key_line, "merge keys (<<) are not supported"))
                continue
            else:
                key = self.value(key_node, (*path, _KEY))
                if not isinstance(key, str | int | float | bool) and key is not None:
                    key = str(key)
            entry = (*path, key)
            if key in result:
                self.problems.append(
                    (
                        entry,
                        key_line,
                        f"duplicate key {key!r} at lines {lines[entry]} and "
                        f"{key_line} (YAML loaders silently keep only one)",
                    )
                )
                continue
            # An entry is located at its key (a block value starts on the next line).
            lines[entry] = key_line
            result[key] = self.value(value_node, entry)
        return result
