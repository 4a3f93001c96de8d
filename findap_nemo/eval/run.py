"""Evaluate every model on every selected task; write predictions, results and the model comparison.

Output layout (``output_dir``)::

    predictions/<model>/<task>.jsonl      one record per example (status, gold, prediction, raw output)
    predictions/<model>/<task>.meta.json  the task's aggregate and a fingerprint of what produced it
    results.json, results.md              per-task and per-category scores of each model
    comparison.json, comparison.md, comparison.png   side by side (two or more models)

Every file is written under a temporary name and renamed, so a file that exists is complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from findap_nemo.files import write_jsonl_atomic, write_text_atomic as write_atomic
from findap_nemo.config import config_to_dict, load_config
from findap_nemo.eval.bootstrap import add_intervals, chance_level
from findap_nemo.eval.config import EvalConfig
from findap_nemo.eval.prompts import encode_continuation, encode_messages
from findap_nemo.eval.registry import TaskSpec, load_examples, load_registry, select_tasks
from findap_nemo.eval.metrics import summarize
from findap_nemo.eval.scoring import Prepared, aggregate, invalid_record, prepare, score_generation, score_loglik
from findap_nemo.fingerprint import digest, tokenizer_identity, weights_identity

log = logging.getLogger("findap_nemo.eval")


def as_config(cfg: Any, overrides: Iterable[str] = ()) -> EvalConfig:
    """An EvalConfig from an EvalConfig, a mapping (e.g. the pipeline's eval section) or a YAML path."""
    if isinstance(cfg, EvalConfig) and not overrides:
        cfg.validate()
        return cfg
    if isinstance(cfg, EvalConfig):
        return load_config(EvalConfig, None, overrides, base=config_to_dict(cfg))
    if isinstance(cfg, dict):
        return load_config(EvalConfig, None, overrides, base=cfg)
    return load_config(EvalConfig, cfg, overrides)


SCORING_VERSION = 2  # bump when answer reading or scoring changes: stored predictions are re-scored, not reused


def _fingerprint(task: TaskSpec, cfg: EvalConfig, model_path: str, rows: list[dict], shots: list[dict]) -> str:
    """Everything a task's predictions depend on: the task spec, its examples, the generation and backend
    settings, the model's weights and tokenizer files (chat template included) and the scoring code's version."""
    return digest({"task": dataclasses.asdict(task), "gen": dataclasses.asdict(cfg.generation),
                   # vLLM's memory share changes no prediction: editing it reuses them
                   "backend": {k: v for k, v in dataclasses.asdict(cfg.backend).items()
                               if k != "gpu_memory_utilization"}, "model": os.path.abspath(model_path),
                   "weights": weights_identity(model_path), "tokenizer": tokenizer_identity(model_path),
                   "examples": digest([rows, shots]), "n": len(rows), "limit": cfg.limit, "scoring": SCORING_VERSION}, 16)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False, dynamic_ncols=True)


def evaluate_task(backend, task: TaskSpec, rows: list[dict], shots: list[dict], cfg: EvalConfig,
                  model_name: str = "model") -> tuple[list[dict], dict]:
    """Score one task with one backend: (records in example order, aggregate with throughput)."""
    t0 = time.perf_counter()
    preps: list[Prepared] = [prepare(task, ex, i, shots) for i, ex in enumerate(rows)]
    valid = [p for p in preps if p.error is None]
    tok = backend.tokenizer
    chat = cfg.generation.chat_template
    records: dict[int, dict] = {p.index: invalid_record(p) for p in preps if p.error is not None}
    gen_tokens = 0
    truncated = 0
    if task.type == "multiple_choice" and task.mc_method == "loglik":
        requests, owners, ctx_ids = [], [], {}
        for p in valid:
            ctx = encode_messages(tok, p.messages, chat)
            ctx_ids[p.index] = ctx
            for letter, text in zip(p.letters, p.choices):
                requests.append((ctx, encode_continuation(tok, letter if task.loglik_target == "letter" else text)))
                owners.append(p.index)
        bar = _progress(len(requests), f"{model_name}/{task.name}")
        results = backend.loglik(requests, progress=bar) if requests else []
        bar.close()
        by_owner: dict[int, list] = {}
        for owner, res in zip(owners, results):
            by_owner.setdefault(owner, []).append(res)
        for p in valid:
            res = by_owner[p.index]
            truncated += int(any(r.truncated_prompt for r in res))
            records[p.index] = score_loglik(task, p, res)
            records[p.index]["prompt_tokens"] = len(ctx_ids[p.index])
            if cfg.save_prompts:
                records[p.index]["prompt"] = tok.decode(ctx_ids[p.index])
        n_requests = len(requests)
    else:
        max_new = cfg.generation.max_new_tokens or task.max_new_tokens
        prompts = [encode_messages(tok, p.messages, chat) for p in valid]
        bar = _progress(len(prompts), f"{model_name}/{task.name}")
        gens = [c[0] for c in backend.generate(prompts, max_new_tokens=max_new, progress=bar)] if prompts else []
        bar.close()
        for p, g, ids in zip(valid, gens, prompts):
            gen_tokens += g.num_tokens
            truncated += int(g.truncated_prompt)
            rec = score_generation(task, p, g.text)
            rec["num_tokens"] = g.num_tokens
            rec["prompt_tokens"] = len(ids)
            if cfg.save_prompts:
                rec["prompt"] = tok.decode(ids)
            records[p.index] = rec
        n_requests = len(prompts)
    seconds = time.perf_counter() - t0
    ordered = [records[i] for i in range(len(preps))]
    agg = aggregate(task, ordered)
    agg["chance"] = chance_level(task, [len(p.choices) for p in valid])
    agg.update(category=task.category, type=task.type, method=task.mc_method if task.type == "multiple_choice" else
               "generate", seconds=round(seconds, 3), requests=n_requests, generated_tokens=gen_tokens,
               examples_per_s=round(len(preps) / seconds, 3) if seconds else None,
               tokens_per_s=round(gen_tokens / seconds, 1) if seconds and gen_tokens else None,
               truncated_prompts=truncated)
    c = agg["counts"]
    log.info("%s/%s: %s=%.4f over %d examples (%d invalid input, %d unparsed) in %.1fs, %.2f ex/s%s",
             model_name, task.name, task.primary, agg["score"], agg["n"], c["invalid_input"], c["unparsed"],
             seconds, agg["examples_per_s"] or 0.0,
             f", {agg['tokens_per_s']} generated tok/s" if agg["tokens_per_s"] else "")
    if c["invalid_input"]:
        first = next(r for r in ordered if r["status"] == "invalid_input")
        log.warning("%s/%s: %d of %d examples are invalid input, scored as wrong (first: %s%s); see %s",
                    model_name, task.name, c["invalid_input"], agg["n"],
                    f"line {first['line']}: " if first.get("line") else "", first.get("error"),
                    task.source.path or task.source.dataset)
    if truncated:
        log.warning("%s/%s: %d prompts were cut from the left to fit the context (generation.max_length)",
                    model_name, task.name, truncated)
    return ordered, agg


def _unit_cost(task: TaskSpec, rows: list[dict], cfg: EvalConfig) -> float:
    """Rough tokens one (model, task) unit runs through the model, to schedule the costly units first: every
    prompt token (~4 characters of the example) plus, for generative tasks, the decoding budget of every item
    (an item's decoding step costs about what a prompt token does on CPU)."""
    prompt = sum(len(json.dumps(r, ensure_ascii=False)) for r in rows) / 4
    if task.type == "multiple_choice" and task.mc_method == "loglik":
        return prompt
    return prompt + len(rows) * (cfg.generation.max_new_tokens or task.max_new_tokens)


class _UnitEvaluator:
    """Evaluates (model, task) units, keeping the last model loaded: units arrive model by model, so each model is
    loaded once per worker. Writes each unit's predictions and meta (atomically) and returns its aggregate."""

    def __init__(self, cfg: EvalConfig, out: Path, device: Optional[str] = None):
        self.cfg, self.out, self.device = cfg, out, device or cfg.backend.device
        self.path: Optional[str] = None
        self.backend = None

    def __call__(self, name: str, path: str, task: TaskSpec, rows: list[dict], shots: list[dict],
                 fingerprint: str) -> dict:
        from findap_nemo.inference import make_engine

        cfg = self.cfg
        if self.path != path:
            self.close()
            t_load = time.perf_counter()
            server = cfg.servers.get(name)
            self.backend = make_engine(cfg.backend.kind, path, url=server.url if server else None,
                                       served_model=server.served_model if server else None,
                                       url_key=f"servers.{name}.url", device=self.device, dtype=cfg.backend.dtype,
                                       batch_size=cfg.generation.batch_size, max_length=cfg.generation.max_length,
                                       device_map=cfg.backend.device_map, seed=cfg.generation.seed,
                                       tensor_parallel_size=cfg.backend.tensor_parallel_size,
                                       gpu_memory_utilization=cfg.backend.gpu_memory_utilization)
            self.path = path
            log.info("%s: loaded %s with the %s backend in %.1fs", name, path, self.backend.name,
                     time.perf_counter() - t_load)
        records, agg = evaluate_task(self.backend, task, rows, shots, cfg, name)
        pred_path = self.out / "predictions" / name / f"{task.name}.jsonl"
        write_jsonl_atomic(pred_path, records)
        write_atomic(pred_path.with_suffix(".meta.json"), json.dumps(
            {"fingerprint": fingerprint, "model": path, "task": task.name,
             "result": agg}, indent=2))
        return agg

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend, self.path = None, None


_WORKER: Optional[_UnitEvaluator] = None


def _worker_init(cfg: EvalConfig, out: Path, slots, threads: int, level: int) -> None:
    """A worker process: its share of the CPU threads, or a GPU of its own; the parent's log level."""
    global _WORKER
    import torch

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    with slots.get_lock():
        k = slots.value
        slots.value += 1
    torch.set_num_threads(threads)
    device = cfg.backend.device
    if device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{k % torch.cuda.device_count()}"
    _WORKER = _UnitEvaluator(cfg, out, device)


def _worker_unit(name: str, path: str, task: TaskSpec, rows: list[dict], shots: list[dict], fingerprint: str) -> dict:
    assert _WORKER is not None
    return _WORKER(name, path, task, rows, shots, fingerprint)


def _evaluate_in_workers(cfg: EvalConfig, units, by_name: dict, data: dict, out: Path, done: dict) -> None:
    """Units over ``cfg.workers`` spawned processes (never forked: torch's thread pools do not survive a fork).
    A unit that fails fails the run, as it would in one process; the others' predictions are kept for reuse."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from findap_nemo.launch import threads_per_rank

    ctx = mp.get_context("spawn")
    workers = min(cfg.workers, len(units))
    threads = threads_per_rank(workers)
    log.info("%d (model, task) units over %d worker processes, %d CPU thread(s) each", len(units), workers, threads)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(cfg, out, ctx.Value("i", 0), threads, log.getEffectiveLevel())) as pool:
        futures = {pool.submit(_worker_unit, name, path, by_name[task], *data[task], fp): (name, task)
                   for name, path, task, fp in units}
        for fut, (name, task) in futures.items():
            done[name][task] = fut.result()


def run_eval(cfg: Any, overrides: Iterable[str] = ()) -> dict:
    """Evaluate ``cfg.models`` on ``cfg.tasks``; write everything to ``cfg.output_dir``; return results.json's dict."""
    from findap_nemo.eval.report import results_markdown, write_comparison

    cfg = as_config(cfg, overrides)
    registry = load_registry(cfg.registry)
    tasks = select_tasks(registry, cfg.tasks)
    unknown = sorted(set(cfg.task_limits) - {t.name for t in tasks})
    if unknown:
        from findap_nemo.config import ConfigError

        raise ConfigError(f"task_limits names {unknown}, which are not among the selected tasks "
                          f"{[t.name for t in tasks]}")
    data = {}
    for t in tasks:  # read every source before loading any model: a bad path fails in seconds
        rows, shots = load_examples(t)
        limit = cfg.task_limits.get(t.name, cfg.limit)
        data[t.name] = (rows[:limit] if limit else rows, shots)
    out = Path(cfg.output_dir)
    results: dict[str, Any] = {
        "tasks": {t.name: {"category": t.category, "type": t.type, "primary_metric": t.primary,
                           "n": len(data[t.name][0]), "file": t.file} for t in tasks},
        "models": {},
        "config": config_to_dict(cfg),
    }
    log.info("evaluating %d model(s) on %d task(s): %s", len(cfg.models), len(tasks), ", ".join(data))
    done: dict[str, dict[str, dict]] = {name: {} for name in cfg.models}
    units: list[tuple[str, str, str, str]] = []  # (model, path, task, fingerprint) to evaluate, model by model
    for name, path in cfg.models.items():
        for task in tasks:
            rows, shots = data[task.name]
            meta_path = (out / "predictions" / name / f"{task.name}.jsonl").with_suffix(".meta.json")
            pred_path = meta_path.with_suffix("").with_suffix(".jsonl")
            fp = _fingerprint(task, cfg, path, rows, shots)  # once per unit: it hashes the model's files
            if not cfg.force and meta_path.is_file() and pred_path.is_file():
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if meta.get("fingerprint") == fp:
                    log.info("%s/%s: reusing %s", name, task.name, pred_path)
                    done[name][task.name] = meta["result"]
                    continue
            units.append((name, path, task.name, fp))
    by_name = {t.name: t for t in tasks}
    if cfg.workers > 1 and len(units) > 1:
        # longest first: a costly unit started last would leave the other workers idle until it ends
        units.sort(key=lambda u: -_unit_cost(by_name[u[2]], data[u[2]][0], cfg))
        _evaluate_in_workers(cfg, units, by_name, data, out, done)
    else:
        worker = _UnitEvaluator(cfg, out)
        for name, path, task_name, fp in units:
            done[name][task_name] = worker(name, path, by_name[task_name], *data[task_name], fp)
        worker.close()
    for name, path in cfg.models.items():
        per_task = {t.name: done[name][t.name] for t in tasks}
        for task in tasks:  # where the per-item records are, for the bootstrap intervals (relative to output_dir)
            per_task[task.name]["predictions"] = f"predictions/{name}/{task.name}.jsonl"
        categories, overall = summarize(per_task)
        results["models"][name] = {"path": path, "tasks": per_task, "categories": categories, "overall": overall,
                                   "seconds": round(sum(r.get("seconds", 0.0) for r in per_task.values()), 2)}
    add_intervals(results, out)
    write_atomic(out / "results.json", json.dumps(results, indent=2, default=str))
    write_atomic(out / "results.md", results_markdown(results))
    if len(cfg.models) >= 2:
        write_comparison(results, out, chart=cfg.chart)
    log.info("results in %s", out / "results.md")
    return results
