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
"""

from __future__ import annotations

from typing import Any, Final

import yaml

__all__ = ("LIBYAML", "Lines", "Path", "parse")

#: An item's path in the data: keys and list indexes from the top.
Path = tuple[Any, ...]
#: The 1-based line of each item, by path; an entry is located at its key.
Lines = dict[Path, int]

#: True when PyYAML's libyaml binding is available (the fast path).
LIBYAML: Final = bool(getattr(yaml, "__with_libyaml__", False))
_Loader: Final[Any] = yaml.CSafeLoader if LIBYAML else yaml.SafeLoader
_STR_TAG: Final = "tag:yaml.org,2002:str"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_KEY: Final = "<key>"


class YamlProblem(Exception):
    """The text is not YAML; ``line`` (1-based) is where the parser stopped, if known."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse(text: str) -> tuple[Any, Lines, list[tuple[Path, int, str]]]:
    """Parse one YAML document: ``(data, lines, problems)``.

    ``data`` is None for an empty document.  ``problems`` are duplicate keys and
    merge keys as ``(path, line, message)``, the line being the offending
    key's; the first of two equal keys is kept.  Raises :class:`YamlProblem` when the text is not
    YAML (or holds more than one document).
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
    finally:
        loader.dispose()
    return data, builder.lines, builder.problems


class _Builder:
    """Builds plain data from composed nodes, recording lines and duplicate keys."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.lines: Lines = {}
        self.problems: list[tuple[Path, int, str]] = []

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value
            return self.loader.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        return self.loader.construct_object(node, deep=True)  # pragma: no cover - no other nodes

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        lines = self.lines
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self.problems.append((path, key_line, "merge keys (<<) are not supported"))
                continue
            key = self.build(key_node, (*path, _KEY))
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            if key in result:
                first = lines[(*path, key)]
                self.problems.append(((*path, key), key_line,
                                      f"duplicate key {key!r} at lines {first} and {key_line} "
                                      f"(YAML loaders silently keep only one)"))
                continue
            result[key] = self.build(value_node, (*path, key))
            # An entry is located at its key (a block value starts on the next line).
            lines[(*path, key)] = key_line
        return result
