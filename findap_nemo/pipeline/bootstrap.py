"""Create the demo's starting policy: a random Llama of a preset shape, saved in HF format with the tokenizer.

    python -m findap_nemo.pipeline.bootstrap --tokenizer samples/tokenizer --preset tiny --out runs/demo/base_hf
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from findap_nemo.config import model_preset
    from findap_nemo.model.hf_tiny import save_random_model

    m = model_preset(a.preset)
    out = Path(a.out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_random_model(tmp, a.tokenizer, num_layers=m.num_layers, hidden_size=m.hidden_size,
                      intermediate_size=m.ffn_hidden_size, num_attention_heads=m.num_attention_heads,
                      num_key_value_heads=m.num_query_groups, tie_word_embeddings=not m.untie_embeddings_and_output_weights,
                      max_position_embeddings=m.max_position_embeddings, rope_theta=m.rotary_base, seed=a.seed)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(f"[bootstrap] random {a.preset} Llama -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
