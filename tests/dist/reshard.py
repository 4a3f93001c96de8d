"""Load a checkpoint into the layout given by overrides and save its weights again (a resharding round trip).

usage: python reshard.py SRC_DIR OUT_DIR [dotted overrides]
"""

from findap_nemo.deferred_compile import defer_torch_compile

defer_torch_compile()  # before megatron-core is imported: start-up cost (see findap_nemo/deferred_compile.py)

import sys

from findap_nemo.config import load_config
from findap_nemo.train.config import TrainJobConfig
from findap_nemo.model.builder import build_model
from findap_nemo.parallel import destroy_distributed, init_distributed
from findap_nemo.train.checkpointing import load_checkpoint, save_checkpoint

# process helpers started by 'spawn' re-import this file: guard the work.
if __name__ == "__main__":
    src, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
    cfg = load_config(TrainJobConfig, "configs/train/tiny_cpu.yaml", overrides)
    init_distributed(cfg.parallel, cfg.schedule.seed + 7)  # a different seed: loaded weights must not depend on it
    model = build_model(cfg.model, cfg.parallel, cfg.precision, wrap_with_ddp=False)
    load_checkpoint(src, model)
    save_checkpoint(out, 0, model)
    destroy_distributed()
