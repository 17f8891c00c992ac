"""Loading YAML that someone else wrote: safe tags only, and a bound on alias expansion.

A YAML alias reuses its anchor's node, so a few hundred bytes of nested aliases
("billion laughs") describe a document of billions of nodes. Loading shares the nodes,
but anything that walks the data afterwards (validation, an error message quoting a
value) expands it, for seconds and gigabytes. Every YAML file Conveyor reads goes through
here: the document is composed, its expanded size (nodes plus scalar characters) is
computed once per distinct node, and a document whose aliases add more than
`MAX_ALIAS_EXPANSION` is refused before anything is built from it.

This module depends on PyYAML only, so any layer can use it.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# What aliases may add to a document, in nodes plus scalar characters: far above any
# hand-written anchors (a shared block reused by a hundred jobs), far below a bomb.
MAX_ALIAS_EXPANSION = 1_000_000
# The most of a value an error message quotes.
MAX_ECHO_CHARS = 200

SAFE_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# All scalars as strings: for formats where `1.10` must stay the text "1.10".
STRINGS_LOADER: type[Any] = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class AliasExpansionError(yaml.MarkedYAMLError):
    """A document whose aliases expand it past the bound, or whose anchor contains itself.

    A `yaml.YAMLError` (with a mark), so every reader's existing YAML error handling
    reports it as it reports a syntax error."""


def compose(text: str | bytes, loader: type[Any] = SAFE_LOADER) -> Node | None:
    """The document's node tree (None when empty), refused when its aliases explode."""
    parser = loader(text)
    try:
        root: Node | None = parser.get_single_node()
    finally:
        parser.dispose()
    if root is not None:
        check_expansion(root)
    return root


def load(text: str | bytes, loader: type[Any] = SAFE_LOADER) -> Any:
    """`yaml.load` with `loader` (a safe one), after the same check as `compose`."""
    parser = loader(text)
    try:
        root = parser.get_single_node()
        if root is None:
            return None
        check_expansion(root)
        return parser.construct_document(root)
    finally:
        parser.dispose()


def check_expansion(root: Node, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Raise `AliasExpansionError` when aliases add more than `limit` to the document.

    Iterative, and each distinct node is weighed once: the check costs what the text
    costs, however large the expansion it measures."""
    own: dict[int, int] = {}  # weight of each distinct node on its own
    own_total = 0  # of the nodes weighed so far: what the document holds without aliases
    expanded: dict[int, int] = {}  # weight of each distinct node with its aliases expanded
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in expanded:
            continue
        children = _children(node)
        if not children_done:
            if key in open_nodes:
                raise _refusal(node, "an anchor is used inside itself")
            open_nodes.add(key)
            own[key] = _own_weight(node)
            own_total += own[key]
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes:
                    raise _refusal(child, "an anchor is used inside itself")
                stack.append((child, False))
            continue
        open_nodes.discard(key)
        expanded[key] = own[key] + sum(expanded[id(child)] for child in children)
        # Never more than what aliases add to the whole document, so stopping early is right.
        if expanded[key] - own_total > limit:
            raise _refusal(
                node,
                f"aliases expand the document past {limit:,} nodes and characters: "
                "refused as an alias bomb",
            )


def excerpt(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """`repr(value)` for an error message, cut to `limit` characters however large it is."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _own_weight(node: Node) -> int:
    return 1 + (len(node.value) if isinstance(node, ScalarNode) else 0)


def _refusal(node: Node, problem: str) -> AliasExpansionError:
    return AliasExpansionError(problem=problem, problem_mark=node.start_mark)


def _short_repr() -> reprlib.Repr:
    # reprlib stops early at each level, so quoting a large value never builds it whole.
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxstring = MAX_ECHO_CHARS
    short.maxother = MAX_ECHO_CHARS
    short.maxlist = short.maxdict = short.maxtuple = short.maxset = 8
    return short


_SHORT_REPR = _short_repr()
