"""Logits of megatron checkpoints at several TP/PP layouts, for comparison with the Hugging Face models.

usage: torchrun --nproc-per-node N convert_logits.py OUT_DIR LAYOUTS CKPT [CKPT ...]
LAYOUTS is a comma-separated list of TPxPP (e.g. 1x1,2x1,1x2; each TP*PP must divide N, the rest is data
parallel). For checkpoint number c and layout TPxPP it writes OUT_DIR/c_TPxPP.pt holding
{"tokens": [b, s], "logits": [b, s, vocab_size]} (vocab padding removed), from the last pipeline stage.
"""

from findap_nemo.deferred_compile import defer_torch_compile

defer_torch_compile()  # before megatron-core is imported: start-up cost (see findap_nemo/deferred_compile.py)

import sys
from pathlib import Path

import torch

if __name__ == "__main__":
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from findap_nemo.config.schema import ParallelConfig, PrecisionConfig
    from findap_nemo.config.model_config_io import find_model_config, load_model_config
    from findap_nemo.model.builder import build_model
    from findap_nemo.parallel import destroy_distributed, init_distributed
    from findap_nemo.train.checkpointing import latest_checkpoint, load_checkpoint

    out_dir, layouts, ckpts = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3:]
    b, s = 2, 24
    for c, ckpt_dir in enumerate(ckpts):
        ckpt = latest_checkpoint(ckpt_dir)
        model_cfg = load_model_config(find_model_config(Path(ckpt).parent))
        model_cfg.transformer_impl = "local"
        gen = torch.Generator().manual_seed(7)
        tokens = torch.randint(0, model_cfg.vocab_size, (b, s), generator=gen)
        positions = torch.arange(s).unsqueeze(0).expand(b, s)
        for lay in layouts:
            tp, pp = (int(x) for x in lay.split("x"))
            parallel = ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
            init_distributed(parallel, seed=0)
            chunks = build_model(model_cfg, parallel, PrecisionConfig(params_dtype="fp32"), wrap_with_ddp=False,
                                 for_training=False)
            load_checkpoint(ckpt, chunks, optimizer=None, strict=True)
            store = {}

            def loss_func(output):
                full = gather_from_tensor_model_parallel_region(output)  # vocab-parallel -> padded vocab
                store["logits"] = full[..., : model_cfg.vocab_size].detach().clone()
                return output.sum() * 0, torch.tensor(1, dtype=torch.int), {"n": torch.tensor([0.0, 1.0])}

            def forward_step(data_iterator, model):
                next(data_iterator)
                return model(tokens, positions, None), loss_func

            with torch.no_grad():
                get_forward_backward_func()(forward_step_func=forward_step, data_iterator=iter([None]),
                                            model=chunks, num_microbatches=1, seq_length=s, micro_batch_size=b,
                                            forward_only=True)
            if ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0 \
                    and ps.get_data_parallel_rank() == 0:
                torch.save({"tokens": tokens, "logits": store["logits"]}, out_dir / f"{c}_{lay}.pt")
            torch.distributed.barrier()
            ps.destroy_model_parallel()  # next layout in the same process group
    destroy_distributed()
