"""Process-group and model-parallel initialisation for torchrun, srun or a single process."""

from __future__ import annotations

import datetime
import os
import random

import numpy as np
import torch

from findap_nemo.config.schema import ParallelConfig
from findap_nemo.launch import free_port


def _env_from_slurm() -> None:
    """srun launches one task per GPU without torchrun: derive torch's env:// variables from SLURM's."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ.get("SLURM_NTASKS", "1")
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


def init_distributed(parallel: ParallelConfig, seed: int, *, timeout_minutes: int = 30) -> None:
    """Initialise torch.distributed and megatron's parallel state; seed every RNG (data-parallel-aware).

    Works under torchrun, under srun (SLURM_* variables) and as a plain single process (a 1-rank group: megatron's
    blended datasets and optimizers call torch.distributed even then).
    """
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    _env_from_slurm()
    cuda = torch.cuda.is_available()
    if not cuda:
        from findap_nemo.cpu_shims import apply_cpu_shims

        apply_cpu_shims()
    if not torch.distributed.is_initialized():
        if "RANK" not in os.environ:
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(free_port()))
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(
            backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=parallel.tensor_model_parallel_size,
            pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
            context_parallel_size=parallel.context_parallel_size,
        )
    # Same seed within a TP group for the default stream, per-PP-stage offset like Megatron-LM.
    seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def destroy_distributed() -> None:
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def is_rank0() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def print_rank0(*args, **kwargs) -> None:
    if is_rank0():
        print(*args, **kwargs, flush=True)
