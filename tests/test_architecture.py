"""The package's imports point down only (docs/ARCHITECTURE.md), and no module imports itself in a circle.

Every package has its layer, bottom to top: runtime, space, io (image files, atomic writes) -> models, metrics ->
preprocess -> data -> losses, evaluation, inference -> engine -> benchmarks, api -> commands (every other top-level
module, and the demo). A module may import its own package and the layers below; two packages of one layer never
import each other. Every import counts, also those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "bgmatting"

LAYERS: dict[str, int] = {
    "runtime": 0, "space": 0, "io": 0,
    "models": 1, "metrics": 1,
    "preprocess": 2,
    "data": 3,
    "losses": 4, "evaluation": 4, "inference": 4,
    "engine": 5,
    "benchmarks": 6, "api": 6,
}
COMMAND_LAYER = 7  # every other top-level module: train, evaluate, infer, export, bench, cli, the demo ...


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """``bgmatting.io`` -> ``data``; ``bgmatting`` itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(part: str) -> int:
    return LAYERS.get(part, COMMAND_LAYER)


def _imports(path: Path, module: str) -> set[str]:
    """Every ``bgmatting.*`` module imported anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bgmatting"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("bgmatting"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in files and m != name} for name, path in files.items()}


def test_imports_point_down_only():
    problems = []
    for module, imported in _graph().items():
        here = _part(module)
        for target in imported:
            there = _part(target)
            if here == there or not there:
                continue
            if _layer(there) > _layer(here) or (_layer(there) == _layer(here) and _layer(here) < COMMAND_LAYER):
                problems.append(f"{module} (layer {_layer(here)}) imports {target} (layer {_layer(there)})")
    assert not problems, "upward or sideways imports:\n" + "\n".join(sorted(problems))


def test_no_circular_imports():
    # a package's __init__ re-exporting its own modules is the normal way in, not a cycle
    graph = {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in _graph().items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("command", ["train", "evaluate", "infer", "export", "bench"])
def test_commands_hold_no_library_code_below_them(command):
    """Library modules never import a command module."""
    graph = _graph()
    offenders = [m for m, imported in graph.items() if f"bgmatting.{command}" in imported and _layer(_part(m)) < COMMAND_LAYER]
    assert not offenders, f"library modules import the {command} command: {offenders}"
