"""Parse YAML once into plain data plus the file position of every key and value.

The libyaml composer gives a node tree whose nodes carry start marks; walking it once
yields both the data handed to pydantic and a map from key paths to line:col, so any
later error (validation, graph, step parameters) can point at the exact spot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conveyor import safe_yaml
from conveyor.errors import SpecError

KeyPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line and column

_YAML_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG + "merge"
# Scalars typed as YAML 1.1 would; everything else (timestamps, binary) stays the text
# written, which is what a CI spec means by `2024-01-01` or a branch name.
_TYPED_SCALARS = {
    _YAML_TAG + "int": SafeConstructor.construct_yaml_int,
    _YAML_TAG + "float": SafeConstructor.construct_yaml_float,
    _YAML_TAG + "bool": SafeConstructor.construct_yaml_bool,
    _YAML_TAG + "null": SafeConstructor.construct_yaml_null,
}
_CONSTRUCTOR = SafeConstructor()
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_KEY_CHARS = 80


def format_key_path(path: KeyPath) -> str:
    """`jobs.build.needs[1]`; keys that are not plain words are quoted: `jobs["a.b"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        # An error message is no place for the whole of a long key.
        key = part if len(part) <= _MAX_KEY_CHARS else part[: _MAX_KEY_CHARS - 3] + "..."
        if _PLAIN_KEY.match(key):
            text += f".{key}" if text else key
        else:
            text += f'["{key}"]'
    return text


@dataclass(frozen=True)
class Locator:
    """Where each key path sits in the file: its key (`runn:`) and its value."""

    values: Mapping[KeyPath, Position]
    keys: Mapping[KeyPath, Position]

    def locate(self, path: KeyPath) -> Position | None:
        """The value's position, else its key's, else the nearest located ancestor's."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            found = self.values.get(prefix) or self.keys.get(prefix)
            if found is not None:
                return found
        return None

    def locate_key(self, path: KeyPath) -> Position | None:
        """The key's position (for unknown or duplicate keys), else as `locate`."""
        return self.keys.get(path) or self.locate(path)


@dataclass(frozen=True)
class LocatedDocument:
    data: dict[str, Any]
    locator: Locator


def parse_yaml(
    text: str, file: str, *, key_nouns: Mapping[KeyPath, str] | None = None
) -> LocatedDocument:
    """Parse one YAML document whose top level is a mapping.

    `key_nouns` names the keys of some mappings in duplicate-key errors, e.g.
    `{("jobs",): "job name"}` gives "duplicate job name 'x'".
    """
    try:
        root = safe_yaml.compose(text)  # refuses alias bombs before anything walks them
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, text, file) from None
    except yaml.reader.ReaderError as error:
        raise _reader_error(error, text, file) from None
    if root is None:
        raise SpecError(
            "the file is empty",
            file=file,
            hint="start with `version: 1` and a `jobs:` mapping, or run `conveyor init`",
        )
    if not isinstance(root, MappingNode):
        line, column = _position(root)
        raise SpecError(
            f"the top level must be a mapping of keys (version, jobs, ...), not {_kind(root)}",
            file=file,
            line=line,
            column=column,
        )
    builder = _Builder(file, key_nouns or {})
    try:
        data = builder.build(root, ())
    except RecursionError:
        raise SpecError("the document is nested too deeply", file=file) from None
    return LocatedDocument(data=data, locator=Locator(builder.values, builder.keys))


def _syntax_error(error: yaml.MarkedYAMLError, text: str, file: str) -> SpecError:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or "invalid YAML"
    message = f"invalid YAML: {problem}"
    if error.context and error.context_mark is not None:
        message += f" ({error.context} at line {error.context_mark.line + 1})"
    hint = None
    if mark is not None and _is_tab_at(text, mark):
        hint = "indent with spaces: YAML does not allow tabs"
    return SpecError(
        message,
        file=file,
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
        hint=hint,
    )


def _reader_error(error: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    """A character YAML refuses anywhere, such as a control character."""
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    return SpecError(
        f"invalid YAML: character #x{error.character:04x}: {error.reason}",
        file=file,
        line=line,
        column=column,
    )


def _is_tab_at(text: str, mark: yaml.Mark) -> bool:
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column : mark.column + 1] == "\t"


def _position(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a single value"


@dataclass
class _Builder:
    file: str
    key_nouns: Mapping[KeyPath, str]
    values: dict[KeyPath, Position] = field(default_factory=dict)
    keys: dict[KeyPath, Position] = field(default_factory=dict)
    # An alias reuses its anchor's node: build it once, share the data, and refuse
    # an anchor used inside itself (the data would be infinite).
    _built: dict[int, Any] = field(default_factory=dict)
    _building: set[int] = field(default_factory=set)

    def build(self, node: Node, path: KeyPath) -> Any:
        node_id = id(node)
        if node_id in self._built:
            return self._built[node_id]  # an alias: positions stay at the alias's key
        if node_id in self._building:
            raise self._error("an anchor is used inside itself", node, path)
        self.values[path] = _position(node)
        if isinstance(node, ScalarNode):
            value = self._scalar(node, path)
        else:
            self._building.add(node_id)
            if isinstance(node, SequenceNode):
                value = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            else:
                assert isinstance(node, MappingNode)
                value = self._mapping(node, path)
            self._building.discard(node_id)
        self._built[node_id] = value
        return value

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        construct = _TYPED_SCALARS.get(node.tag)
        if construct is not None:
            try:
                return construct(_CONSTRUCTOR, node)
            except ValueError:
                raise self._error(
                    f"{safe_yaml.excerpt(node.value)} is not a valid "
                    f"{node.tag.removeprefix(_YAML_TAG)}",
                    node,
                    path,
                ) from None
        if not node.tag.startswith(_YAML_TAG):
            raise self._error(f"unsupported YAML tag {safe_yaml.excerpt(node.tag)}", node, path)
        return node.value

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            key = self._key(key_node, path)
            key_path = (*path, key)
            if key in result:
                raise self._duplicate(key, key_node, key_path)
            self.keys[key_path] = _position(key_node)
            result[key] = self.build(value_node, key_path)
        for source in merged:
            self._merge(result, source, path)
        return result

    def _key(self, node: Node, path: KeyPath) -> str:
        # Keys are always the text written: `on:` is the key "on", never True.
        if not isinstance(node, ScalarNode):
            raise self._error("a key must be a plain name, not a list or mapping", node, path)
        return str(node.value)

    def _merge(self, result: dict[str, Any], source: Node, path: KeyPath) -> None:
        """`<<: *defaults` or `<<: [*a, *b]`: copy keys not written here (YAML merge)."""
        sources = source.value if isinstance(source, SequenceNode) else [source]
        for item in sources:
            if not isinstance(item, MappingNode):
                raise self._error("`<<` merges only mappings", item, path)
            data = self.build(item, (*path, "<<"))
            for key, value in data.items():
                result.setdefault(key, value)

    def _duplicate(self, key: str, node: Node, key_path: KeyPath) -> SpecError:
        noun = self.key_nouns.get(key_path[:-1], "key")
        first_line = self.keys[key_path][0]
        return self._error(
            f"duplicate {noun} {safe_yaml.excerpt(key)} (first defined at line {first_line})",
            node,
            key_path,
        )

    def _error(self, message: str, node: Node, path: KeyPath) -> SpecError:
        line, column = _position(node)
        return SpecError(
            message, file=self.file, line=line, column=column, key_path=format_key_path(path)
        )
