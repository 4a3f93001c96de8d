"""`findap-nemo doctor` reports what this environment really has; the declared version bounds are true ones."""

from __future__ import annotations

import json
import tomllib
from importlib import metadata

import pytest
import torch
from packaging.requirements import Requirement

from tests.helpers import REPO, cli


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_doctor_reports_the_installed_stack():
    rep = json.loads(cli("doctor", "--json", timeout=300).stdout)
    v = rep["versions"]
    assert v["torch"] == torch.__version__
    for dist in ("megatron-core", "transformers", "datasets"):
        assert v[dist] == metadata.version(dist), dist
    assert rep["cuda"]["usable"] is torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert not rep["transformer_engine"]["usable"] and not rep["fp8"]["usable"]
        expected = "CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        assert expected in rep["cuda"]["detail"]
        assert rep["fp8"]["detail"] == "needs Transformer Engine on a GPU"
    if v["transformer-engine"] is None:
        assert rep["transformer_engine"]["detail"].startswith("not installed")

    first = cli("doctor", timeout=300).stdout.splitlines()[0]
    assert f"torch {torch.__version__}" in first and f"megatron-core {metadata.version('megatron-core')}" in first
    assert f"transformers {metadata.version('transformers')}" in first
    assert f"CUDA {'yes' if torch.cuda.is_available() else 'no'}" in first
    assert "TE " in first and "FP8 " in first and "apex " in first


def test_installed_versions_are_inside_the_declared_bounds():
    """A test run on versions outside what pyproject.toml declares would prove nothing about the declared range."""
    outside = [f"{r.name} {metadata.version(r.name)} not in {r.specifier}" for r in _declared()
               if not r.specifier.contains(metadata.version(r.name), prereleases=True)]
    assert not outside
    mcore = next(r for r in _declared() if r.name == "megatron-core")
    assert any(s.operator == "<" for s in mcore.specifier), "megatron-core needs an upper bound at the tested minor"


def test_floor_constraints_pin_every_declared_floor(tmp_path):
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("floor_constraints", REPO / "scripts/floor_constraints.py")
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    pins = dict(line.split("==") for line in mod.floors(REPO / "pyproject.toml"))
    for req in _declared():
        if req.name == "torch":
            assert req.name not in pins  # the environment's torch, never re-pinned
            continue
        floor = next(s.version for s in req.specifier if s.operator == ">=")
        assert pins[req.name] == floor, req
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\ndependencies = ["numpy"]\n[project.optional-dependencies]\ntest = []\n')
    with pytest.raises(SystemExit, match="'numpy' has no '>=' floor"):
        mod.floors(bad)
