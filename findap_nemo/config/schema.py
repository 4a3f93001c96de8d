"""Config schemas shared by the megatron stages (train, dpo, convert).

Key names follow Megatron-LM's arguments (``tensor_model_parallel_size``, ``micro_batch_size``, ...) so configs
read like the launch scripts Megatron users already know.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from findap_nemo.config.loader import Problems


@dataclass
class ModelConfig:
    """Llama-architecture GPT shape (RMSNorm, SwiGLU, RoPE, GQA). ``preset`` loads configs/model/<preset>.yaml."""

    preset: Optional[str] = None  # configs/model/<preset>.yaml (llama3-8b, llama3-70b, tiny, ...) under the file's keys
    num_layers: int = 2  # transformer blocks
    hidden_size: int = 64  # model width
    ffn_hidden_size: int = 176  # SwiGLU inner width
    num_attention_heads: int = 4  # query heads
    num_query_groups: int = 2  # GQA: number of KV heads
    kv_channels: Optional[int] = None  # head dim; default hidden_size // num_attention_heads
    vocab_size: int = 512  # the tokenizer's vocabulary; padded to make_vocab_size_divisible_by * TP in the model
    # embedding rows padded to a multiple of this x TP (padded rows never predicted)
    make_vocab_size_divisible_by: int = 128
    max_position_embeddings: int = 8192  # longest sequence the RoPE tables cover
    rotary_base: float = 500000.0  # RoPE theta (Llama 3: 500000)
    rope_scaling: bool = False  # Llama 3.1 frequency scaling
    rope_scaling_factor: float = 8.0  # with rope_scaling
    norm_epsilon: float = 1e-5  # RMSNorm epsilon
    # false: the output layer shares the embedding (SmolLM2, Llama 3.2 1B/3B)
    untie_embeddings_and_output_weights: bool = True
    add_qkv_bias: bool = False  # Qwen2-style
    init_method_std: float = 0.02  # random init (a pretrained checkpoint replaces it)
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    # "auto": Transformer Engine layer spec when TE imports and a GPU is present, else megatron's local spec.
    transformer_impl: str = "auto"
    # Core attention of the local spec: "sdpa" (torch scaled_dot_product_attention: fused kernels, no [s, s] score
    # matrix kept) or "unfused" (megatron's DotProductAttention, the numerical reference). Same results; TE layers
    # bring their own attention and ignore this.
    attention_backend: str = "sdpa"
    recompute_granularity: Optional[str] = None  # null | selective | full
    recompute_method: Optional[str] = None  # uniform | block (full recompute)
    recompute_num_layers: Optional[int] = None  # layers per recompute chunk (full recompute)
    tokenizer: Optional[str] = None  # HF tokenizer folder (chat template taken from it)

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads


@dataclass
class ParallelConfig:
    tensor_model_parallel_size: int = 1  # TP: splits every layer's matrices; must divide the KV heads
    pipeline_model_parallel_size: int = 1  # PP: splits the layers into stages; must divide num_layers
    # interleaved PP: model chunks per stage (smaller bubble)
    virtual_pipeline_model_parallel_size: Optional[int] = None
    sequence_parallel: bool = False  # SP: norms and dropout split over the sequence across TP ranks (needs TP > 1)
    context_parallel_size: int = 1  # CP: attention split over the sequence (long contexts)
    use_distributed_optimizer: bool = True  # Adam states sharded over data-parallel ranks (ZeRO-1)
    overlap_grad_reduce: bool = False  # overlap the gradient reduce-scatter with the backward pass (GPU)
    overlap_param_gather: bool = False  # overlap the parameter all-gather with the next forward pass (GPU)


@dataclass
class PrecisionConfig:
    # "auto": bf16 on GPU, fp32 on CPU (gloo has no fast bf16 path and the CPU kernels are slower in bf16).
    params_dtype: str = "auto"  # auto | fp32 | bf16 | fp16
    fp8: Optional[str] = None  # null | hybrid | e4m3  (Transformer Engine on Hopper only)
    fp8_recipe: str = "delayed"  # delayed | tensorwise (current scaling) | mxfp8 | blockwise
    fp8_margin: int = 0  # delayed scaling: exponent margin
    fp8_amax_history_len: int = 1024  # delayed scaling: amax history window
    fp8_amax_compute_algo: str = "max"  # max | most_recent
    fp8_param_gather: bool = False  # keep FP8 weights and all-gather them in FP8 (distributed optimizer)


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam (AdamW: decoupled weight decay)
    lr: float = 5e-6  # FinDAP CPT+IT
    min_lr: float = 0.0  # the schedule decays from lr to this; <= lr
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0  # global gradient-norm clip; 0 turns it off
    lr_warmup_fraction: Optional[float] = 0.1  # FinDAP: warmup proportion 0.1
    lr_warmup_iters: int = 0  # used when lr_warmup_fraction is null
    lr_decay_style: str = "cosine"  # cosine | linear | constant
    lr_decay_iters: Optional[int] = None  # default: train_iters


@dataclass
class ScheduleConfig:
    micro_batch_size: int = 1  # sequences per rank per forward pass
    global_batch_size: int = 16  # sequences per optimizer step: a multiple of micro_batch_size x data-parallel size
    seq_length: int = 8000  # FinDAP CPT+IT
    train_iters: int = 1000  # optimizer steps
    seed: int = 1234  # weights init, data order and dropout
    eval_interval: Optional[int] = None  # validation every N steps (and at the end); null: none
    eval_iters: int = 1  # validation batches per evaluation
    log_interval: int = 1  # metrics line every N steps
    exit_interval: Optional[int] = None  # stop (after saving) at this iteration: for tests and time-boxed jobs


@dataclass
class CheckpointConfig:
    save: Optional[str] = None  # directory of iter_XXXXXXX checkpoints + latest pointer
    load: Optional[str] = None  # resume from here (defaults to `save` when it has a checkpoint)
    pretrained: Optional[str] = None  # initial weights only (e.g. a converted HF model); ignored when resuming
    save_interval: Optional[int] = 1000  # checkpoint every N steps (and at the end); null: at the end only
    keep_last: Optional[int] = 2  # delete older checkpoints; null keeps all
    save_on_signal: bool = True  # SIGUSR1/SIGTERM -> save at the next step boundary and exit (SLURM preemption)
    save_optimizer: bool = True  # false: weights only (Megatron-LM's --no-save-optim); a resume restarts Adam
    # How the distributed optimizer's state is written (megatron's distrib_optim_sharding_type):
    #   fully_reshardable: gathered per DP group into per-parameter tensors; resumes at any TP/PP/DP layout.
    #   dp_reshardable:    each rank writes its own flat shards, no gather (2.6x faster to save the main job's
    #                      135M model on CPU); resumes at the same TP/PP, any DP. Megatron-LM's default.
    # A checkpoint records its format, so loading needs no setting.
    optimizer_sharding: str = "fully_reshardable"  # one of OPTIMIZER_SHARDINGS (the first is the default)
    finetune: bool = False  # load weights only, reset optimizer/iteration (e.g. DPO from a CPT+IT checkpoint)


@dataclass
class LoggingConfig:
    tensorboard_dir: Optional[str] = None  # default: <checkpoint.save>/tensorboard
    metrics_file: Optional[str] = None  # JSONL of per-step metrics; default <checkpoint.save>/metrics.jsonl
    progress_bar: bool = True  # tqdm bar on rank 0


def _world_size() -> int:
    """torchrun's WORLD_SIZE, else srun's SLURM_NTASKS (one task per GPU), else 1."""
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def valid_layouts(model: ModelConfig, world_size: int) -> list[str]:
    """Every TP x PP layout (no CP/VPP) that fits the model's heads, KV groups and layers on ``world_size``
    processes, smallest model parallelism first: what validation suggests when a layout does not fit."""
    out = []
    for tp in range(1, world_size + 1):
        if model.num_attention_heads % tp or model.num_query_groups % tp:
            continue
        for pp in range(1, world_size // tp + 1):
            if world_size % (tp * pp) == 0 and model.num_layers % pp == 0:
                out.append((tp * pp, f"TP{tp} x PP{pp} (DP{world_size // (tp * pp)})"))
    return [name for _, name in sorted(out)]


def validate_megatron(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                      sched: ScheduleConfig | None, world_size: int | None = None,
                      problems: Problems | None = None) -> Problems:
    """Layout checks shared by every megatron stage; adds to ``problems`` (created if None)."""
    from findap_nemo.runtime import has_cuda, has_transformer_engine, is_hopper

    p = problems or Problems()
    tp, pp, cp = (parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size,
                  parallel.context_parallel_size)
    ws = world_size or _world_size()
    for key, val in (("parallel.tensor_model_parallel_size", tp), ("parallel.pipeline_model_parallel_size", pp),
                     ("parallel.context_parallel_size", cp)):
        p.check(val >= 1, key, val, "must be >= 1")
    if min(tp, pp, cp) < 1:
        return p
    fits = f"; with {ws} processes these layouts fit the model: {', '.join(valid_layouts(model, ws)) or 'none'}"
    p.check(model.num_attention_heads % tp == 0, "model.num_attention_heads", model.num_attention_heads,
            f"must be divisible by parallel.tensor_model_parallel_size={tp}; pick a TP that divides it{fits}")
    p.check(model.num_query_groups % tp == 0, "model.num_query_groups", model.num_query_groups,
            f"query groups (KV heads) must be divisible by tensor_model_parallel_size={tp}; use TP <= "
            f"{model.num_query_groups} that divides it{fits}")
    p.check(model.num_attention_heads % model.num_query_groups == 0, "model.num_query_groups",
            model.num_query_groups, f"must divide num_attention_heads={model.num_attention_heads}")
    vpp = parallel.virtual_pipeline_model_parallel_size
    if vpp is not None:
        p.check(pp > 1, "parallel.virtual_pipeline_model_parallel_size", vpp,
                "virtual pipeline stages need pipeline_model_parallel_size > 1; set it to null")
        p.check(model.num_layers % (pp * vpp) == 0, "model.num_layers", model.num_layers,
                f"must be divisible by pipeline_model_parallel_size x virtual_pipeline_model_parallel_size = "
                f"{pp}x{vpp}={pp * vpp}")
    else:
        p.check(model.num_layers % pp == 0, "model.num_layers", model.num_layers,
                f"must be divisible by pipeline_model_parallel_size={pp}; choose PP among "
                f"{[d for d in range(1, model.num_layers + 1) if model.num_layers % d == 0]}")
    p.check(model.hidden_size % model.num_attention_heads == 0 or model.kv_channels is not None,
            "model.hidden_size", model.hidden_size,
            f"must be divisible by num_attention_heads={model.num_attention_heads} (or set model.kv_channels)")
    p.check(ws % (tp * pp * cp) == 0, "parallel", f"TP{tp} x PP{pp} x CP{cp}",
            f"the world size {ws} must be a multiple of TP x PP x CP = {tp * pp * cp}; change the layout or the "
            f"number of processes (nodes x GPUs per node)")
    dp = max(ws // (tp * pp * cp), 1)
    if parallel.sequence_parallel:
        p.check(tp > 1, "parallel.sequence_parallel", True, "sequence parallelism needs tensor_model_parallel_size > 1")
    if sched is not None:
        p.check(sched.micro_batch_size >= 1, "schedule.micro_batch_size", sched.micro_batch_size, "must be >= 1")
        mbdp = sched.micro_batch_size * dp
        p.check(sched.global_batch_size % max(mbdp, 1) == 0, "schedule.global_batch_size", sched.global_batch_size,
                f"must be divisible by micro_batch_size x data-parallel size = {sched.micro_batch_size} x {dp} = {mbdp}")
        if parallel.sequence_parallel:
            p.check(sched.seq_length % tp == 0, "schedule.seq_length", sched.seq_length,
                    f"with sequence_parallel the sequence length must be divisible by TP={tp}")
        if cp > 1:
            p.check(sched.seq_length % (2 * cp) == 0, "schedule.seq_length", sched.seq_length,
                    f"with context parallelism it must be divisible by 2 x CP = {2 * cp}")
        p.check(sched.seq_length <= model.max_position_embeddings, "schedule.seq_length", sched.seq_length,
                f"exceeds model.max_position_embeddings={model.max_position_embeddings}")
        if vpp is not None:
            num_mb = sched.global_batch_size // max(mbdp, 1)
            p.check(num_mb % pp == 0, "schedule.global_batch_size", sched.global_batch_size,
                    f"the interleaved schedule needs the number of micro-batches ({num_mb}) divisible by PP={pp}")
    if precision.fp8:
        p.check(precision.fp8 in ("hybrid", "e4m3"), "precision.fp8", precision.fp8, "use hybrid or e4m3 (or null)")
        p.check(has_cuda() and is_hopper(), "precision.fp8", precision.fp8,
                "FP8 needs a Hopper (H100/H200) or newer GPU; set precision.fp8=null on this machine")
        p.check(has_transformer_engine(), "precision.fp8", precision.fp8,
                "FP8 needs Transformer Engine: install findap-nemo[gpu] or use an NVIDIA PyTorch container")
        p.check(model.transformer_impl != "local", "model.transformer_impl", model.transformer_impl,
                "FP8 runs through Transformer Engine layers; set model.transformer_impl=auto or transformer_engine")
        p.check(precision.fp8_recipe in ("delayed", "tensorwise", "mxfp8", "blockwise"), "precision.fp8_recipe",
                precision.fp8_recipe, "use delayed, tensorwise, mxfp8 or blockwise")
    p.check(precision.params_dtype in ("auto", "fp32", "bf16", "fp16"), "precision.params_dtype",
            precision.params_dtype, "use auto, fp32, bf16 or fp16")
    if precision.params_dtype in ("bf16", "fp16") and not has_cuda():
        p.add("precision.params_dtype", precision.params_dtype,
              "half precision training needs a GPU; use auto or fp32 on CPU")
    p.check(model.transformer_impl in ("auto", "local", "transformer_engine"), "model.transformer_impl",
            model.transformer_impl, "use auto, local or transformer_engine")
    p.check(model.attention_backend in ("sdpa", "unfused"), "model.attention_backend", model.attention_backend,
            "use sdpa or unfused")
    if model.transformer_impl == "transformer_engine":
        p.check(has_transformer_engine() and has_cuda(), "model.transformer_impl", "transformer_engine",
                "Transformer Engine is not importable or no GPU is present; use auto")
    if model.recompute_granularity is not None:
        p.check(model.recompute_granularity in ("selective", "full"), "model.recompute_granularity",
                model.recompute_granularity, "use selective, full or null")
        if model.recompute_granularity == "full":
            p.check(model.recompute_method in ("uniform", "block"), "model.recompute_method",
                    model.recompute_method, "full recompute needs recompute_method uniform or block")
    return p


OPTIMIZER_SHARDINGS = ("fully_reshardable", "dp_reshardable")  # the default first (CheckpointConfig)


def use_te(model: ModelConfig) -> bool:
    """Transformer Engine layers: when asked for, or (``auto``) when TE is installed and a GPU is present."""
    from findap_nemo.runtime import has_cuda, has_transformer_engine

    if model.transformer_impl == "local":
        return False
    if model.transformer_impl == "transformer_engine":
        return True
    return has_cuda() and has_transformer_engine()


def validate_training(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig,
                      optim: OptimConfig, sched: ScheduleConfig, world_size: int | None = None,
                      checkpoint: CheckpointConfig | None = None) -> Problems:
    """:func:`validate_megatron` plus the optimizer/schedule/checkpoint checks every training stage (train, dpo)
    shares."""
    p = validate_megatron(model, parallel, precision, sched, world_size)
    if checkpoint is not None:
        p.check(checkpoint.optimizer_sharding in OPTIMIZER_SHARDINGS, "checkpoint.optimizer_sharding",
                checkpoint.optimizer_sharding, f"use one of {list(OPTIMIZER_SHARDINGS)} (fully_reshardable resumes "
                "at any layout, dp_reshardable saves faster and resumes at the same TP/PP)")
    p.check(sched.train_iters >= 1, "schedule.train_iters", sched.train_iters, "must be >= 1")
    p.check(optim.lr > 0, "optim.lr", optim.lr, "must be > 0")
    p.check(optim.lr <= 0 or 0 <= optim.min_lr <= optim.lr, "optim.min_lr", optim.min_lr,
            f"must be in [0, optim.lr={optim.lr}]: the schedule decays from lr to min_lr; lower optim.min_lr too")
    p.check(optim.lr_decay_style in ("cosine", "linear", "constant"), "optim.lr_decay_style",
            optim.lr_decay_style, "use cosine, linear or constant")
    return p


@dataclass
class MegatronJobConfig:
    """The sections every megatron-core job has (`findap-nemo train` and `dpo`): model, layout, precision,
    optimizer, schedule, checkpoints and logging, checked together by :func:`validate_training`. A job adds its
    own ``data`` section (and its objective's)."""

    RENAMED: ClassVar[dict] = {"train": "schedule (batch sizes, sequence length, iterations, seed, eval cadence)"}

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # batch sizes, sequence length, iterations
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate_sections(self, world_size: int | None = None) -> Problems:
        return validate_training(self.model, self.parallel, self.precision, self.optim, self.schedule, world_size,
                                 self.checkpoint)
