"""The package's structure as docs/architecture.md states it: dependencies between its packages point one way (no
import cycle between packages, lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

ROOT = REPO / "findap_nemo"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _group(module: str) -> str:
    """A module's package (``findap_nemo.eval.run`` -> ``findap_nemo.eval``); top-level modules stand alone."""
    parts = module.split(".")
    return ".".join(parts[:2])


def import_graph() -> dict[str, set[str]]:
    """package -> packages it imports anything from (at module level or inside functions)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("findap_nemo"):
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
                targets = subs or [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("findap_nemo")]
            for t in targets:
                if _group(t) != _group(name):
                    graph.setdefault(_group(name), set()).add(_group(t))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_packages():
    graph = import_graph()
    assert graph, "the import graph is empty: the scan is broken"
    assert "findap_nemo.config" in graph.get("findap_nemo.eval", set())  # the scan sees real edges
    cycles = _cycles(graph)
    assert not cycles, f"packages that import each other (directly or in a loop): {cycles}"


def test_lower_layers_do_not_import_stages():
    """config, model and the runtime modules never import a stage or the orchestration above them."""
    graph = import_graph()
    upper = {f"findap_nemo.{p}" for p in ("pipeline", "ablate", "slurm", "plan", "data", "train", "dpo", "genrm",
                                           "eval", "convert", "cli")}
    for lower in ("config", "model", "parallel", "launch", "supervise", "cpu_shims", "runtime", "files",
                  "fingerprint", "storage", "tokenizer", "checkpoint_layout", "inference"):
        bad = graph.get(f"findap_nemo.{lower}", set()) & upper
        assert not bad, f"findap_nemo.{lower} imports {sorted(bad)}"
