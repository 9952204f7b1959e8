"""The package's shape: layers import downwards only, no import circle, no private name crosses a
module, only adapters start git/DVC or import the heavy libraries, and no module grows past one idea.

Every import is counted: module-level and inside functions alike (a lazy import does not hide a
circle). See docs/architecture.md for the drawing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lineage"
LAYERS = ["core", "adapters", "store", "guard", "pipeline", "moves", "loop", "api", "ui"]
HEAVY = {"pygit2", "dvc", "torch", "transformers", "trl", "unsloth", "peft", "datasets", "safetensors", "dvclive",
         "tokenizers", "accelerate"}
PROCESSES = {"subprocess"}
# The demo is a tour that runs `lineage` itself, as a user would type it.
MAY_START_PROCESSES = {"lineage.ui.demo"}
MAX_LINES = 450
# Modules over MAX_LINES that are one idea each, and why.
ONE_IDEA: dict[str, str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if "template" in rel.parts:
            continue  # stage scripts copied into stores, not part of the package's graph
        name = ".".join(rel.parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import statement in the module."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, node, path.name == "__init__.py")
            for alias in node.names:
                out.append((target, alias.name, node.lineno))
    return out


def internal_edges() -> dict[str, set[str]]:
    """module -> the lineage modules it imports (a name imported from a package that is a module counts as it)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, imported, _ in imports(name, path):
            if not target.startswith("lineage"):
                continue
            sub = f"{target}.{imported}" if imported else None
            graph[name].add(sub if sub in mods else target)
    return graph


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return len(LAYERS)  # lineage/__init__ and __main__: entry points above everything
    return LAYERS.index(parts[1])


def test_the_import_graph_of_the_package_has_no_cycle():
    graph = internal_edges()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if not state.get(nxt):
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node)


def test_every_layer_imports_only_from_the_layers_below_it():
    wrong = []
    for module, targets in internal_edges().items():
        for target in targets:
            if target != "lineage" and layer_of(target) > layer_of(module):
                layer = LAYERS[layer_of(module)] if layer_of(module) < len(LAYERS) else "entry"
                wrong.append(f"{module} imports {target} ({layer} may not import {LAYERS[layer_of(target)]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_private_name_is_imported_across_modules():
    found = []
    for name, path in modules().items():
        for target, imported, line in imports(name, path):
            if target.startswith("lineage") and imported and imported.startswith("_") and imported != "__version__":
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported} from {target}")
    assert not found, "\n".join(found)


def test_only_adapters_import_git_dvc_the_heavy_libraries_or_start_processes():
    found = []
    for name, path in modules().items():
        if name.startswith("lineage.adapters"):
            continue
        for target, _, line in imports(name, path):
            top = target.split(".")[0]
            if top in HEAVY or (top in PROCESSES and name not in MAY_START_PROCESSES):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not found, "\n".join(found)


def test_no_module_is_over_450_lines_unless_it_is_one_idea():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES and name not in ONE_IDEA}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_layer_folder_exists_and_nothing_lies_beside_them():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "api"))
    assert not loose, f"modules outside a layer folder: {loose}"
    for layer in LAYERS:
        if layer != "api":
            assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_help_and_the_hook_module_import_no_heavy_library():
    script = ("import sys, lineage.ui.cli, lineage.guard.hook, lineage.api\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY - {'pygit2'})!r}))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
