"""GenRM engine throughput: batched vs one prompt at a time (transformers), and vLLM vs transformers on a GPU.

Two workloads, each the GenRM stage's own: *sampling* (N solutions per prompt from the policy, the shipped
samples/genrm prompts with the solve template) and *FAP judging* (one forward per solution, P(Yes) read from the
next-token distribution). Each engine mode runs them after one warm-up call; the median of --repeats is reported.

    python benchmarks/genrm.py                 # CPU: tiny random Llama -> benchmarks/results/genrm.{json,md}
    python benchmarks/genrm.py --gpu --model <hf dir>   # GPU: HF batched vs HF one-at-a-time vs vLLM (if installed)
                                                         # -> benchmarks/results/genrm_gpu.{json,md}

vLLM is detected, never required: without it the vLLM rows say why they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

CORPUS = [
    "Step 1: Compute the ratio of current assets to current liabilities. Step 2: Compare it to 1.0.",
    "The company reported quarterly revenue of $4.2 billion, up 12% year over year, beating estimates.",
    "Is the final answer correct? Yes. No. The first incorrect step is Step 2.",
    "Net income fell to $310 million as interest expense rose; EBITDA margin was 18.5%.",
    "The bond's duration measures price sensitivity to yield changes. Final answer: 7.62",
]


def tiny_model(tmp: Path) -> Path:
    from findap_nemo.model.hf_tiny import save_random_model
    from findap_nemo.tokenizer import train_tokenizer

    train_tokenizer(CORPUS * 40, tmp / "tok", vocab_size=512)
    return save_random_model(tmp / "model", tmp / "tok", num_layers=4, hidden_size=64)


def build_inputs(tok, n_prompts: int):
    from findap_nemo.genrm.config import resolve_path
    from findap_nemo.genrm.prompts import Templates, encode_chat, read_prompts

    t = Templates(resolve_path("configs/genrm/prompts/solve.txt"), resolve_path("configs/genrm/prompts/fap.txt"),
                  resolve_path("configs/genrm/prompts/scp.txt"))
    recs = read_prompts(REPO / "samples/genrm/prompts.jsonl", n_prompts)
    policy = [encode_chat(tok, t.policy_messages(r, None)) for r in recs]
    return recs, t, policy


def timed(fn, repeats: int):
    fn()  # warm-up (allocator, kernels, lazy init)
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_engine(engine, label: str, recs, templates, policy_ids, args, per_call: int) -> list[dict]:
    """Sampling and FAP judging with ``per_call`` prompts per engine call (all prompts at once when 0)."""
    from findap_nemo.genrm.pairs import fap_score
    from findap_nemo.genrm.prompts import answer_token_ids, encode_chat
    from findap_nemo.genrm.run import sample_seed

    tok = engine.tokenizer
    step = per_call or len(policy_ids)

    # per-prompt seeds, as the stage passes them: every sample draws from its own random stream (RowSeededSampler)
    seeds = [sample_seed(1234, r.id, "solve") for r in recs]

    def sample():
        out = []
        for i in range(0, len(policy_ids), step):
            out += engine.generate(policy_ids[i:i + step], n=args.num_samples, temperature=1.0, top_p=0.95,
                                   max_new_tokens=args.max_new_tokens, seeds=seeds[i:i + step])
        return out

    s_time, gens = timed(sample, args.repeats)
    tokens = sum(c.num_tokens for g in gens for c in g)
    judge_ids = [encode_chat(tok, [{"role": "user", "content": templates.fill(templates.fap, r.question, c.text)}])
                 for r, g in zip(recs, gens) for c in g]
    cand = answer_token_ids(tok, ["Yes", " Yes"], "yes") + answer_token_ids(tok, ["No", " No"], "no")
    jstep = per_call * args.num_samples if per_call else len(judge_ids)

    def judge():
        out = []
        for i in range(0, len(judge_ids), jstep):
            out += engine.next_token_logprobs(judge_ids[i:i + jstep], cand)
        return out

    j_time, lps = timed(judge, args.repeats)
    assert all(fap_score(x, 2)[0] is not None for x in lps)
    n = len(policy_ids)
    return [
        {"engine": label, "workload": "sampling", "prompts": n, "sequences": n * args.num_samples,
         "seconds": round(s_time, 3), "prompts_per_s": round(n / s_time, 3),
         "generated_tokens": tokens, "generated_tokens_per_s": round(tokens / s_time, 1)},
        {"engine": label, "workload": "fap_judging", "prompts": n, "sequences": len(judge_ids),
         "seconds": round(j_time, 3), "prompts_per_s": round(n / j_time, 3),
         "judgements_per_s": round(len(judge_ids) / j_time, 2)},
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="HF checkpoint folder (default: a tiny random Llama)")
    ap.add_argument("--gpu", action="store_true", help="run on CUDA and compare with vLLM when installed")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--num-samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64, help="HF sequences per call in the batched mode")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from findap_nemo.inference.config import has_vllm
    from findap_nemo.inference.hf import HFEngine

    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device visible")
    device, dtype = ("cuda", "bf16") if args.gpu else ("cpu", "fp32")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else tiny_model(Path(tmp))
        rows = []
        batched = HFEngine(str(model), device=device, dtype=dtype, batch_size=args.batch_size)
        recs, templates, policy_ids = build_inputs(batched.tokenizer, args.prompts)
        per_call = max(1, args.batch_size // args.num_samples)
        rows += bench_engine(batched, f"hf batched (up to {per_call} prompts x {args.num_samples} samples per call)",
                             recs, templates, policy_ids, args, per_call)
        batched.share_prefix = False
        rows += bench_engine(batched, f"hf batched, no shared-prefix KV cache (up to {per_call} prompts x "
                                      f"{args.num_samples} samples per call)", recs, templates, policy_ids, args,
                             per_call)
        batched.share_prefix = True
        rows += bench_engine(batched, "hf one prompt at a time", recs, templates, policy_ids, args, 1)
        batched.close()
        vllm_note = None
        if not has_vllm():
            vllm_note = "vLLM is not installed here (`pip install vllm` on a GPU node); its rows are omitted"
        elif not torch.cuda.is_available():
            vllm_note = "vLLM is installed but no GPU is visible; its rows are omitted"
        else:
            from findap_nemo.inference.vllm import VLLMEngine

            eng = VLLMEngine(str(model), dtype=dtype, gpu_memory_utilization=0.8)
            rows += bench_engine(eng, "vllm offline engine (all prompts at once)", recs, templates, policy_ids,
                                 args, 0)
            eng.close()
    base = {r["workload"]: r for r in rows if r["engine"] == "hf one prompt at a time"}
    for r in rows:
        key = "generated_tokens_per_s" if r["workload"] == "sampling" else "judgements_per_s"
        r["speedup_vs_one_at_a_time"] = round(r[key] / base[r["workload"]][key], 2)
    meta = {
        "command": "python benchmarks/genrm.py " + " ".join(sys.argv[1:]),
        "date_utc": started,
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"
                   + (f", {torch.cuda.get_device_name()}" if args.gpu else ""),
        "load_average_at_start": load, "torch_threads": torch.get_num_threads(),
        "model": str(args.model or "tiny random Llama (4 layers, hidden 64, vocab 512)"), "dtype": dtype,
        "prompts": args.prompts, "num_samples": args.num_samples, "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats, "vllm": vllm_note or "benchmarked",
    }
    name = "genrm_gpu" if args.gpu else "genrm"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    cols = ["engine", "workload", "sequences", "seconds", "prompts_per_s", "generated_tokens_per_s",
            "judgements_per_s", "speedup_vs_one_at_a_time"]
    md = [f"# {name}", "", f"`{meta['command']}` on {meta['machine']} ({meta['date_utc']}, load average "
          f"{load:.1f} at start)" if load is not None else "", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r.get(c, "-")) for c in cols) + " |" for r in rows]
    md += ["", f"{meta['model']}, {dtype}; {args.prompts} shipped prompts (samples/genrm), {args.num_samples} "
           f"samples each, up to {args.max_new_tokens} new tokens, temperature 1.0, top-p 0.95; median of "
           f"{args.repeats} after a warm-up. fap_judging: one forward per solution, P(Yes) from the next-token "
           f"distribution. speedup = throughput over the one-prompt-at-a-time mode.", "",
           f"vLLM: {meta['vllm']}."]
    if not args.gpu:
        md += ["", "On CPU a decoding step costs about as much for 64 rows as for 16 (the weights are read once per "
               "step), which batching amortises; judging is prefill, compute-bound, where the shared-prefix KV "
               "cache (the judge template and question are prefilled once per batch) saves the FLOPs that large "
               "padded batches cannot."]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
