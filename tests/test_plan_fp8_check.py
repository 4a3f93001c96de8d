"""benchmarks/gpu_fp8_check.py on a machine without a GPU: a clean skip with the reason; its comparison logic."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import torch

from tests.helpers import REPO, env


def _module():
    spec = importlib.util.spec_from_file_location("gpu_fp8_check", REPO / "benchmarks/gpu_fp8_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skips_cleanly_without_gpu():
    if torch.cuda.is_available():  # on a GPU box the real check runs instead; nothing to assert here
        return
    proc = subprocess.run([sys.executable, "benchmarks/gpu_fp8_check.py"], cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 77
    assert "SKIPPED" in proc.stderr and "no CUDA GPU" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_flags_fp8_runs_that_drift_from_bf16():
    mod = _module()
    bf16 = [4.0 - 0.05 * i for i in range(20)]
    results = [
        {"shape": "tiny", "precision": "bf16", "losses": bf16, "step_time_s": 1.0},
        {"shape": "tiny", "precision": "fp8-delayed", "losses": [x * 1.005 for x in bf16], "step_time_s": 0.7},
        {"shape": "tiny", "precision": "fp8-tensorwise", "losses": [x * 1.10 for x in bf16], "step_time_s": 0.7},
        {"shape": "8b", "precision": "fp8-delayed", "error": "exit 1: out of memory"},
    ]
    rows = {(r["shape"], r["precision"]): r for r in mod.compare(results, tolerance=0.02, window=10)}
    assert rows[("tiny", "fp8-delayed")]["ok"] and abs(rows[("tiny", "fp8-delayed")]["speedup"] - 1 / 0.7) < 1e-9
    assert not rows[("tiny", "fp8-tensorwise")]["ok"]
    assert not rows[("8b", "fp8-delayed")]["ok"]
