"""The import graph of proxy/, counting every import: module level, function level and under
TYPE_CHECKING (import-linter sees the same), and its strongly connected components (Tarjan).

    python -m tests.support.importgraph        # cycles and modules per folder
"""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules(package: str = "proxy") -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def graph(package: str = "proxy") -> dict[str, set[str]]:
    """module -> the modules of `package` it imports."""
    mods = modules(package)
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            edges[name].update(t for t in targets if t in mods and t != name)
    return {m: edges.get(m, set()) for m in mods}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in g:
        if v not in index:
            visit(v)
    return sorted(found, key=len, reverse=True)


def main() -> None:
    g = graph()
    print("modules", len(g))
    for comp in cycles(g):
        print(len(comp), comp)
    print(dict(collections.Counter(m.rsplit(".", 1)[0] if "." in m else m for m in g)))


if __name__ == "__main__":
    main()
