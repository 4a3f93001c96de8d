"""Run an ablation: place every variant's stages in one store, run each variant, compare them all with FinEval.

Placement is by content, never by name: a stage writes to ``<run_dir>/store/<stage>-<key>``, where ``key``
fingerprints the stage's command (with its own folder left out) and the contents of every file it reads. A command
names the folders of the stages it reads, which are keyed the same way, so a key covers everything upstream: two
variants share a stage exactly when it would compute the same thing (one data build per distinct recipe, one base
conversion), whatever the variants are called. Each stage keeps the pipeline runner's record under
``<run_dir>/stages/``, so a rerun skips what is finished and fresh and resumes what was interrupted.

A variant that fails is recorded with its reason and the others go on (a later variant that needs the failed
stage is skipped, not retried); a signal (preemption, Ctrl-C) stops the ablation with exit 75, resumable. The base
model and every variant's final model are then evaluated by one FinEval run (``<run_dir>/compare/eval``) that keeps
its finished (model, task) units between runs, so the base is evaluated once and a new variant adds only its own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from findap_nemo.ablate.config import AblationConfig, eval_spec, expand, variant_pipeline
from findap_nemo.config import ConfigError
from findap_nemo.files import write_json_atomic
from findap_nemo.fingerprint import fingerprint_json
from findap_nemo.pipeline.config import PipelineConfig
from findap_nemo.pipeline.runner import Runner, Stage, StageFailed, stage_inputs
from findap_nemo.pipeline.stages import Paths, build_stages, stage_cli
from findap_nemo.runtime import EXIT_REQUEUE

_UNPLACED = Path("/findap-ablate-unplaced")  # a stage's own folder while its key is computed (the same for all)


@dataclass
class Variant:
    name: str
    pipeline: PipelineConfig
    paths: Paths
    stages: list[Stage]  # placed: named <stage>-<key>, writing to <store>/<stage>-<key>
    kinds: dict[str, str] = field(default_factory=dict)  # placed name -> pipeline stage name

    @property
    def final_model(self) -> Path:
        return self.paths.dpo_hf if self.pipeline.dpo.enabled else self.paths.cptit_hf

    def models(self, evaluate: str) -> dict[str, Path]:
        """FinEval model name -> HF folder."""
        out = {self.name: self.final_model}
        if evaluate == "all" and self.pipeline.dpo.enabled:
            out[f"{self.name}_sft"] = self.paths.cptit_hf
        return out


def place(pipeline: PipelineConfig, store: Path) -> tuple[Paths, list[Stage], dict[str, str]]:
    """The pipeline's stages (without its eval), each re-rooted to ``store/<stage>-<key>`` (module docstring)."""
    pipeline.eval.enabled = False  # the ablation evaluates every variant in one FinEval run
    paths = Paths(pipeline)
    stages = build_stages(pipeline, paths)
    kinds = {}
    for i, st in enumerate(stages):
        kind = st.name
        paths.roots[kind] = _UNPLACED
        cmd = st.command()
        # not the interpreter (cmd[0]): the SLURM comparison job may run another python (a container's) than the
        # submission, and must find the same folders
        key = fingerprint_json([cmd[1:], stage_inputs(st, cmd, stages[:i])])[:12]
        # the sequential recipe's CPT data and CPT run are a cpt_only variant's data and run when the commands agree
        name = f"{kind.removesuffix('_cpt')}-{key}"
        paths.roots[kind] = store / name
        st.name = name
        kinds[name] = kind
    return paths, stages, kinds


def variants(cfg: AblationConfig) -> list[Variant]:
    store = Path(cfg.run_dir) / "store"
    out = []
    for spec in expand(cfg):
        pipeline = variant_pipeline(cfg, spec)
        paths, stages, kinds = place(pipeline, store)
        out.append(Variant(spec.name, pipeline, paths, stages, kinds))
    bases = {str(v.paths.base_hf) for v in out}
    if len(bases) > 1:
        raise ConfigError(f"variants: they start from {len(bases)} different base models ({sorted(bases)}); an "
                          f"ablation compares variants of one base model: vary base_model in separate ablations")
    return out


def _result_path(cfg: AblationConfig, name: str) -> Path:
    return Path(cfg.run_dir) / "variants" / name / "result.json"


def read_results(cfg: AblationConfig, vs: list[Variant]) -> dict[str, dict]:
    """Each variant's result: the record its local run wrote, else (jobs run by SLURM, records lost) what its
    stages' outputs show."""
    out = {}
    for v in vs:
        p = _result_path(cfg, v.name)
        try:
            rec = json.loads(p.read_text()) if p.is_file() else None
        except (OSError, json.JSONDecodeError) as err:
            rec = {"name": v.name, "status": "failed", "reason": f"{p} is unreadable: {err}"}
        if rec is not None and [s.get("placed") for s in rec.get("stages", [])] != [st.name for st in v.stages]:
            rec = None  # recorded for other stages (the variant or its inputs changed since): judge by outputs
        out[v.name] = rec or _result_from_outputs(cfg, v)
    return out


def _result_from_outputs(cfg: AblationConfig, v: Variant) -> dict:
    records = {}
    for st in v.stages:
        missing = [str(p) for p in st.outputs() if not Path(p).exists()]
        if missing:
            logs = Path(cfg.run_dir) / "logs"
            return _result(v, records, "not finished",
                           f"stage {st.name} has not finished ({missing[0]} missing; its log: {logs}/{st.name}*)")
        rec = Path(cfg.run_dir) / "stages" / f"{st.name}.json"
        records[st.name] = json.loads(rec.read_text()) if rec.is_file() else {}
    result = _result(v, records, "done")
    usage = slurm_usage(cfg, v)
    if usage:
        result["cost"].update(usage)
    return result


def slurm_usage(cfg: AblationConfig, v: Variant) -> dict | None:
    """GPU-hours and CPU-core-hours of the variant's stage jobs (`--slurm`), from SLURM itself; None when the
    ablation was not submitted or SLURM no longer knows its jobs."""
    from findap_nemo.slurm.status import job_usage

    path = Path(cfg.run_dir) / "slurm" / "jobs.json"
    if not path.is_file():
        return None
    try:
        ids = {j["name"]: j["job_id"] for rec in json.loads(path.read_text()) for j in rec.get("jobs", [])}
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    usages = [job_usage(ids[st.name]) for st in v.stages if st.name in ids]
    usages = [u for u in usages if u]
    if not usages:
        return None
    return {"gpu_hours": round(sum(u["seconds"] * u["gpus"] for u in usages) / 3600, 3),
            "cpu_core_hours": round(sum(u["seconds"] * u["cpus"] for u in usages) / 3600, 3),
            "wall_seconds": sum(u["seconds"] for u in usages)}


def _train_tokens(v: Variant) -> int | None:
    """Tokens the variant's training stages processed (iterations x tokens per iteration, from their metrics)."""
    from findap_nemo.files import read_jsonl

    total, seen = 0, False
    for kind in ("train_cpt", "train"):
        if kind not in v.kinds.values():
            continue
        metrics = read_jsonl(v.paths.roots[kind] / "metrics.jsonl", missing_ok=True, torn_tail_ok=True)
        rows = [r for r in metrics if "tokens_per_s" in r]
        if rows:
            last = rows[-1]
            total += int(round(last["iteration"] * last["tokens_per_s"] * last["step_time_s"]))
            seen = True
    return total if seen else None


def _result(v: Variant, records: dict[str, dict], status: str, reason: str = "") -> dict:
    stages = []
    for st in v.stages:
        rec = records.get(st.name) or {}
        stages.append({"stage": v.kinds[st.name], "placed": st.name, "seconds": rec.get("seconds"),
                       "cpu_seconds": rec.get("cpu_seconds"), "reused": bool(rec.get("skipped")),
                       "ran": st.name in records and not rec.get("skipped")})
    training = {"train_cpt", "train", "genrm", "dpo"}
    return {"name": v.name, "status": status, "reason": reason, "recipe": v.pipeline.recipe,
            "preference": "dpo" if v.pipeline.dpo.enabled else "none",
            "final_model": str(v.final_model) if status == "done" else None, "stages": stages,
            "cost": {"cpu_seconds": sum(s["cpu_seconds"] or 0 for s in stages),
                     "training_cpu_seconds": sum(s["cpu_seconds"] or 0 for s in stages if s["stage"] in training),
                     "wall_seconds": sum(s["seconds"] or 0 for s in stages),
                     "train_tokens": _train_tokens(v) if status == "done" else None},
            "finished_at": time.time()}


def run_variants(cfg: AblationConfig, vs: list[Variant], *, force: bool = False, resume_hint: str = "") -> int:
    """Run each variant's stages in turn; returns 0, 1 when a variant failed (after running the others), or 75
    after a signal (everything finished so far is kept)."""
    runner_dir = Path(cfg.run_dir)
    failed: dict[str, str] = {}  # placed stage -> variant whose run of it failed
    ran_now: set[str] = set()
    failed_variants: list[str] = []
    for i, v in enumerate(vs, 1):
        print(f"=== variant {i}/{len(vs)}: {v.name} (recipe {v.pipeline.recipe}) ===", flush=True)
        blocked = [st.name for st in v.stages if st.name in failed]
        if blocked:
            reason = f"shared stage {blocked[0]} failed in variant {failed[blocked[0]]}"
            print(f"    skipped: {reason}", flush=True)
            write_json_atomic(_result_path(cfg, v.name), _result(v, {}, "failed", reason))
            failed_variants.append(v.name)
            continue
        force_stages = {st.name for st in v.stages} - ran_now if force else set()
        runner = Runner(runner_dir, force_stages=force_stages, resume_hint=resume_hint)
        try:
            records = runner.run(v.stages)
        except StageFailed as err:
            if err.code == EXIT_REQUEUE:
                print(f"\nfindap-nemo ablate: variant {v.name}: {err}", flush=True)
                return EXIT_REQUEUE
            stage = next((st.name for st in v.stages if st.name not in runner.records), v.stages[-1].name)
            failed[stage] = v.name
            first = str(err).splitlines()[0]
            reason = f"{first} (log: {runner.log_path(stage)})"
            print(f"    variant {v.name} FAILED: {reason}\n    the other variants go on", flush=True)
            write_json_atomic(_result_path(cfg, v.name), _result(v, runner.records, "failed", reason))
            failed_variants.append(v.name)
            continue
        finally:
            ran_now |= {n for n, r in runner.records.items() if not r.get("skipped")}
        write_json_atomic(_result_path(cfg, v.name), _result(v, records, "done"))
    return 1 if failed_variants else 0


def compare_stage(cfg: AblationConfig, vs: list[Variant], results: dict[str, dict]) -> Stage | None:
    """One FinEval run of the base and every finished variant (None when no variant finished)."""
    done = [v for v in vs if results.get(v.name, {}).get("status") == "done"]
    if not done:
        return None
    spec = eval_spec(cfg, vs[0].pipeline)
    out = Path(cfg.run_dir) / "compare" / "eval"
    models = {"base": vs[0].paths.base_hf}
    for v in done:
        models.update(v.models(cfg.evaluate))
    return Stage("compare_eval", f"FinEval: base vs {len(models) - 1} variant model(s)",
                 lambda: stage_cli("eval", spec, *[f"models.{k}={p}" for k, p in models.items()],
                                   f"output_dir={out}"),
                 lambda: [out / "comparison.json"], reuses_outputs=True)


def compare_variants(cfg, vs, hint: str) -> int:
    """FinEval of the base and every finished variant (one resumable eval run), then the comparison report; a
    variant that did not finish is named as not compared."""
    import sys

    from findap_nemo.ablate.report import read_comparison, write_comparison

    results = read_results(cfg, vs)
    out = Path(cfg.run_dir) / "compare"
    stage = compare_stage(cfg, vs, results)
    models: dict[str, str] = {}
    if stage is not None:
        print("=== comparison: FinEval of the base and every finished variant ===", flush=True)
        try:
            Runner(Path(cfg.run_dir), resume_hint=hint).run([stage])
        except StageFailed as err:
            print(f"\nfindap-nemo ablate: {err}", file=sys.stderr)
            return err.code
        models = {m: v.name for v in vs if results[v.name].get("status") == "done" for m in v.models(cfg.evaluate)}
    md, html = write_comparison(cfg.title, out, results, read_comparison(out) if stage is not None else None, models,
                                reference=cfg.reference)
    failed = [f"{n} ({r.get('status')})" for n, r in results.items() if r.get("status") != "done"]
    print(f"comparison: {md} and {html}" + (f"; not compared: {', '.join(failed)}" if failed else ""), flush=True)
    return 0
