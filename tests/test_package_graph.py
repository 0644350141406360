"""Arrows point one way (docs/architecture.md): the package graph has no cycle, and what a
participant installs (connectors, the SDK) never imports the switch's server.

Every import in the tree is read from source — module level and inside functions alike, so
a cycle hidden behind a function-level import is still one. A package here is a second-level
package (`switch.core`, `connectors.stream`, ...) or a top-level one (`ledger`, `bench`).
Entry points — `switch.app` (the composition root), `switch.cli`, `switch.demo`, the process
launcher `switch.launcher`, `switch.testing` and every `cli.py` / `__main__.py` — assemble
everything and are imported by nobody but other entry points and the bench, so they stand
outside the graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("switch", "connectors", "ledger", "bench")
ENTRY_MODULES = {"switch.app", "switch.cli", "switch.testing", "switch.demo", "switch.launcher"}
ENTRY = "<entry points>"


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in TOP:
        return None
    if module in ENTRY_MODULES or parts[-1] in ("cli", "__main__"):
        return ENTRY
    if parts[0] in ("switch", "connectors"):
        return ".".join(parts[:2]) if len(parts) > 1 else parts[0]
    return parts[0]


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imports() -> dict[tuple[str, str], set[str]]:
    """(from package, to package) -> the files that import across that edge."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            source = package_of(module_name(path))
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets = [node.module]
                else:
                    continue
                for target in targets:
                    destination = package_of(target)
                    if destination is None or destination in (source, "switch"):
                        continue  # `import switch` reads only the version
                    edges[(source, destination)].add(str(path.relative_to(ROOT)))
    return edges


def test_no_import_cycle_between_packages():
    edges = imports()
    graph: dict[str, set[str]] = defaultdict(set)
    for source, destination in edges:
        if source != ENTRY:
            graph[source].add(destination)
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    explained = [f"{cycle}  (via {sorted(edges[(cycle.split(' -> ')[0], cycle.split(' -> ')[1])])})"
                 for cycle in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(explained)


def test_entry_points_are_imported_only_by_entry_points_and_the_bench():
    edges = imports()
    wrong = {edge: files for edge, files in edges.items()
             if edge[1] == ENTRY and edge[0] not in (ENTRY, "bench")}
    assert not wrong, wrong


def test_connectors_and_the_sdk_never_import_the_server():
    edges = imports()
    wrong = {edge: files for edge, files in edges.items()
             if edge[0].startswith("connectors.") and edge[1] in ("switch.server", ENTRY)}
    assert not wrong, wrong


def test_the_core_and_the_ledger_import_no_outer_package():
    allowed = {"switch.core": {"ledger", "switch.directory"}, "ledger": set(),
               "switch.directory": set()}
    edges = imports()
    wrong = {edge: files for edge, files in edges.items()
             if edge[0] in allowed and edge[1] not in allowed[edge[0]]}
    assert not wrong, wrong
