"""The traffic generator is product code: its modules import each other without cycles, and nothing in
the `pipeline` package imports the benchmarks in `load_tests/` (which a deployed image does not hold).

Imports are read from the source (every `import`, including those inside functions and under
`TYPE_CHECKING`), so a cycle hidden in a function body or a type annotation is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

PIPELINE = Path(pipeline.__file__).parent
TRAFFIC = "pipeline.traffic"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (for `from a import b`: `a` and `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the project imports absolutely"
            names.add(node.module or "")
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def traffic_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (PIPELINE / "traffic").glob("*.py")}
    return {name: imported_modules(path) & modules.keys() - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as a path [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_traffic_modules_import_each_other_without_cycles():
    graph = traffic_graph()
    assert {f"{TRAFFIC}.generator", f"{TRAFFIC}.invalid", f"{TRAFFIC}.cli"} <= graph.keys()
    assert f"{TRAFFIC}.invalid" in graph[f"{TRAFFIC}.generator"]  # the graph does see real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or ())


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_nothing_in_the_pipeline_package_imports_load_tests():
    offenders = [
        f"{path.relative_to(PIPELINE.parent)}: {name}"
        for path in sorted(PIPELINE.rglob("*.py"))
        for name in sorted(imported_modules(path))
        if name == "load_tests" or name.startswith("load_tests.")
    ]
    assert offenders == []
