"""The house rules of backends/: tab packages mirror demos/, imports go one way, no gradio."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ROOT / "backends"
TAB_PACKAGES = ("reenactment", "latent_paths", "pos_subspaces", "anonymization", "expression")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in BACKENDS.rglob("*.py")}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every backends module ``name`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known and c != name)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {}
    for name, path in known.items():
        deps = _imports(name, path, known)
        # A package's __init__ re-exporting its own modules, and a module naming its package, are not loops.
        graph[name] = {d for d in deps if not d.startswith(name + ".") and not name.startswith(d + ".")
                       and d != "backends"}
    return graph


def test_tab_packages_mirror_the_demo_modules():
    for tab in TAB_PACKAGES:
        assert (ROOT / "demos" / f"{tab}.py").is_file(), tab
        init = BACKENDS / tab / "__init__.py"
        assert init.is_file(), f"backends/{tab}/ should be a package"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "Modules:" in doc, f"backends/{tab}/__init__.py should map its modules"


def test_no_import_cycles_in_backends():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_tab_packages_do_not_import_each_other():
    graph = _graph()
    for name, deps in graph.items():
        tab = name.split(".")[1] if name.count(".") >= 1 else ""
        if tab not in TAB_PACKAGES:
            continue
        others = {d for d in deps if d.split(".")[1:2] and d.split(".")[1] in TAB_PACKAGES and d.split(".")[1] != tab}
        assert not others, f"{name} imports another tab's package: {sorted(others)}"


def test_backends_never_import_gradio():
    for path in BACKENDS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "gradio" or n.startswith("gradio.") for n in names), path
