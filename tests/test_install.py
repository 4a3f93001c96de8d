"""A non-editable install (`pip install .`): the wheel carries configs/ and samples/ (setup.py), so model presets,
the eval task registry and the GenRM templates resolve from any working directory, not only from a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from a copy of this checkout, installed (without dependencies: the test environment has them)
    into a folder that goes first on PYTHONPATH. pip builds in the source tree (build/, *.egg-info): building a copy
    keeps the checkout untouched while another install (CI's second leg) may be writing there."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    for name in ("findap_nemo", "configs", "samples"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_shipped"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(source)],
                   check=True, capture_output=True, timeout=900, cwd=root)
    wheel = next((root / "dist").glob("findap_nemo-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(root / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=900)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(root / "site"), TRANSFORMERS_VERBOSITY="error")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=600, check=check)

    return root / "site", run


def test_the_installed_copy_is_used_and_carries_its_files(installed):
    site, run = installed
    where = run("-c", "import findap_nemo.shipped as s; print(s.__file__); print(s.ROOT)").stdout.split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "findap_nemo" / "_shipped")
    for rel in ("configs/model/llama3-8b.yaml", "configs/eval/tasks", "configs/genrm/prompts/fap.txt",
                "samples/genrm/prompts.jsonl", "samples/fineval"):
        assert (site / "findap_nemo" / "_shipped" / rel).exists(), rel


def test_presets_eval_tasks_and_templates_resolve_outside_the_checkout(installed, tiny_hf_model_dir):
    _, run = installed
    plan = yaml.safe_load(run("-m", "findap_nemo.cli", "plan", "model.preset=llama3-8b", "--print-config").stdout)
    assert (plan["model"]["num_layers"], plan["model"]["hidden_size"]) == (32, 4096)
    tasks = run("-m", "findap_nemo.cli", "eval", "--list-tasks").stdout
    assert "fpb_sentiment" in tasks and "missing" not in tasks  # every task's examples were found
    genrm = run("-m", "findap_nemo.cli", "genrm", f"policy.model={tiny_hf_model_dir}",
                f"genrm.model={tiny_hf_model_dir}", "--print-config", check=False)
    assert genrm.returncode == 0, genrm.stderr  # prompts_file and the three templates were found
