"""What every megatron-using process pays before its first step: torch.compile deferred, no spawned checkpoint helper."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import REPO, env

from findap_nemo.deferred_compile import compiled_functions, defer_torch_compile


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_megatron_import_and_model_build_skip_the_compiler():
    """megatron-core's ~40 torch.compile decorations no longer set up the compiler (inductor); without the deferral
    they do (the control proves the check can fail)."""
    code = """
import sys
{defer}
from findap_nemo.config import load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.model.builder import build_model
from findap_nemo.parallel import init_distributed
cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", [])
init_distributed(cfg.parallel, 0)
build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False)
print(sorted(m for m in ("torch._dynamo", "torch._inductor.compile_fx") if m in sys.modules), flush=True)
from findap_nemo.parallel import destroy_distributed
destroy_distributed()
"""
    deferred = _python(code.format(defer="from findap_nemo.deferred_compile import defer_torch_compile; "
                                         "defer_torch_compile()"))
    eager = _python(code.format(defer=""))
    # older torch (2.8) imports dynamo itself (torch.distributed.fsdp); the compiler set-up (inductor) is what is avoided
    assert "torch._inductor.compile_fx" not in deferred.strip().splitlines()[-1]
    assert "torch._inductor.compile_fx" in eager.strip().splitlines()[-1]


def test_deferred_function_compiles_on_first_call_with_its_options(monkeypatch):
    calls = []
    real = torch.compile

    def spy(model=None, **options):
        calls.append(options)
        return real(model, **options)

    monkeypatch.setattr("findap_nemo.deferred_compile._EAGER_COMPILE", spy)
    monkeypatch.setattr(torch, "compile", torch.compile)  # restored after the test
    defer_torch_compile()

    @torch.compile(backend="eager", dynamic=False)
    def gelu_plus(x, y):
        return torch.nn.functional.gelu(x) + y

    assert calls == [] and gelu_plus.__name__ == "gelu_plus"
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(gelu_plus(x, y), torch.nn.functional.gelu(x) + y)
    gelu_plus(x, y)
    assert calls == [{"backend": "eager", "dynamic": False}]  # compiled once, with the decorator's options
    assert compiled_functions[-1].endswith("gelu_plus")  # and recorded


@pytest.mark.slow
def test_cpu_training_steps_call_no_deferred_kernel():
    """The deferral's premise: megatron's fusions are off on CPU, so training steps never compile one of them (the
    record of compiled kernels stays empty; the previous test shows that a call would land there)."""
    out = _python("""
from findap_nemo.deferred_compile import compiled_functions, defer_torch_compile
defer_torch_compile()
from findap_nemo.config import load_config
from findap_nemo.parallel import init_distributed
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.train.gpt_step import make_gpt_forward_step
from findap_nemo.train.run import build_datasets
from findap_nemo.train.trainer import Trainer
cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", ["checkpoint.save=null", "schedule.train_iters=2"])
init_distributed(cfg.parallel, cfg.schedule.seed)
trainer = Trainer(cfg, make_gpt_forward_step(False), build_datasets(cfg, seed=cfg.schedule.seed))
losses = [trainer.train_step()["lm_loss"] for _ in range(2)]
print(len(losses), compiled_functions, flush=True)
from findap_nemo.parallel import destroy_distributed
destroy_distributed()  # gloo's threads joined before exit, as the CLI does (an abort at exit otherwise, under load)
""")
    assert out.strip().splitlines()[-1] == "2 []"


def test_modules_still_compile_eagerly(monkeypatch):
    monkeypatch.setattr(torch, "compile", torch.compile)
    defer_torch_compile()
    compiled = torch.compile(torch.nn.Linear(4, 4), backend="eager")
    assert type(compiled).__name__ == "OptimizedModule"


@pytest.mark.slow
def test_checkpoint_save_starts_no_helper_process(tmp_path):
    """A synchronous save keeps megatron's write results in-process: no spawned Manager (a fresh interpreter per
    process that SLURM's SIGTERM could kill), and the checkpoint loads back."""
    out = _python(f"""
import multiprocessing, queue
from findap_nemo.config import load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.model.builder import build_model
from findap_nemo.parallel import init_distributed
from findap_nemo.train.checkpointing import save_checkpoint
from megatron.core.dist_checkpointing.strategies import filesystem_async
cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", [])
init_distributed(cfg.parallel, 0)
model = build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False)
save_checkpoint({str(tmp_path)!r}, 3, model)
save_checkpoint({str(tmp_path)!r}, 4, model)
print(multiprocessing.active_children(), type(filesystem_async._results_queue).__name__)
""")
    assert out.strip().splitlines()[-1] == "[] Queue"
    assert (tmp_path / "iter_0000004" / "metadata.json").exists()
