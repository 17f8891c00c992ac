"""Dependencies point down: an import scan of src/conveyor.

Every `import` and `from ... import` counts, at module level, inside functions and under
`if TYPE_CHECKING:` alike: a lazy import is still a dependency, and hiding a cycle in a
function does not remove it. The layers are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "conveyor"
ROOT = "<root>"  # conveyor/__init__.py itself

# Lowest first. A package may import packages of its own layer and of lower ones.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({ROOT, "errors", "states", "safe_yaml", "backends", "clock", "vcs"}),
    frozenset({"spec"}),
    frozenset({"store"}),
    frozenset({"findings", "supply"}),
    frozenset({"engine"}),
    frozenset({"analysis"}),
    frozenset({"deploy"}),
    frozenset({"flags"}),
    frozenset({"approvals"}),
    frozenset({"verify", "forge"}),
    frozenset({"steps"}),
    frozenset({"service", "observe"}),  # observe may roll back through service
    frozenset({"cli", "server", "__main__"}),  # the hosts: nothing imports them
)

Edges = Mapping[str, Set[str]]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, packages named by their `__init__.py`."""
    found: dict[str, Path] = {}
    for path in (SOURCE / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _owner(name: str, modules: Mapping[str, Path]) -> str:
    """The module that defines `name` (a module, or a name inside one)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> Iterator[str]:
    """The absolute dotted names an import statement names: modules, or names in one
    (`from a.b import c` names `a.b.c`, which is module c or a name defined in a.b)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    yield from (f"{base}.{alias.name}" for alias in node.names)


def _edges(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported(node, package):
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    target = _owner(name, modules)
                    if target and target != module:
                        edges[module].add(target)
    return edges


@functools.cache
def _scan() -> Edges:
    return _edges(_modules())


def _package(module: str) -> str:
    """`conveyor.engine.plan` -> `engine`; the root package is ROOT."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _layer(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS")


def _strongly_connected(edges: Edges) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    nodes = sorted(set(edges) | {t for targets in edges.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges.get(target, ())))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _crossing(edges: Edges, lower: Set[str], higher: Set[str]) -> list[str]:
    """Imports from a package in `lower` of a module in a package in `higher`."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in edges.items()
        for target in targets
        if _package(module) in lower and _package(target) in higher
    )


def test_the_scan_sees_module_level_and_function_level_imports() -> None:
    edges = _scan()
    assert "conveyor.engine.plan" in edges["conveyor.service.runs"]  # module level
    assert "conveyor.spec.loader" in edges["conveyor.cli.project"]  # inside a function
    assert "conveyor.store.store" in edges["conveyor.service.project"]  # TYPE_CHECKING


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(edges) == [["a", "b", "c"]]


def test_no_module_is_in_an_import_cycle() -> None:
    cycles = _strongly_connected(_scan())
    assert cycles == [], "\n".join(" <-> ".join(cycle) for cycle in cycles)


def test_every_package_has_a_layer() -> None:
    packages = {_package(module) for module in _modules()}
    assert sorted(p for p in packages if not any(p in layer for layer in LAYERS)) == []


def test_no_package_imports_a_higher_layer() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _scan().items()
        for target in targets
        if _layer(_package(target)) > _layer(_package(module))
    )
    assert upward == [], "\n".join(upward)


def test_the_core_does_not_import_the_hosts_or_the_steps() -> None:
    core = {"engine", "store", "analysis", "deploy"}
    crossing = _crossing(_scan(), core, {"service", "cli", "server", "steps"})
    assert crossing == [], "\n".join(crossing)


def test_the_spec_and_verify_do_not_import_the_steps() -> None:
    crossing = _crossing(_scan(), {"spec", "verify", "engine"}, {"steps"})
    assert crossing == [], "\n".join(crossing)


def test_analysis_does_not_import_deploy() -> None:
    crossing = _crossing(_scan(), {"analysis"}, {"deploy"})
    assert crossing == [], "\n".join(crossing)
