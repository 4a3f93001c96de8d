"""Hugging Face safetensors -> megatron-core dist checkpoint (torch_dist), streamed one layer tensor at a time.

Output layout (what ``checkpoint.pretrained=<out>`` of the train and DPO stages reads, at any TP/PP)::

    <out>/iter_0000000/                 dist checkpoint (weights only)
    <out>/latest_checkpointed_iteration.txt
    <out>/model_config.yaml             the megatron ModelConfig (shape, RoPE, vocab) for training/export
    <out>/hf_config.json                the source config.json (architecture details restored on export)
    <out>/generation_config.json        the source generation config, if any
    <out>/tokenizer/                    the source tokenizer files (chat template included)
    <out>/convert.json                  provenance and measurements
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from findap_nemo.checkpoint_layout import iter_dir, write_tracker
from findap_nemo.config import ConfigError
from findap_nemo.convert import layout, names
from findap_nemo.convert.hf_config import hf_to_model_config, read_hf_config
from findap_nemo.convert.mcore_io import ChunkedTensor, write_dist_checkpoint
from findap_nemo.config.model_config_io import MODEL_CONFIG_NAME, save_model_config
from findap_nemo.convert.output import atomic_dir, check_output
from findap_nemo.convert.progress import Progress
from findap_nemo.convert.safetensors_io import SafetensorsReader
from findap_nemo.tokenizer import copy_tokenizer_files

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _st_dtype(name: str) -> torch.dtype:
    return {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}.get(name, torch.float32)


def check_hf_tensors(reader: SafetensorsReader, model, src: str) -> list[str]:
    """Every expected tensor present with the expected shape; unknown tensors refused. Returns ignored names."""
    expected = names.hf_shapes(model, model.vocab_size)
    tied = not model.untie_embeddings_and_output_weights
    problems = []
    for name, shape in expected.items():
        if name not in reader:
            problems.append(f"{src}: tensor {name} is missing (expected shape {shape})")
        elif reader.shape(name) != shape:
            problems.append(f"{src}: tensor {name} has shape {reader.shape(name)}, the config implies {shape}")
    ignored, unknown = [], []
    for name in reader.names():
        if name in expected:
            continue
        if name.endswith(names.HF_IGNORABLE_SUFFIXES) or (tied and name == names.HF_LM_HEAD):
            ignored.append(name)  # a recomputed buffer, or the tied head duplicating the embedding
        else:
            unknown.append(name)
    if tied and names.HF_LM_HEAD in reader and \
            not torch.equal(reader.get(names.HF_LM_HEAD), reader.get(names.HF_EMBED)):
        problems.append(f"{src}: config.json has tie_word_embeddings=true but {names.HF_LM_HEAD} differs from "
                        f"{names.HF_EMBED}; set tie_word_embeddings=false if the head is trained separately")
    if unknown:
        problems.append(f"{src}: {len(unknown)} tensors have no place in the Llama-architecture model, e.g. "
                        f"{unknown[:5]}; is config.json the one these weights belong to?")
    if problems:
        raise ConfigError(problems)
    return ignored


def convert_hf_to_mcore(hf_dir: str | Path, out: str | Path, *, force: bool = False, dtype: str = "auto",
                        pad_vocab_for_tp: int = 1, make_vocab_size_divisible_by: int = 128,
                        progress: bool = True) -> dict:
    """Convert; returns the provenance/measurement record also written to ``<out>/convert.json``."""
    from findap_nemo.model.builder import padded_vocab_size

    hf_dir = Path(hf_dir)
    out = check_output(out, force)
    hf_cfg = read_hf_config(hf_dir)
    model = hf_to_model_config(hf_cfg, str(hf_dir / "config.json"))
    model.make_vocab_size_divisible_by = make_vocab_size_divisible_by
    try:
        reader = SafetensorsReader(hf_dir)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from err
    ignored = check_hf_tensors(reader, model, str(hf_dir))
    if dtype != "auto" and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use auto, fp32, bf16 or fp16")
    target = DTYPES[dtype] if dtype != "auto" else _st_dtype(reader.dtype_name(names.HF_EMBED))
    if pad_vocab_for_tp < 1:
        raise ConfigError(f"--pad-vocab-for-tp {pad_vocab_for_tp}: must be >= 1")
    padded = padded_vocab_size(model.vocab_size, make_vocab_size_divisible_by, pad_vocab_for_tp)
    shapes = names.mcore_shapes(model, padded)
    tensors = [ChunkedTensor.per_layer(k, s, target) if names.is_layer_key(k) else ChunkedTensor.whole(k, s, target)
               for k, s in shapes.items()]
    heads, groups, d = model.num_attention_heads, model.num_query_groups, model.head_dim
    total_bytes = sum(torch.Size(t.shape).numel() for t in tensors) * torch.empty((), dtype=target).element_size()
    bar = Progress(total_bytes, "hf-to-mcore", enabled=progress)

    def produce(t: ChunkedTensor, offsets: tuple[int, ...]) -> torch.Tensor:
        i = offsets[0]
        n = names.hf_layer(i) if names.is_layer_key(t.key) else {}
        g = reader.get
        if t.key == names.EMBED:
            x = layout.pad_vocab(g(names.HF_EMBED), padded, names.HF_EMBED)
        elif t.key == names.OUTPUT:
            x = layout.pad_vocab(g(names.HF_LM_HEAD), padded, names.HF_LM_HEAD)
        elif t.key == names.FINAL_NORM:
            x = g(names.HF_NORM)
        elif t.key == names.QKV_NORM:
            x = g(n["input_layernorm"])
        elif t.key == names.FC1_NORM:
            x = g(n["post_attention_layernorm"])
        elif t.key == names.QKV:
            x = layout.fuse_qkv(g(n["q"]), g(n["k"]), g(n["v"]), heads, groups, d, f"model.layers.{i}.self_attn")
        elif t.key == names.QKV_BIAS:
            x = layout.fuse_qkv(g(n["q_bias"]), g(n["k_bias"]), g(n["v_bias"]), heads, groups, d,
                                f"model.layers.{i}.self_attn bias")
        elif t.key == names.PROJ:
            x = g(n["o"])
        elif t.key == names.FC1:
            x = layout.fuse_gate_up(g(n["gate"]), g(n["up"]), f"model.layers.{i}.mlp")
        elif t.key == names.FC2:
            x = g(n["down"])
        else:  # pragma: no cover - names.mcore_shapes and this table are kept in step
            raise KeyError(t.key)
        x = x.to(target)
        if names.is_layer_key(t.key):
            x = x.unsqueeze(0)
        bar.update(x.numel() * x.element_size())
        return x

    start = time.perf_counter()
    with atomic_dir(out) as tmp:
        ckpt = iter_dir(tmp, 0)
        write_dist_checkpoint(
            ckpt, tensors, produce,
            objects={k: [None] for k in names.extra_state_keys(model.num_layers)},
            common={"iteration": 0, "extra": {"converted_from": str(hf_dir.absolute())}})
        write_tracker(tmp, 0)
        tok_files = copy_tokenizer_files(hf_dir, tmp / "tokenizer")
        if tok_files:
            model.tokenizer = str(out.absolute() / "tokenizer")
        else:
            (tmp / "tokenizer").rmdir()
        save_model_config(model, tmp / MODEL_CONFIG_NAME)
        shutil.copy2(hf_dir / "config.json", tmp / "hf_config.json")
        if (hf_dir / "generation_config.json").is_file():
            shutil.copy2(hf_dir / "generation_config.json", tmp / "generation_config.json")
        seconds = time.perf_counter() - start
        record = {
            "direction": "hf-to-mcore", "source": str(hf_dir.absolute()), "output": str(out.absolute()),
            "dtype": str(target).replace("torch.", ""), "vocab_size": model.vocab_size, "padded_vocab_size": padded,
            "pad_vocab_for_tp": pad_vocab_for_tp, "num_tensors": len(tensors), "bytes": total_bytes,
            "seconds": round(seconds, 3), "mb_per_s": round(total_bytes / 1e6 / max(seconds, 1e-9), 1),
            "ignored_hf_tensors": ignored, "tokenizer_files": tok_files,
        }
        (tmp / "convert.json").write_text(json.dumps(record, indent=2) + "\n")
    bar.close()
    return record
