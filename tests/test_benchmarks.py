"""The benchmarks are scripts no other test runs end to end (minutes each): their imports of the package are checked
here, so a rename inside findap_nemo breaks a test, not the next person's measurement."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _package_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for every ``import findap_nemo...`` / ``from findap_nemo... import name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "findap_nemo":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "findap_nemo"]
    return found


def test_there_are_benchmarks_to_check():
    assert len(BENCHMARKS) >= 5 and all(_package_imports(p) for p in BENCHMARKS if p.name != "__init__.py")


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports_resolve(path):
    broken = []
    for line, module, name in _package_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            broken.append(f"{path.name}:{line}: import {module}: {err}")
            continue
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                broken.append(f"{path.name}:{line}: {module} has no {name!r}")
    assert not broken, "\n".join(broken)
