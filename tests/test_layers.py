"""The package's layers only point down, and its import graph has no cycle.

cli -> session, optout -> proxy (the mitmproxy adapter) -> the core (model, engine, policy, decoders, detectors,
collectors, report, ...). Imports inside functions count too: a lazy import that runs back up a layer is still an
arrow that runs back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "telemetry_audit"

LAYERS = {"cli": 3, "__main__": 3, "pytest_plugin": 3, "session": 2, "sandbox": 2, "optout": 2, "proxy": 1}
"""Top-level module or package -> layer; everything else is the core (0)."""

MODULE_LAYERS = {"telemetry_audit.sandbox.names": 1, "telemetry_audit.sandbox.relay": 1,
                 "telemetry_audit.sandbox": 1}
"""Pure helpers inside a higher package that the proxy adapter uses (the sandbox's synthetic names and relay)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports() -> dict[str, tuple[set[str], set[str]]]:
    """module -> (modules imported at top level, modules imported anywhere), package modules only."""
    graph: dict[str, tuple[set[str], set[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top: set[str] = set()
        anywhere: set[str] = set()
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule `pkg.sub` (pkg's own names otherwise)
                targets = [f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module
                           for alias in node.names]
            targets = [t for t in targets if t.startswith("telemetry_audit")]
            anywhere.update(targets)
            if node in tree.body:
                top.update(targets)
        graph[name] = (top, anywhere)
    known = set(graph)
    return {name: ({t for t in top if t in known}, {t for t in anywhere if t in known})
            for name, (top, anywhere) in graph.items()}


def _layer(module: str) -> int:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_imports_only_point_down() -> None:
    upward = sorted(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
                    for module, (_, anywhere) in _imports().items() for target in anywhere
                    if _layer(target) > _layer(module))
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = {module: top - {module} for module, (top, _) in _imports().items()}
    # a package imports its submodules by design (`pkg/__init__` -> `pkg.x`); `pkg.x` importing `pkg` back is a cycle
    visiting: set[str] = set()
    done: set[str] = set()
    cycles: list[str] = []

    def visit(module: str, trail: list[str]) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(" -> ".join(trail[trail.index(module):] + [module]))
            return
        visiting.add(module)
        for target in sorted(graph.get(module, ())):
            visit(target, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_only_the_cli_prints_and_exits() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if _layer(name) == 3 or name.endswith(".__main__") or name.startswith(("telemetry_audit.proxy.server",)):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    getattr(node.exc.func, "id", "") == "SystemExit":
                offenders.append(f"{name}:{node.lineno} raises SystemExit")
    assert not offenders, "\n".join(offenders)
