#!/usr/bin/env python3
"""Prints the import cycles between the top-level modules of a crate's `src/`.

Usage: scripts/module-cycles.py [SRC_DIR ...]   (default: every crate under shared/)

A module imports another when its non-test code names `crate::other` (in a `use`, a
path, or a `use crate::{...}` group); comments and `#[cfg(test)]` modules are left
out. Exits 1 when any cycle is found. Issue 19 removes the cycles of shared/src; until
then this shows what is left.
"""

import re
import sys
from pathlib import Path


def top_level_imports(src: Path) -> dict:
    graph: dict = {}
    for path in src.rglob("*.rs"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        module = parts[0] if parts else "lib"
        text = path.read_text().split("#[cfg(test)]")[0]
        text = re.sub(r"//[^\n]*", "", text)
        named = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", text))
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            named |= set(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
        graph.setdefault(module, set()).update(named - {module})
    return {module: deps & graph.keys() for module, deps in graph.items()}


def cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    sources = [Path(arg) for arg in sys.argv[1:]] or sorted(
        path.parent for path in (root / "shared").glob("**/src/lib.rs")
    )
    status = 0
    for src in sources:
        graph = top_level_imports(src)
        found = cycles(graph)
        print(f"{src}: {len(graph)} modules, {len(found)} cycles")
        for component in found:
            status = 1
            print("  cycle of", len(component), "modules:")
            for module in component:
                print(f"    {module} -> {', '.join(sorted(graph[module] & set(component)))}")
    return status


if __name__ == "__main__":
    sys.exit(main())
