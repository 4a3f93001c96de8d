"""The GenRM run: sample N step-by-step solutions per prompt, judge them (FAP, SCP), write preference pairs.

Work goes in chunks of prompts. After each chunk every prompt's record (samples, judgements, corrections) is
appended to ``progress.jsonl`` and flushed, so a killed run resumes where it stopped; ``pairs.jsonl`` and
``summary.json`` are rebuilt from all records at the end and written under a temporary name, then renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

from findap_nemo.files import write_jsonl_atomic, write_text_atomic
from findap_nemo.config import ConfigError, config_to_dict, save_config
from findap_nemo.fingerprint import digest, tokenizer_identity, weights_identity
from findap_nemo.genrm.config import GenRMConfig, ModelSpec, resolve_path
from findap_nemo.genrm.pairs import build_pairs, fap_score
from findap_nemo.genrm.prompts import PromptRecord, Templates, answer_token_ids, encode_chat, read_prompts
from findap_nemo.genrm.steps import corrected_prefix, format_steps, parse_critique, split_steps

log = logging.getLogger(__name__)

PROGRESS = "progress.jsonl"
FINGERPRINT = "fingerprint.json"


def fingerprint(cfg: GenRMConfig, templates: Templates) -> dict:
    """What decides a prompt's record: a resumed run must match it, or its records would mix two setups."""
    d = config_to_dict(cfg)
    keep = {k: d[k] for k in ("policy", "genrm", "sampling", "fap", "scp", "system_prompt")}
    keep["fap"] = {k: v for k, v in keep["fap"].items() if k not in ("margin", "min_chosen_score")}  # pair rules only
    keep["scp"] = {k: v for k, v in keep["scp"].items() if k != "max_per_prompt"}
    keep["templates"] = {name: digest(getattr(templates, name), 16) for name in ("solve", "fap", "scp")}
    # the models' weights and tokenizer files (chat template included): a re-exported checkpoint or an edited
    # template under the same path must not be resumed into
    keep["model_files"] = {role: digest([weights_identity(spec.model), tokenizer_identity(spec.model)], 16)
                           for role, spec in (("policy", cfg.policy), ("genrm", cfg.genrm)) if spec.model}
    return keep


def sample_seed(seed: int, prompt_id: str, purpose: str, index: int = 0) -> int:
    """The sampling seed of one prompt's generation (``purpose``: solve, critique, continuation; ``index``: which
    sample it belongs to). A function of these values only, so a resumed run, whatever its chunks, samples exactly
    what an uninterrupted run samples."""
    h = hashlib.sha256(f"{seed}\0{prompt_id}\0{purpose}\0{index}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def load_progress(path: Path) -> tuple[dict[str, dict], int]:
    """Records by prompt id. A torn last line (the run was killed mid-write) is dropped and the file truncated
    before it; a bad line anywhere else is an error naming it (the file was edited or damaged)."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done, 0
    lines = path.read_bytes().splitlines(keepends=True)
    good_bytes = 0
    for lineno, raw in enumerate(lines, 1):
        try:
            rec = json.loads(raw)
            done[rec["prompt_id"]] = rec
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            if lineno < len(lines):
                raise ConfigError(f"{path}:{lineno}: not a progress record ({type(err).__name__}); fix or delete "
                                  "the line, or rerun with force=true") from err
            with path.open("r+b") as f:
                f.truncate(good_bytes)
            return done, 1
        good_bytes += len(raw)
    return done, 0


class GenRMRun:
    """One run over a prompts file; engines are loaded lazily so a fully resumed run loads no model."""

    def __init__(self, cfg: GenRMConfig, engine_factory=None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.templates = Templates(resolve_path(cfg.solve_template), resolve_path(cfg.fap.template),
                                   resolve_path(cfg.scp.template))
        self.engine_factory = engine_factory or _default_factory(cfg)
        self.policy = self.judge = None
        self.stats: Counter = Counter()
        self.gen_tokens = 0

    # ---------------------------------------------------------------------------------------------- engines
    def _engines(self):
        if self.policy is None:
            self.policy = self.engine_factory(self.cfg.policy)
            pol, gen = self.cfg.policy, self.cfg.genrm
            same = os.path.realpath(gen.model) == os.path.realpath(pol.model) and \
                (gen.max_length, gen.url, gen.served_model) == (pol.max_length, pol.url, pol.served_model)
            self.judge = self.policy if same else self.engine_factory(gen)
            self.yes_ids = answer_token_ids(self.judge.tokenizer, list(self.cfg.fap.yes_tokens), "yes")
            self.no_ids = answer_token_ids(self.judge.tokenizer, list(self.cfg.fap.no_tokens), "no")
            log.info("FAP reads P(Yes) over token ids yes=%s no=%s", self.yes_ids, self.no_ids)

    # ------------------------------------------------------------------------------------------------- run
    def run(self) -> dict:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        prompts = read_prompts(resolve_path(cfg.prompts_file), cfg.limit)
        progress_path = self.out / PROGRESS
        fp = fingerprint(cfg, self.templates)
        fp_path = self.out / FINGERPRINT
        if cfg.force and progress_path.exists():
            progress_path.unlink()
        if progress_path.exists() and fp_path.is_file():
            old = json.loads(fp_path.read_text())
            if old != fp:
                diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
                raise ConfigError(f"{progress_path}: holds results of a run with different settings ({diff}); "
                                  "use force=true to start over or another output_dir")
        write_text_atomic(fp_path, json.dumps(fp, indent=1))
        save_config(cfg, self.out / "config.yaml")
        done, torn = load_progress(progress_path)
        if torn:
            log.warning("%s: dropped a torn last line (the previous run was killed while writing)", progress_path)
        ids = {p.id for p in prompts}
        todo = [p for p in prompts if p.id not in done]
        log.info("%d prompts: %d done earlier, %d to do", len(prompts), len(prompts) - len(todo), len(todo))

        from tqdm import tqdm

        t0 = time.perf_counter()
        new = 0
        with progress_path.open("a", encoding="utf-8") as f, \
                tqdm(total=len(todo), desc="genrm prompts", unit="prompt") as bar:
            for start in range(0, len(todo), cfg.chunk_prompts):
                chunk = todo[start:start + cfg.chunk_prompts]
                for rec in self.process_chunk(chunk):
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    done[rec["prompt_id"]] = rec
                new += len(chunk)
                dt = time.perf_counter() - t0
                bar.update(len(chunk))
                bar.set_postfix(prompts_s=f"{new / dt:.2f}", gen_tok_s=f"{self.gen_tokens / dt:.1f}")
                log.info("%d/%d prompts, %.2f prompts/s, %.1f generated tokens/s", new, len(todo), new / dt,
                         self.gen_tokens / dt)
        seconds = time.perf_counter() - t0
        records = [done[p.id] for p in prompts if p.id in done]
        stale = len(set(done) - ids)
        return self.finish(records, len(prompts), new, seconds, stale, torn)

    def finish(self, records: list[dict], num_prompts: int, new: int, seconds: float, stale: int, torn: int) -> dict:
        cfg = self.cfg
        models = {"policy_model": cfg.policy.model, "genrm_model": cfg.genrm.model}
        pairs, pair_counts = build_pairs(records, fap_enabled=cfg.fap.enabled, margin=cfg.fap.margin,
                                         min_chosen_score=cfg.fap.min_chosen_score, scp_enabled=cfg.scp.enabled,
                                         scp_max_per_prompt=cfg.scp.max_per_prompt, models=models)
        write_jsonl_atomic(self.out / "pairs.jsonl", pairs)
        samples = [s for r in records for s in r["samples"]]
        scp = Counter(c["status"] for r in records for c in r.get("scp", []))
        summary = {
            "prompts": num_prompts,
            "prompts_done": len(records),
            "prompts_this_run": new,
            "progress_records_not_selected": stale,  # in progress.jsonl but outside prompts_file/limit: unused
            "torn_progress_lines_dropped": torn,
            "samples": len(samples),
            "empty_samples": sum(s["fap_status"] == "empty" for s in samples),
            "truncated_samples": sum(not s["finished"] for s in samples),
            "truncated_samples_skipped": sum(s["fap_status"] == "truncated" for s in samples),
            "judged": sum(s["fap_status"] == "ok" for s in samples),
            "unparsable_judgements": sum(s["fap_status"] == "unparsable" for s in samples),
            "fap_ties_dropped": pair_counts.get("fap_ties_dropped", 0),
            "scp_attempted": sum(scp.values()),
            "scp_corrected": scp.get("ok", 0),
            "scp_unparsable": sum(v for k, v in scp.items() if k not in ("ok", "no_error")),
            "pairs": len(pairs),
            "pairs_per_method": {"fap": pair_counts.get("fap_pairs", 0), "scp": pair_counts.get("scp_pairs", 0)},
            "pair_counts": {k: v for k, v in sorted(pair_counts.items()) if not k.endswith("_pairs")},
            "scp_outcomes": dict(sorted(scp.items())),
            "throughput": {
                "seconds": round(seconds, 3),
                "prompts_per_s": round(new / seconds, 4) if seconds > 0 and new else None,
                "generated_tokens_per_s": round(self.gen_tokens / seconds, 2) if seconds > 0 and new else None,
                "generated_tokens": self.gen_tokens,
            },
            "truncated_model_inputs": self._truncated(),
            "engine": getattr(self.policy, "name", None),
            **models,
            "pairs_file": str(self.out / "pairs.jsonl"),
        }
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=2))
        return summary

    def _truncated(self) -> int:
        """Model inputs cut from the left to fit a context (this run; the judge counted once when shared)."""
        engines = [self.policy] + ([self.judge] if self.judge is not self.policy else [])
        return sum(getattr(e, "truncated_prompts", 0) for e in engines if e is not None)

    # --------------------------------------------------------------------------------------------- a chunk
    def process_chunk(self, chunk: list[PromptRecord]) -> list[dict]:
        cfg = self.cfg
        self._engines()
        ptok, jtok = self.policy.tokenizer, self.judge.tokenizer
        messages = [self.templates.policy_messages(p, cfg.system_prompt) for p in chunk]
        policy_ids = [encode_chat(ptok, m) for m in messages]
        s = cfg.sampling
        t0 = time.perf_counter()
        gens = self.policy.generate(policy_ids, n=s.num_samples, temperature=s.temperature, top_p=s.top_p,
                                    max_new_tokens=s.max_new_tokens,
                                    seeds=[sample_seed(s.seed, p.id, "solve") for p in chunk])
        log.info("sampled %d solutions (%d tokens) in %.1fs", sum(map(len, gens)),
                 sum(g.num_tokens for o in gens for g in o), time.perf_counter() - t0)
        records = []
        for p, msgs, outs in zip(chunk, messages, gens):
            samples = [{"text": g.text, "num_tokens": g.num_tokens, "finished": g.finished,
                        "fap": None, "yes_no_mass": None,
                        "fap_status": self._sample_status(g)} for g in outs]
            self.gen_tokens += sum(g.num_tokens for g in outs)
            records.append({"prompt_id": p.id, "prompt": msgs, "reference": p.reference, "samples": samples,
                            "scp": []})
        if cfg.fap.enabled:
            t0 = time.perf_counter()
            self._fap(chunk, records, jtok)
            log.info("FAP: judged the finished solutions in %.1fs", time.perf_counter() - t0)
        else:
            for rec in records:
                for smp in rec["samples"]:
                    if smp["fap_status"] == "pending":
                        smp["fap_status"] = "not_judged"
        if cfg.scp.enabled:
            t0 = time.perf_counter()
            self._scp(chunk, records, policy_ids, jtok)
            log.info("SCP: critiques, corrected continuations and their judgements in %.1fs",
                     time.perf_counter() - t0)
        return records

    def _logprobs(self, inputs, cand, groups):
        """The judge's scores, batched within a prompt only, so a resumed run scores exactly as an uninterrupted one."""
        return self.judge.next_token_logprobs(inputs, cand, groups=groups)

    def _sample_status(self, g) -> str:
        """Samples that are not judged: "empty" (stopped at once), "truncated" (cut, when not kept)."""
        if not g.text.strip():
            return "empty"
        if not g.finished and not self.cfg.sampling.keep_truncated:
            return "truncated"
        return "pending"

    def _fap(self, chunk, records, jtok) -> None:
        todo, inputs, groups = [], [], []
        for p, rec in zip(chunk, records):
            for i, smp in enumerate(rec["samples"]):
                if smp["fap_status"] != "pending":
                    continue
                groups.append(p.id)
                text = self.templates.fill(self.templates.fap, p.question, format_steps(split_steps(smp["text"])),
                                           p.reference)
                todo.append(smp)
                inputs.append(encode_chat(jtok, [{"role": "user", "content": text}]))
        if not inputs:
            return
        cand = self.yes_ids + self.no_ids
        for smp, lps in zip(todo, self._logprobs(inputs, cand, groups)):
            score, mass = fap_score(lps, len(self.yes_ids), self.cfg.fap.min_yes_no_mass)
            smp["fap"], smp["yes_no_mass"] = score, mass
            smp["fap_status"] = "ok" if score is not None else "unparsable"

    def _scp(self, chunk, records, policy_ids, jtok) -> None:
        c = self.cfg.scp
        targets, inputs = [], []
        reply_start = jtok.encode(c.response_prefix, add_special_tokens=False) if c.response_prefix else []
        for k, (p, rec) in enumerate(zip(chunk, records)):
            eligible = []
            for i, smp in enumerate(rec["samples"]):
                if smp["fap_status"] in ("empty", "truncated"):
                    continue
                if c.apply_to == "rejected" and self.cfg.fap.enabled and \
                        (smp["fap"] is None or smp["fap"] >= c.max_fap_score):
                    continue
                eligible.append(i)
            if c.max_critiques_per_prompt is not None:  # the worst-judged first: the likeliest to hold an error
                eligible = sorted(eligible, key=lambda i: (rec["samples"][i]["fap"] is None,
                                                           rec["samples"][i]["fap"] or 0.0, i))
                eligible = sorted(eligible[:c.max_critiques_per_prompt])
            for i in eligible:
                steps = split_steps(rec["samples"][i]["text"])
                text = self.templates.fill(self.templates.scp, p.question, format_steps(steps), p.reference)
                targets.append((k, i, steps))
                inputs.append(encode_chat(jtok, [{"role": "user", "content": text}]) + reply_start)
        if not inputs:
            return
        base = self.cfg.sampling.seed
        critiques = self.judge.generate(inputs, n=1, temperature=c.temperature, top_p=1.0,
                                        max_new_tokens=c.max_new_tokens,
                                        seeds=[sample_seed(base, chunk[k].id, "critique", i) for k, i, _ in targets])
        conts, cont_inputs, cont_owner, cont_seeds = [], [], [], []
        ptok = self.policy.tokenizer
        for (k, i, steps), [crit] in zip(targets, critiques):
            self.gen_tokens += crit.num_tokens
            rec = records[k]
            critique = c.response_prefix + crit.text
            parsed, status = parse_critique(critique, steps)
            entry = {"sample": i, "status": status, "critique": critique}
            rec["scp"].append(entry)
            if parsed is None:
                continue
            prefix = corrected_prefix(rec["samples"][i]["text"], steps, parsed)
            entry.update(step=parsed.step, correction=parsed.correction, prefix=prefix)
            conts.append(entry)
            cont_owner.append(k)
            cont_seeds.append(sample_seed(base, chunk[k].id, "continuation", i))
            cont_inputs.append(policy_ids[k] + ptok.encode(prefix, add_special_tokens=False))
        if not cont_inputs:
            return
        s = self.cfg.sampling
        outs = self.policy.generate(cont_inputs, n=1, temperature=s.temperature, top_p=s.top_p,
                                    max_new_tokens=s.max_new_tokens, seeds=cont_seeds)
        for entry, [g] in zip(conts, outs):
            self.gen_tokens += g.num_tokens
            entry["chosen"] = entry["prefix"] + g.text
            entry["continuation_finished"] = g.finished
        if c.judge_corrections and self.cfg.fap.enabled:
            self._judge_corrections(chunk, conts, cont_owner, jtok)

    def _judge_corrections(self, chunk, conts, owner, jtok) -> None:
        """FAP scores of corrected solutions, so SCP pairs carry judged rewards (kept beside the originals')."""
        inputs = [encode_chat(jtok, [{"role": "user", "content": self.templates.fill(
            self.templates.fap, chunk[k].question, format_steps(split_steps(e["chosen"])), chunk[k].reference)}])
            for e, k in zip(conts, owner)]
        for e, lps in zip(conts, self._logprobs(inputs, self.yes_ids + self.no_ids, [chunk[k].id for k in owner])):
            e["chosen_fap"], _ = fap_score(lps, len(self.yes_ids), self.cfg.fap.min_yes_no_mass)


def _default_factory(cfg: GenRMConfig):
    """Engine for a ``ModelSpec``: its server when it names a url, else the configured local backend."""
    from findap_nemo.inference import make_engine

    b = cfg.backend

    def factory(spec: ModelSpec):
        return make_engine(b.kind, spec.model, url=spec.url, served_model=spec.served_model, device=b.device,
                           dtype=b.dtype, batch_size=b.batch_size, max_length=spec.max_length, device_map=b.device_map,
                           tensor_parallel_size=b.tensor_parallel_size,
                           gpu_memory_utilization=b.gpu_memory_utilization, concurrency=b.concurrency,
                           url_key="policy.url / genrm.url")

    return factory
