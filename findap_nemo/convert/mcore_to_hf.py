"""megatron-core dist checkpoint (any TP/PP/VPP layout, converted or trained) -> Hugging Face folder.

Reads layer by layer straight from the torch_dist files (no merge step, no model built), un-pads the vocabulary,
splits the fused QKV and gate/up tensors, and writes sharded safetensors + index, ``config.json``,
``generation_config.json`` (EOS = the tokenizer's stop tokens, so generation ends) and the tokenizer files exactly
as they were (its own chat template; nothing invented).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from findap_nemo.config import ConfigError
from findap_nemo.config.schema import ModelConfig
from findap_nemo.convert import layout, names
from findap_nemo.convert.hf_config import model_config_to_hf
from findap_nemo.model.architectures import ARCHITECTURES
from findap_nemo.convert.mcore_io import DistCheckpointReader
from findap_nemo.config.model_config_io import find_model_config, load_model_config, pretrained_root
from findap_nemo.convert.output import atomic_dir, check_output
from findap_nemo.convert.config import parse_size
from findap_nemo.convert.progress import Progress
from findap_nemo.files import read_json
from findap_nemo.convert.safetensors_io import TensorSpec, write_sharded

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HF_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _find_checkpoint(mcore: Path) -> Path:
    from findap_nemo.checkpoint_layout import TRACKER, latest_checkpoint

    ckpt = latest_checkpoint(mcore)
    if ckpt is None:
        raise ConfigError(f"--mcore {mcore}: no megatron checkpoint found (expected an iter_XXXXXXX folder, or a "
                          f"folder holding them with {TRACKER})")
    return ckpt


def _roots(ckpt: Path) -> list[Path]:
    """The checkpoint's run folder, then the chain of folders it was initialised from (DPO run -> CPT+IT run ->
    converted base model), where the architecture config and the tokenizer are found."""
    out = [ckpt.parent]
    while len(out) < 8:
        pre = pretrained_root(out[-1])
        if pre is None or not pre.is_dir() or pre.resolve() in {p.resolve() for p in out}:
            break
        out.append(pre)
    return out


def resolve_model_config(ckpt: Path, model_config: str | None, overrides: list[str]) -> ModelConfig:
    if model_config:
        return load_model_config(model_config, overrides)
    path = find_model_config(ckpt.parent)
    if path is None:
        raise ConfigError(f"{ckpt.parent}: no model_config.yaml or config.yaml next to the checkpoint; give the "
                          "model shape with --model-config <yaml with a 'model:' section>")
    return load_model_config(path, overrides)


def resolve_tokenizer(ckpt: Path, model: ModelConfig, tokenizer: str | None) -> Path:
    candidates = [tokenizer] if tokenizer else [model.tokenizer, *[r / "tokenizer" for r in _roots(ckpt)]]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise ConfigError(f"no tokenizer found for {ckpt} (looked at {[str(c) for c in candidates if c]}); pass "
                      "--tokenizer <HF tokenizer folder> (the export ships it with its chat template)")


def check_checkpoint(reader: DistCheckpointReader, model: ModelConfig, src: str) -> int:
    """Every tensor the model needs present with the shape the config implies; returns the stored padded vocab."""
    stored_vocab = reader.shape(names.EMBED)
    problems = []
    if stored_vocab is None:
        raise ConfigError(f"{src}: tensor {names.EMBED} not found: not a GPT checkpoint "
                          f"(found e.g. {sorted(reader.tensors)[:5]})")
    padded = stored_vocab[0]
    if padded < model.vocab_size:
        problems.append(f"{src}: tensor {names.EMBED} has shape {stored_vocab} with fewer rows than "
                        f"model.vocab_size={model.vocab_size}")
    for key, shape in names.mcore_shapes(model, padded).items():
        found = reader.shape(key)
        if found is None:
            hint = (" (the checkpoint ties embeddings? set model.untie_embeddings_and_output_weights=false)"
                    if key == names.OUTPUT else "")
            problems.append(f"{src}: tensor {key} is missing (expected shape {shape}){hint}")
        elif found != shape:
            problems.append(f"{src}: tensor {key} has shape {found}, the model config implies {shape}")
    if problems:
        raise ConfigError(problems)
    return padded


def generation_config(tok, base: dict | None) -> dict:
    """Generation defaults with EOS = every stop token of the tokenizer (EOS and <|eot_id|>)."""
    from findap_nemo.tokenizer import stop_token_ids

    out = dict(base or {})
    stops = stop_token_ids(tok)
    prev = out.get("eos_token_id")
    prev = [prev] if isinstance(prev, int) else list(prev or [])
    out["eos_token_id"] = sorted(set(stops) | set(prev))
    if tok.bos_token_id is not None:
        out["bos_token_id"] = tok.bos_token_id
    if tok.pad_token_id is not None:
        out["pad_token_id"] = tok.pad_token_id
    out.pop("transformers_version", None)
    if not out["eos_token_id"]:
        raise ConfigError("the tokenizer defines no EOS/stop token: generation would never stop; fix the tokenizer")
    return out


def convert_mcore_to_hf(mcore: str | Path, out: str | Path, *, tokenizer: str | None = None,
                        model_config: str | None = None, overrides: list[str] = (), force: bool = False,
                        dtype: str = "auto", max_shard_size: str = "5GB", progress: bool = True) -> dict:
    from findap_nemo.tokenizer import copy_tokenizer_files, load_tokenizer

    mcore = Path(mcore)
    out = check_output(out, force)
    ckpt = _find_checkpoint(mcore)
    model = resolve_model_config(ckpt, model_config, list(overrides))
    tok_dir = resolve_tokenizer(ckpt, model, tokenizer)
    tok = load_tokenizer(tok_dir)
    if len(tok) > model.vocab_size:
        raise ConfigError(f"tokenizer {tok_dir} has {len(tok)} tokens but the model's vocabulary is "
                          f"{model.vocab_size} (model.vocab_size): they do not belong together")
    try:
        reader = DistCheckpointReader(ckpt)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from err
    check_checkpoint(reader, model, str(ckpt))
    if dtype != "auto" and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use auto, fp32, bf16 or fp16")
    target = DTYPES[dtype] if dtype != "auto" else reader.dtype(names.QKV)
    shard_bytes = parse_size(max_shard_size)
    vocab = model.vocab_size
    specs = [TensorSpec(n, s, target) for n, s in names.hf_shapes(model, vocab).items()]
    heads, groups, d = model.num_attention_heads, model.num_query_groups, model.head_dim
    bar = Progress(sum(s.nbytes for s in specs), "mcore-to-hf", enabled=progress)
    # The current layer's split tensors (QKV, gate/up): read once per layer, handed out as the writer asks for them.
    cache: dict[str, torch.Tensor] = {}
    cached_layer = [-1]

    def layer_parts(i: int) -> dict[str, torch.Tensor]:
        if cached_layer[0] == i:
            return cache
        cache.clear()
        cached_layer[0] = i
        n = names.hf_layer(i)
        q, k, v = layout.split_qkv(reader.read(names.QKV, i), heads, groups, d, f"{names.QKV}[{i}]")
        cache.update({n["q"]: q, n["k"]: k, n["v"]: v})
        if model.add_qkv_bias:
            qb, kb, vb = layout.split_qkv(reader.read(names.QKV_BIAS, i), heads, groups, d, f"{names.QKV_BIAS}[{i}]")
            cache.update({n["q_bias"]: qb, n["k_bias"]: kb, n["v_bias"]: vb})
        gate, up = layout.split_gate_up(reader.read(names.FC1, i), model.ffn_hidden_size, f"{names.FC1}[{i}]")
        cache.update({n["gate"]: gate, n["up"]: up})
        return cache

    def produce(spec: TensorSpec) -> torch.Tensor:
        name = spec.name
        if name == names.HF_EMBED:
            x = layout.unpad_vocab(reader.read(names.EMBED), vocab, names.EMBED)
        elif name == names.HF_LM_HEAD:
            x = layout.unpad_vocab(reader.read(names.OUTPUT), vocab, names.OUTPUT)
        elif name == names.HF_NORM:
            x = reader.read(names.FINAL_NORM)
        else:
            i = int(name.split(".")[2])
            n = names.hf_layer(i)
            if name == n["input_layernorm"]:
                x = reader.read(names.QKV_NORM, i)
            elif name == n["post_attention_layernorm"]:
                x = reader.read(names.FC1_NORM, i)
            elif name == n["o"]:
                x = reader.read(names.PROJ, i)
            elif name == n["down"]:
                x = reader.read(names.FC2, i)
            else:
                x = layer_parts(i).pop(name)
        bar.update(spec.nbytes)
        return x.to(target)

    start = time.perf_counter()
    roots = _roots(ckpt)
    base_cfg = next((c for r in roots if (c := read_json(r / "hf_config.json", missing_ok=True)) is not None), None)
    base_gen = next((c for r in roots if (c := read_json(r / "generation_config.json", missing_ok=True)) is not None), None)
    if base_cfg is not None and base_cfg.get("model_type") not in ARCHITECTURES:
        base_cfg = None
    with atomic_dir(out) as tmp:
        files = write_sharded(tmp, specs, produce, max_shard_bytes=shard_bytes)
        hf_cfg = model_config_to_hf(model, vocab, base_cfg, dtype=HF_DTYPE_NAMES[target])
        gen = generation_config(tok, base_gen)
        hf_cfg.update(bos_token_id=gen.get("bos_token_id"), eos_token_id=gen["eos_token_id"],
                      pad_token_id=gen.get("pad_token_id"))
        (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        copy_tokenizer_files(tok_dir, tmp)  # as it was: no invented template or pad token
        seconds = time.perf_counter() - start
        total = sum(s.nbytes for s in specs)
        record = {
            "direction": "mcore-to-hf", "source": str(ckpt.absolute()), "output": str(Path(out).absolute()),
            "iteration": int(reader.common_state().get("iteration", 0)), "dtype": HF_DTYPE_NAMES[target],
            "vocab_size": vocab, "num_tensors": len(specs), "num_shards": len(files), "bytes": total,
            "seconds": round(seconds, 3), "mb_per_s": round(total / 1e6 / max(seconds, 1e-9), 1),
            "tokenizer": str(tok_dir), "eos_token_id": gen["eos_token_id"],
        }
        (tmp / "convert.json").write_text(json.dumps(record, indent=2) + "\n")
    bar.close()
    return record
