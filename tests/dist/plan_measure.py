"""Measure per-rank training memory of the tiny model for several layouts; rank 0 prints one JSON line per case.

    torchrun --nproc-per-node 2 tests/dist/plan_measure.py
"""

from findap_nemo.deferred_compile import defer_torch_compile

defer_torch_compile()  # before megatron-core is imported: start-up cost (see findap_nemo/deferred_compile.py)

import dataclasses
import json
import sys

import torch


def main() -> None:
    from megatron.core import parallel_state

    from findap_nemo.config import load_config
    from findap_nemo.train.config import TrainJobConfig
    from findap_nemo.parallel import init_distributed
    from findap_nemo.plan.measure import measure_training_memory

    cases = [
        dict(name="dp2", tp=1, sp=False, rc=None, mbs=2, seq=64, dist=True),
        dict(name="dp2-selective", tp=1, sp=False, rc="selective", mbs=2, seq=64, dist=True),
        dict(name="dp2-full", tp=1, sp=False, rc="full", mbs=2, seq=64, dist=True),
        dict(name="dp2-no-distopt-seq128", tp=1, sp=False, rc=None, mbs=1, seq=128, dist=False),
        dict(name="tp2-sp", tp=2, sp=True, rc=None, mbs=2, seq=64, dist=True),
        dict(name="tp2", tp=2, sp=False, rc=None, mbs=2, seq=64, dist=True),
    ]
    only = set(sys.argv[1:])
    for case in cases:
        if only and case["name"] not in only:
            continue
        overrides = [f"parallel.tensor_model_parallel_size={case['tp']}",
                     f"parallel.sequence_parallel={str(case['sp']).lower()}",
                     f"parallel.use_distributed_optimizer={str(case['dist']).lower()}",
                     f"model.recompute_granularity={case['rc'] or 'null'}",
                     f"schedule.micro_batch_size={case['mbs']}", f"schedule.seq_length={case['seq']}"]
        if case["rc"] == "full":
            overrides += ["model.recompute_method=uniform", "model.recompute_num_layers=1"]
        cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", overrides,
                          world_size=torch.distributed.get_world_size() if torch.distributed.is_initialized() else 2)
        init_distributed(cfg.parallel, 1234)
        m = measure_training_memory(cfg.model, cfg.parallel, cfg.precision, seq_length=cfg.schedule.seq_length,
                                    micro_batch_size=cfg.schedule.micro_batch_size)
        if torch.distributed.get_rank() == 0:
            print("MEASURED " + json.dumps({**case, **dataclasses.asdict(m)}), flush=True)
        parallel_state.destroy_model_parallel()


if __name__ == "__main__":
    main()
