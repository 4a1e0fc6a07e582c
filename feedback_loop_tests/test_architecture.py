"""The house's shape: lib imports no Dagster, no module imports itself back, stages import one way."""

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "feedback_loop"
#: Folders of lib by stage; a module may import its own folder, the shared modules, and earlier stages.
STAGES = ["store", "ingest", "signals", "portfolio", "training", "models", "monitoring", "loop"]
SHARED = {"policy", "vocab", "frames", "plots", "rules", "checks"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every feedback_loop module `path` imports, at any depth of the file (function-level included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("feedback_loop")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("feedback_loop"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_lib_imports_no_dagster():
    offenders = [name for name, path in MODULES.items() if name.startswith("feedback_loop.lib")
                 and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "dagster" in ast.unparse(n)
                         for n in ast.walk(ast.parse(path.read_text())))]
    assert offenders == []


def test_there_is_no_import_cycle():
    # Packages import their submodules implicitly; a package's __init__ here holds only a docstring.
    list(graphlib.TopologicalSorter(GRAPH).static_order())  # raises CycleError


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "lib" else None


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_only_earlier_stages(stage):
    rank = {s: i for i, s in enumerate(STAGES)}
    upward = sorted(
        f"{name} -> {target}" for name, targets in GRAPH.items() if _stage(name) == stage for target in targets
        if _stage(target) is not None and rank[_stage(target)] > rank[stage]
        and {stage, _stage(target)} != {"models", "monitoring"}
    )
    assert upward == []
    shared = {name.split(".")[-1] for name in MODULES if name.count(".") == 2 and name.startswith("feedback_loop.lib")}
    assert SHARED <= shared


def test_shared_modules_depend_on_no_stage():
    for name in SHARED:
        assert {_stage(t) for t in GRAPH[f"feedback_loop.lib.{name}"]} <= {None}, name
