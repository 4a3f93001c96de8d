"""findap-nemo genrm: preference pairs for DPO from a generative reward model (FinDAP's FAP + SCP).

  findap-nemo genrm --config configs/genrm/demo.yaml policy.model=<hf dir> genrm.model=<hf dir> \
      output_dir=runs/genrm

Writes to output_dir: pairs.jsonl (NeMo-Aligner DPO format, with provenance under "meta"), summary.json (counts
and throughput), progress.jsonl (per-prompt samples and judgements; a rerun resumes from it), config.yaml.
Every key is documented in configs/genrm/findap_llama3_8b.yaml.
"""

from __future__ import annotations

import argparse
import json
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML config (configs/genrm/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sampling.num_samples=8")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from findap_nemo.config import config_yaml, load_config
    from findap_nemo.genrm.config import GenRMConfig

    cfg = load_config(GenRMConfig, args.config, args.overrides)
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    from findap_nemo.genrm.run import GenRMRun

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = GenRMRun(cfg).run()
    print(json.dumps({k: summary[k] for k in ("prompts", "samples", "judged", "unparsable_judgements",
                                              "fap_ties_dropped", "scp_corrected", "pairs", "pairs_per_method",
                                              "throughput", "pairs_file")}, indent=2))
    return 0
