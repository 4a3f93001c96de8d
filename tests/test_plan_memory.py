"""The planner's memory model against megatron-core's measured tensors for the tiny model (CPU, local layers).

A torchrun job (2 ranks) builds each layout with the training stack's builder and optimizer, runs a forward/backward
and an optimizer step, and counts weight, gradient-buffer, optimizer-state and saved-activation bytes exactly
(findap_nemo.plan.measure). Every category of the estimate must be within 10% of the measurement.
"""

from __future__ import annotations

import json

import pytest

from findap_nemo.config import load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.plan.layout import Layout
from findap_nemo.plan.memory import estimate_memory
from tests.helpers import cli, torchrun


@pytest.fixture(scope="module")
def measured() -> dict:
    proc = torchrun("tests/dist/plan_measure.py", nproc=2, timeout=300)
    rows = [json.loads(line.split("MEASURED ", 1)[1]) for line in proc.stdout.splitlines() if "MEASURED " in line]
    assert len(rows) == 6, proc.stdout[-2000:]
    return {r["name"]: r for r in rows}


CASES = ["dp2", "dp2-selective", "dp2-full", "dp2-no-distopt-seq128", "tp2-sp", "tp2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_estimate_within_10_percent_of_measured(measured, name):
    r = measured[name]
    model = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml").model
    layout = Layout(tp=r["tp"], pp=1, cp=1, dp=2 // r["tp"], sp=r["sp"], micro_batch_size=r["mbs"],
                    recompute=r["rc"], recompute_num_layers=1, distributed_optimizer=r["dist"])
    est = estimate_memory(model, layout, seq_length=r["seq"], num_microbatches=1, dtype="fp32", impl="local")
    for key, value in (("weights", est.weights), ("grads", est.grads), ("optimizer", est.optimizer),
                       ("activations", est.activations)):
        assert value == pytest.approx(r[key], rel=0.10), f"{name} {key}: estimate {value:.0f} vs measured {r[key]}"
    stored = est.weights + est.grads + est.optimizer + est.activations
    measured_total = r["weights"] + r["grads"] + r["optimizer"] + r["activations"]
    assert stored == pytest.approx(measured_total, rel=0.05)


@pytest.mark.slow
def test_recompute_and_sp_reduce_activations_as_measured(measured):
    """The orderings the planner relies on hold in the measurements themselves."""
    assert measured["dp2-full"]["activations"] < measured["dp2-selective"]["activations"] \
        < measured["dp2"]["activations"]
    assert measured["tp2-sp"]["activations"] < measured["tp2"]["activations"] < measured["dp2"]["activations"]
    assert measured["dp2"]["optimizer"] < measured["dp2-no-distopt-seq128"]["optimizer"]


@pytest.mark.slow
def test_plan_measure_cli_compares_with_the_estimate():
    proc = cli("plan", "--config", "configs/train/tiny_cpu.yaml", "--measure", "--nproc-per-node", "2",
               "parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true", timeout=300)
    assert proc.stdout.count("Measured vs estimated memory per rank") == 1  # rank 0 only
    row = next(line for line in proc.stdout.splitlines() if "total (without transient)" in line)
    diff = float(row.split("│")[-2].strip().rstrip("%"))
    assert abs(diff) <= 10.0, row


def test_plan_measure_refuses_pipeline_layouts():
    proc = cli("plan", "--config", "configs/train/tiny_cpu.yaml", "--measure",
               "parallel.pipeline_model_parallel_size=2", check=False, timeout=120)
    assert proc.returncode == 2 and "--measure supports 1" in proc.stderr
