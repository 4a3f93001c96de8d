"""FinEval scoring speed: findap-nemo's HF backend against the minimal batched transformers loop a user would write.

Two workloads, each a shipped FinEval task rendered with the model's chat template exactly as `findap-nemo eval`
renders it: *generate* (fpb_sentiment: greedy decoding up to the task's token budget, stop at the template's end
of turn) and *loglik* (arc_easy: one option letter per choice, scored by log-likelihood). Modes:

* ``findap-nemo``: the eval backend (length-sorted batches, each batch's common prompt prefix prefilled once and
  its KV cache shared, option letters of one question read from one forward pass, logits of the kept positions only);
* ``findap-nemo, no prefix cache``: the same with the shared prefix off (what the prefix cache brings);
* ``minimal HF loop``: left-padded batches in request order, ``model.generate`` / a full forward per
  (context + option) with ``log_softmax`` over every position, as lm-eval-style loops do.

Modes run interleaved (ABC, BCA, CAB) in one process on one loaded model; the median of --repeats is reported, with
the agreement of each mode's answers with findap-nemo's (identical greedy text / identical chosen option).

    python benchmarks/eval_speed.py                         # tiny random Llama -> results/eval_speed.{json,md}
    python benchmarks/eval_speed.py --model <hf dir> --items 100   # e.g. the main job's SmolLM2-135M export
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


def load_task(name: str, items: int, tok):
    """(task, prepared examples, prompt ids) as `findap-nemo eval` builds them."""
    from findap_nemo.eval.prompts import encode_messages
    from findap_nemo.eval.registry import load_examples, load_registry, select_tasks
    from findap_nemo.eval.scoring import prepare

    [task] = select_tasks(load_registry([REPO / "configs/eval/tasks"]), [name])
    rows, shots = load_examples(task)
    preps = [p for p in (prepare(task, ex, i, shots) for i, ex in enumerate(rows[:items])) if p.error is None]
    return task, preps, [encode_messages(tok, p.messages, True) for p in preps]


class MinimalHF:
    """What a user writes first: left-padded batches in request order, generate() or a full forward per request."""

    def __init__(self, model, tok, stop_ids, pad_id, batch_size):
        self.model, self.tok, self.stop_ids, self.pad_id, self.bs = model, tok, stop_ids, pad_id, batch_size

    def _pad(self, seqs):
        import torch

        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), self.pad_id)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        return ids, mask

    def generate(self, prompts, max_new):
        import torch

        out = []
        for i in range(0, len(prompts), self.bs):
            ids, mask = self._pad(prompts[i:i + self.bs])
            with torch.inference_mode():
                gen = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                          eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
            for toks in gen[:, ids.shape[1]:].tolist():
                cut = next((k for k, t in enumerate(toks) if t in self.stop_ids), len(toks))
                out.append(self.tok.decode(toks[:cut], skip_special_tokens=True))
        return out

    def loglik(self, requests):
        import torch

        out = []
        for i in range(0, len(requests), self.bs):
            batch = requests[i:i + self.bs]
            ids, mask = self._pad([c + x for c, x in batch])
            with torch.inference_mode():
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
                                         .float(), -1)
            for j, (c, x) in enumerate(batch):
                n = len(x)
                rows = logp[j, -n - 1:-1]
                out.append(float(rows.gather(-1, torch.tensor(x)[:, None]).sum()))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="HF checkpoint folder (default: a tiny random Llama)")
    ap.add_argument("--items", type=int, default=64, help="examples per task")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from findap_nemo.inference.hf import HFEngine as HFBackend
    from findap_nemo.eval.prompts import encode_continuation

    load = os.getloadavg()[0]
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir = Path(args.model)
        else:
            sys.path.insert(0, str(REPO / "benchmarks"))
            from genrm import tiny_model

            model_dir = tiny_model(Path(tmp))
        shared = HFBackend(str(model_dir), device="cpu", dtype="fp32", batch_size=args.batch_size)
        plain = HFBackend(str(model_dir), device="cpu", dtype="fp32", batch_size=args.batch_size,
                          tokenizer=shared.tokenizer, share_prefix=False)
        plain.model = shared.model  # one set of weights for every mode
        tok = shared.tokenizer
        minimal = MinimalHF(shared.model, tok, shared.stop_ids, shared.pad_id, args.batch_size)
        gtask, _, gprompts = load_task("fpb_sentiment", args.items, tok)
        ltask, lpreps, lprompts = load_task("arc_easy", args.items, tok)
        requests = [(ctx, encode_continuation(tok, letter)) for p, ctx in zip(lpreps, lprompts) for letter in p.letters]
        owners = [k for k, p in enumerate(lpreps) for _ in p.letters]

        def choices(scores):  # the chosen option of each question
            per: dict[int, list] = {}
            for k, sc in zip(owners, scores):
                per.setdefault(k, []).append(sc)
            return [max(range(len(v)), key=v.__getitem__) for _, v in sorted(per.items())]

        modes = {
            "findap-nemo": (lambda: [c[0].text for c in shared.generate(gprompts, max_new_tokens=gtask.max_new_tokens)],
                            lambda: choices([r.logprob for r in shared.loglik(requests)])),
            "findap-nemo, no prefix cache": (lambda: [c[0].text for c in plain.generate(gprompts, max_new_tokens=gtask.max_new_tokens)],
                                             lambda: choices([r.logprob for r in plain.loglik(requests)])),
            "minimal HF loop": (lambda: minimal.generate(gprompts, gtask.max_new_tokens),
                                lambda: choices(minimal.loglik(requests))),
        }
        names = list(modes)
        times = {(m, w): [] for m in names for w in ("generate", "loglik")}
        answers = {}
        for m in names:  # warm-up, and each mode's answers
            answers[m] = (modes[m][0](), modes[m][1]())
        for rep in range(args.repeats):
            for m in names[rep % len(names):] + names[:rep % len(names)]:
                for w, fn in zip(("generate", "loglik"), modes[m]):
                    c0, t0 = time.process_time(), time.perf_counter()
                    fn()
                    times[(m, w)].append((time.perf_counter() - t0, time.process_time() - c0))
    rows = []
    for w, n in (("generate", len(gprompts)), ("loglik", len(lprompts))):
        ref_wall = statistics.median(t for t, _ in times[("minimal HF loop", w)])
        for m in names:
            wall = statistics.median(t for t, _ in times[(m, w)])
            cpu = statistics.median(c for _, c in times[(m, w)])
            k = 0 if w == "generate" else 1
            same = sum(a == b for a, b in zip(answers[m][k], answers["findap-nemo"][k]))
            rows.append({"workload": f"{w} ({gtask.name if w == 'generate' else ltask.name})", "mode": m,
                         "items": n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "items_per_s": round(n / wall, 2), "speedup_vs_minimal_hf": round(ref_wall / wall, 2),
                         "same_answers_as_findap_nemo": f"{same}/{n}"})
    meta = {"command": "python benchmarks/eval_speed.py " + " ".join(sys.argv[1:]), "date_utc": started,
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus", "load_average_at_start": load,
            "torch_threads": torch.get_num_threads(), "model": str(args.model or "tiny random Llama"),
            "items": args.items, "batch_size": args.batch_size, "repeats": args.repeats}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    cols = list(rows[0])
    md = ["# eval_speed", "", f"`{meta['command']}` on {meta['machine']} ({started}, load average {load:.1f} at "
          f"start, {meta['torch_threads']} torch threads); model {meta['model']}, fp32, batch {args.batch_size}, "
          f"median of {args.repeats} interleaved repeats after a warm-up.", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (RESULTS / "eval_speed.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
