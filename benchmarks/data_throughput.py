"""Data-stage throughput: tokenize + pack + write a ~50 MB corpus with a Llama-3-sized (131k) BPE vocabulary.

Compared in one run, each in its own process (peak RSS = the whole process tree, sampled):
  raw        the tokenizer alone (batched fast-tokenizer encode, nothing written): the ceiling
  baseline   one document at a time: tokenizer.encode + megatron IndexedDatasetBuilder
  findap     `findap-nemo data` (read, decontaminate, tokenize in workers, pack, write, manifest)
  megatron   Megatron-LM's tools/preprocess_data.py, when --megatron-lm points at a checkout (never committed)
and `findap` again on a 5x smaller corpus to show that its memory does not grow with the corpus.

    pip install tiktoken mistral_common     # the 131k Tekken BPE ships in mistral_common; tiktoken converts it
    python benchmarks/data_throughput.py [--mb 50] [--workers 2] [--megatron-lm /path/to/Megatron-LM]

Writes benchmarks/results/data_throughput.{json,md}. Work files go to benchmarks/.cache (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache"
RESULTS = REPO / "benchmarks" / "results"


def llama3_sized_tokenizer() -> Path:
    """Tekken (131,072 tokens, tiktoken-style byte-level BPE) as an HF fast tokenizer with Llama 3's specials."""
    out = CACHE / "tekken_hf"
    if (out / "tokenizer.json").exists():
        return out
    import importlib.resources

    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from findap_nemo.tokenizer import BOS, EOT, LLAMA3_CHAT_TEMPLATE, LLAMA3_SPECIAL_TOKENS, PAD

    data = json.loads((importlib.resources.files("mistral_common") / "data" / "tekken_240911.json").read_text())
    n = data["config"]["default_vocab_size"] - data["config"]["default_num_special_tokens"]
    ranks = CACHE / "tekken.tiktoken"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(ranks, "w") as f:
        for v in data["vocab"][:n]:
            f.write(f"{v['token_bytes']} {v['rank']}\n")
    conv = TikTokenConverter(vocab_file=str(ranks), pattern=data["config"]["pattern"],
                             additional_special_tokens=LLAMA3_SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=conv.converted(), bos_token=BOS, eos_token=EOT, pad_token=PAD)
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    return out


def make_corpus(mb: float, name: str) -> Path:
    """Finance/general text in the style of the shipped samples, varied by seed, about ``mb`` megabytes."""
    path = CACHE / f"{name}.jsonl"
    if path.exists() and abs(path.stat().st_size / 2**20 - mb) < 1:
        return path
    sys.path.insert(0, str(REPO / "samples" / "fintrain"))
    import generate as g  # the sample-data generator

    CACHE.mkdir(parents=True, exist_ok=True)
    gen = g.Gen(0)
    with open(path, "w", encoding="utf-8") as f:
        i = 0
        while f.tell() < mb * 2**20:
            doc = g.finance_cpt(gen, i) if i % 3 else g.general_cpt(gen, i)
            f.write(json.dumps({"text": doc["text"]}) + "\n")
            i += 1
    return path


RAW = """
import json, sys, time
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
t = time.time(); n = 0
for i in range(0, len(texts), 1000):
    n += sum(len(x) for x in tok(texts[i:i + 1000], add_special_tokens=False)["input_ids"])
print(json.dumps({"tokens": n, "seconds": time.time() - t}))
"""

BASELINE = """
import json, sys, time, numpy as np, torch
from transformers import AutoTokenizer
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
tok = AutoTokenizer.from_pretrained(sys.argv[1])
b = IndexedDatasetBuilder(sys.argv[3] + ".bin", dtype=np.int32)
t = time.time(); n = 0
with open(sys.argv[2], encoding="utf-8") as f:
    for line in f:
        ids = tok.encode(json.loads(line)["text"], add_special_tokens=False) + [tok.eos_token_id]
        b.add_item(torch.tensor(ids, dtype=torch.int32)); b.end_document(); n += len(ids)
b.finalize(sys.argv[3] + ".idx")
print(json.dumps({"tokens": n, "seconds": time.time() - t}))
"""


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command; sample the RSS of its whole process tree; return its JSON line (if any) + peak RSS."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore",
                                     **(env or {})))
    peak = [0]

    def sample():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    t0 = time.time()
    th.start()
    out, err = proc.communicate()
    wall = time.time() - t0
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{err[-3000:]}")
    result = {"wall_s": wall, "peak_rss_mib": peak[0] / 2**20}
    for line in out.splitlines()[::-1]:
        if line.startswith("{"):
            result.update(json.loads(line))
            break
    return result


def findap(tokenizer: Path, corpus: Path, workers: int, out: Path) -> dict:
    import yaml

    recipe = {"tokenizer": str(tokenizer), "output_dir": str(out), "seq_length": 8000, "num_workers": workers,
              "force": True, "sources": [{"name": "corpus", "kind": "cpt", "domain": "finance",
                                              "path": str(corpus)}],
              "blend": {"downsample_cpt": "none", "valid_fraction": 0.0}}
    cfg = CACHE / f"recipe_{corpus.stem}.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    r = measure([sys.executable, "-m", "findap_nemo.cli", "data", "--config", str(cfg)])
    m = json.loads((out / "manifest.json").read_text())
    r.update(tokens=m["timing"]["tokens"], seconds=m["timing"]["pipeline_seconds"],
             tokenize_only_seconds=m["timing"]["tokenize_seconds"])
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--megatron-lm", help="a Megatron-LM checkout to run tools/preprocess_data.py from")
    a = ap.parse_args()
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    tok = llama3_sized_tokenizer()
    big, small = make_corpus(a.mb, f"corpus_{a.mb:g}mb"), make_corpus(a.mb / 5, f"corpus_{a.mb / 5:g}mb")
    res: dict[str, dict] = {}
    res["raw tokenizer (1 process)"] = measure([sys.executable, "-c", RAW, str(tok), str(big)]) | {"cores": 1}
    res["baseline: encode one by one + builder"] = measure(
        [sys.executable, "-c", BASELINE, str(tok), str(big), str(CACHE / "baseline")]) | {"cores": 1}
    res[f"findap-nemo data ({a.workers} workers)"] = findap(tok, big, a.workers, CACHE / "findap_big") | {
        "cores": a.workers}
    res["findap-nemo data (1 worker)"] = findap(tok, big, 1, CACHE / "findap_big1") | {"cores": 1}
    res[f"findap-nemo data, corpus / 5 ({a.workers} workers)"] = findap(tok, small, a.workers,
                                                                       CACHE / "findap_small") | {"cores": a.workers}
    if a.megatron_lm:
        # one worker, as the per-core rows; its PYTHONPATH puts the checkout first (its megatron.core with it) and
        # keeps the caller's (e.g. a triton that CPU installs lack, which its imports need)
        script = Path(a.megatron_lm) / "tools" / "preprocess_data.py"
        prefix = CACHE / "mlm"
        path = os.pathsep.join(x for x in (str(a.megatron_lm), os.environ.get("PYTHONPATH", "")) if x)
        r = measure([sys.executable, str(script), "--input", str(big), "--output-prefix", str(prefix),
                     "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(tok),
                     "--workers", "1", "--append-eod"], env={"PYTHONPATH": path})
        bin_file = Path(f"{prefix}_text_document.bin")
        # it prints no token count: the .bin holds the tokens (int32 for a vocabulary over 65,500)
        r.update(cores=1, seconds=r["wall_s"], tokens=bin_file.stat().st_size // 4)
        res["Megatron-LM preprocess_data.py (1 worker; seconds = wall, imports included)"] = r
    for r in res.values():
        r["tokens_per_s"] = r["tokens"] / r["seconds"] if "tokens" in r else None
        r["tokens_per_s_per_core"] = r["tokens_per_s"] / r["cores"] if r.get("tokens_per_s") else None
    base = res["baseline: encode one by one + builder"]["tokens_per_s_per_core"]
    raw = res["raw tokenizer (1 process)"]["tokens_per_s_per_core"]
    ours = res["findap-nemo data (1 worker)"]["tokens_per_s_per_core"]
    meta = {"command": "python benchmarks/data_throughput.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.node()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d %H:%M UTC"),
            "corpus_mb": a.mb, "tokenizer": "Tekken 131k BPE (mistral_common) as HF fast tokenizer",
            "speedup_vs_baseline_per_core": ours / base, "fraction_of_raw_tokenizer_per_core": ours / raw,
            "megatron_lm": (f"{ours / mlm:.2f}x its tokens/s per core (findap-nemo 1 worker vs preprocess_data.py 1 "
                            f"worker, whose seconds include its imports)" if (mlm := next(
                                (r["tokens_per_s_per_core"] for k, r in res.items() if k.startswith("Megatron-LM")),
                                None)) else "not run (no --megatron-lm checkout given)"),
            "load_average_start": load_start, "load_average_end": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_throughput.json").write_text(json.dumps({"meta": meta, "results": res}, indent=2))
    lines = ["# data_throughput", "", f"`{meta['command']}` on {meta['machine']}, {meta['date']}; corpus "
             f"{a.mb:g} MB; tokenizer: {meta['tokenizer']}", "",
             "| run | cores | tokens | tokens/s | tokens/s/core | peak RSS (MiB) | wall (s) |", "|---|---|---|---|---|---|---|"]
    for k, r in res.items():
        lines.append(f"| {k} | {r['cores']} | {r.get('tokens', '-')} | {r['tokens_per_s'] or 0:,.0f} | "
                     f"{r['tokens_per_s_per_core'] or 0:,.0f} | {r['peak_rss_mib']:.0f} | {r['wall_s']:.1f} |")
    lines += ["", f"findap-nemo (1 worker) vs baseline, per core: **{meta['speedup_vs_baseline_per_core']:.2f}x**; "
              f"vs the raw tokenizer: **{meta['fraction_of_raw_tokenizer_per_core']:.2f}** of its speed. "
              f"Megatron-LM: {meta['megatron_lm']}.",
              "tokens/s counts, like the baseline's, everything after loading the tokenizer: for `findap-nemo data` "
              "read + tokenize (workers start-up included) + downsample + pack + write (its manifest's "
              "timing.pipeline_seconds); wall includes interpreter and tokenizer start-up and the manifest.",
              f"Load average when the benchmark started: {meta['load_average_start']}; at the end: "
              f"{meta['load_average_end']} (other jobs shared the machine's cores)."]
    (RESULTS / "data_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
