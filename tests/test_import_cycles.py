"""No import circles in the library or the Slicer module's helpers: a module that a module it imports
imports back (even inside a function, where the circle only hides) has two halves of one concept."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ((REPO / "RibFracSegLib", REPO), (REPO / "RibFracSeg" / "RibFracSegLogicLib", REPO / "RibFracSeg"))


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of both packages (`__main__` left out: it runs the CLI)."""
    found = {}
    for package, root in PACKAGES:
        for path in package.rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            if not name.endswith("__main__"):
                found[name] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in its file: `from X import sub` counts as X.sub when
    that is a module (importing a package's submodule is no circle with the package)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
            out |= subs | ({base} if len(subs) < len(node.names) else set())
    return {m for m in out if m in modules and m != name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = module_files()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert len(modules) > 100 and graph["RibFracSegLib.io"] >= {"RibFracSegLib.ct_checks", "RibFracSegLib.dicom"}
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_every_module_imports_in_a_fresh_interpreter_last_first():
    """Sorted order is what the other tests do; reversed starts from the leaves' importers."""
    names = sorted(module_files(), reverse=True)
    code = (f"import importlib, sys; sys.path[:0] = [{str(REPO / 'RibFracSeg')!r}, {str(REPO)!r}]; "
            f"[importlib.import_module(m) for m in {names!r}]; print('imported', len({names!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["imported", str(len(names))]
