"""The import structure: no cycles, no function-local imports of the package's own modules (but
optional stable-baselines3 ones), nothing below the lab imports from it, and importing changes
nothing but the registries.

The graph holds the imports Python runs: module-level ones, not those under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from arbiter_env.user_code import IMPORTS_ENV_VAR

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "arbiter_env": "arbiter_env",
    "agents": "arbiter_env.agents",
    "baselines": "arbiter_env.baselines",
}
# Modules that need stable-baselines3 (an optional extra): others may import them only lazily.
NEEDS_SB3 = (
    "arbiter_env.agents.sb3",
    "arbiter_env.agents.zoo",
    "arbiter_env.agents.sb3_logging",
    "arbiter_env.agents.population_vec_env",
)


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, prefix in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [
                p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"
            ]
            modules[".".join([prefix, *parts])] = path
    return modules


def _outer_packages(target: str, importer: str) -> list[str]:
    """The packages Python initialises to import ``target`` that ``importer`` is not inside of.

    Importing ``a.b.c`` runs ``a/b/__init__.py`` first: an edge the import statement hides.
    """
    parts = target.split(".")
    packages = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in packages if not (importer == p or importer.startswith(p + "."))]


def _needs_sb3(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in NEEDS_SB3)


def _imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Module-level edges between the package's modules, and the function-local imports."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    local: list[str] = []
    for name, path in modules.items():

        def visit(node: ast.AST, in_function: bool, name: str = name, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, ast.Import | ast.ImportFrom):
                    if isinstance(child, ast.Import):
                        targets = [a.name for a in child.names]
                    else:
                        base = child.module or ""
                        subs = [
                            f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in modules
                        ]
                        targets = subs if len(subs) == len(child.names) else [base, *subs]
                    found = {resolve(t) for t in targets if t.startswith("arbiter_env")} - {
                        None,
                        name,
                    }
                    if not in_function:
                        graph[name] |= {t for t in found if t}
                        graph[name] |= {p for t in found if t for p in _outer_packages(t, name)}
                    elif found and (_needs_sb3(name) or not any(_needs_sb3(t) for t in found if t)):
                        local.append(
                            f"{path.relative_to(ROOT)}:{child.lineno} {ast.unparse(child)}"
                        )
                elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    visit(child, True)
                else:
                    visit(child, in_function)

        visit(ast.parse(path.read_text()), False)
    return graph, local


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_package_has_no_import_cycles():
    graph, _ = _imports(_modules())
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_imports_a_module_of_the_package_except_optional_ones():
    _, local = _imports(_modules())
    assert local == []


def test_nothing_below_the_lab_imports_from_it():
    graph, _ = _imports(_modules())
    upward = {
        (module, target)
        for module, targets in graph.items()
        if not module.startswith("arbiter_env.lab")
        for target in targets
        if target.startswith("arbiter_env.lab")
    }
    assert upward == set()


def test_importing_the_package_changes_no_process_state_but_the_registries() -> None:
    # A fresh interpreter, so that the test process's own imports cannot hide an import-time
    # effect. Each probe names the state a module once changed when imported.
    code = """
import os, sys, multiprocessing.forkserver as forkserver
import matplotlib
before = {
    "preload": list(forkserver._forkserver._preload_modules),
    "backend": matplotlib.get_backend(),
    "environ": dict(os.environ),
}
import arbiter_env, arbiter_env.agents, arbiter_env.baselines
import arbiter_env.lab.cli, arbiter_env.lab.plots, arbiter_env.lab.report
after = {
    "preload": list(forkserver._forkserver._preload_modules),
    "backend": matplotlib.get_backend(),
    "environ": dict(os.environ),
}
assert before == after, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
assert "user_module_never_imported" not in sys.modules
print("unchanged")
"""
    environment = {
        **os.environ,
        # Read only by the worker entry points that run user code, never by an import.
        IMPORTS_ENV_VAR: "user_module_never_imported",
        "MPLBACKEND": "svg",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unchanged"
