"""Write a weights-only checkpoint of a freshly initialised model at the given layout (run under torchrun or alone).

usage: python init_checkpoint.py OUT_DIR [dotted overrides for configs/train/tiny_cpu.yaml]
"""

from findap_nemo.deferred_compile import defer_torch_compile

defer_torch_compile()  # before megatron-core is imported: start-up cost (see findap_nemo/deferred_compile.py)

import sys

from findap_nemo.config import load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.model.builder import build_model
from findap_nemo.parallel import destroy_distributed, init_distributed
from findap_nemo.train.checkpointing import save_checkpoint

# process helpers started by 'spawn' re-import this file: guard the work.
if __name__ == "__main__":
    out, overrides = sys.argv[1], sys.argv[2:]
    cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", overrides)
    init_distributed(cfg.parallel, cfg.schedule.seed)
    model = build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False)
    save_checkpoint(out, 0, model)
    destroy_distributed()
