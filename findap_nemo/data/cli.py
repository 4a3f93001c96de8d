"""`findap-nemo data`: build the blended CPT+IT training set from a data recipe.

    findap-nemo data --config configs/data/demo.yaml tokenizer=samples/tokenizer output_dir=runs/data
    findap-nemo data --config configs/data/demo.yaml --skip-bad        # count bad records instead of stopping

Writes Megatron indexed datasets (tokens + target masks) per domain and split, and manifest.json with per-source
counts, everything dropped and why (bad records, decontamination, length, downsampling) and the blend weights.
Train on it with `findap-nemo train ... data.manifest=<output_dir>/manifest.json`.
Work in progress lives in `<output_dir>.partial/` and is renamed to `<output_dir>` only when complete; rerunning
an interrupted build reuses the sources it had finished tokenizing (when their inputs and settings are unchanged).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="data recipe YAML (see configs/data/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. seq_length=2048 output_dir=runs/data")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (and count in the manifest) malformed records instead of stopping at the first one")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")


def run(args) -> int:
    from findap_nemo.config import config_yaml, load_config
    from findap_nemo.data.run import build
    from findap_nemo.data.config import DataRecipe
    from findap_nemo.data.sources import DataError

    overrides = list(args.overrides) + (["skip_bad=true"] if args.skip_bad else [])
    recipe = load_config(DataRecipe, args.config, overrides)
    if args.print_config:
        print(config_yaml(recipe), end="")
        return 0
    try:
        build(recipe)
    except (DataError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"findap-nemo data: {err}", file=sys.stderr)
        return 2
    return 0
