"""The FinDAP stages of `findap-nemo run` and how each one's outputs feed the next (one place for the wiring)."""

from __future__ import annotations

import sys
from pathlib import Path

from findap_nemo.checkpoint_layout import TRACKER
from findap_nemo.pipeline.config import PipelineConfig, StageSpec
from findap_nemo.pipeline.runner import Stage


def _cli(stage: str, spec: StageSpec | None, *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "findap_nemo.cli", stage]
    if spec is not None and spec.nproc_per_node and spec.nproc_per_node > 1:
        cmd += ["--nproc-per-node", str(spec.nproc_per_node)]
    if spec is not None and spec.config:
        cmd += ["--config", spec.config]
    return cmd + list(args) + (list(spec.overrides) if spec is not None else [])


class Paths:
    """Where every stage of a run writes (all under run_dir)."""

    def __init__(self, cfg: PipelineConfig):
        r = Path(cfg.run_dir)
        self.run = r
        self.base_hf = Path(cfg.base_model.hf_path) if cfg.base_model.hf_path else r / "base_hf"
        # real checkpoints bring their own tokenizer; the random model is built around the configured one
        self.tokenizer = Path(cfg.base_model.tokenizer) if cfg.base_model.kind == "random" else self.base_hf
        self.base_mcore = r / "base_mcore"
        self.data = r / "data"
        self.manifest = self.data / "manifest.json"
        self.train = r / "train"
        self.cptit_hf = r / "cptit_hf"
        self.genrm = r / "genrm"
        self.pairs = self.genrm / "pairs.jsonl"
        self.dpo = r / "dpo"
        self.dpo_hf = r / "dpo_hf"
        self.eval = r / "eval"
        self.report = r / "report"


def build_stages(cfg: PipelineConfig) -> list[Stage]:
    p = Paths(cfg)
    stages: list[Stage] = []
    if cfg.base_model.kind == "gguf":
        stages.append(Stage(
            "base_hf", f"base model: {cfg.base_model.gguf} (GGUF -> HF safetensors)",
            lambda: _cli("convert", None, "gguf-to-hf", "--gguf", str(cfg.base_model.gguf), "--out", str(p.base_hf),
                         "--force"),
            lambda: [p.base_hf / "config.json"]))
    elif cfg.base_model.kind == "random":
        stages.append(Stage(
            "base_hf", f"base model: random '{cfg.base_model.random_preset}' Llama (HF format)",
            lambda: [sys.executable, "-m", "findap_nemo.pipeline.bootstrap", "--tokenizer", str(p.tokenizer),
                     "--preset", str(cfg.base_model.random_preset), "--seed", str(cfg.base_model.seed),
                     "--out", str(p.base_hf)],
            lambda: [p.base_hf / "config.json"]))
    stages.append(Stage(
        "base_mcore", "convert base model HF -> megatron",
        lambda: _cli("convert", None, "hf-to-mcore", "--hf", str(p.base_hf), "--out", str(p.base_mcore),
                     "--force", *cfg.convert.overrides),
        lambda: [p.base_mcore]))
    if cfg.data.enabled:
        stages.append(Stage(
            "data", "FinTrain data: CPT+IT blend -> Megatron indexed datasets",
            lambda: _cli("data", cfg.data, f"tokenizer={p.tokenizer}", f"output_dir={p.data}",
                         "overwrite=true"),
            lambda: [p.manifest]))
    # The model config (shape, RoPE, vocabulary, tokenizer) travels with the converted weights into train and DPO.
    stages.append(Stage(
        "train", "joint CPT+IT training (megatron-core)",
        lambda: _cli("train", cfg.train, "data.mock=false", f"data.manifest={p.manifest}",
                     f"checkpoint.save={p.train}", f"checkpoint.pretrained={p.base_mcore}"),
        lambda: [p.train / TRACKER]))
    stages.append(Stage(
        "export_cptit", "export CPT+IT checkpoint -> HF",
        lambda: _cli("convert", None, "mcore-to-hf", "--mcore", str(p.train), "--out", str(p.cptit_hf),
                     "--force", *cfg.convert.overrides),
        lambda: [p.cptit_hf / "config.json"]))
    if cfg.genrm.enabled:
        judge = cfg.genrm_judge or str(p.cptit_hf)
        stages.append(Stage(
            "genrm", "GenRM: sample solutions, FAP/SCP judgements -> preference pairs",
            lambda: _cli("genrm", cfg.genrm, f"policy.model={p.cptit_hf}", f"genrm.model={judge}",
                         f"output_dir={p.genrm}"),
            lambda: [p.pairs]))
    if cfg.dpo.enabled:
        stages.append(Stage(
            "dpo", "DPO (frozen reference = CPT+IT policy)",
            lambda: _cli("dpo", cfg.dpo, f"checkpoint.pretrained={p.train}", f"data.train_file={p.pairs}",
                         f"checkpoint.save={p.dpo}"),
            lambda: [p.dpo / TRACKER]))
        stages.append(Stage(
            "export_dpo", "export DPO checkpoint -> HF",
            lambda: _cli("convert", None, "mcore-to-hf", "--mcore", str(p.dpo), "--out", str(p.dpo_hf),
                         "--force", *cfg.convert.overrides),
            lambda: [p.dpo_hf / "config.json"]))
    if cfg.eval.enabled:
        def eval_cmd() -> list[str]:
            models = [f"models.base={p.base_hf}", f"models.cpt_it={p.cptit_hf}"]
            if cfg.dpo.enabled:
                models.append(f"models.dpo={p.dpo_hf}")
            return _cli("eval", cfg.eval, *models, f"output_dir={p.eval}")

        stages.append(Stage("eval", "FinEval: base vs CPT+IT vs DPO", eval_cmd,
                            lambda: [p.eval / "results.json"]))
    return stages


# ----------------------------------------------------------------------------------------------------- report
def write_report(cfg: PipelineConfig, records: dict[str, dict]):
    from findap_nemo.pipeline.report import Report, loss_curves, md_table, read_json, read_jsonl

    p = Paths(cfg)
    rep = Report(cfg.title, p.report)
    rep.text(f"Run directory: `{p.run}`. Base model: `{p.base_hf}`; tokenizer: `{p.tokenizer}`.")
    comparison = read_json(p.eval / "comparison.json")
    if comparison and comparison.get("rows"):
        from findap_nemo.pipeline.headline import headline_markdown

        rep.heading("Headline: what the adaptation gained and kept")
        rep.text(headline_markdown(comparison))

    manifest = read_json(p.manifest)
    rep.heading("Data mix (FinTrain)")
    if manifest:
        rep.text(md_table(_data_rows(manifest)))
        blend = _blend_rows(manifest)
        if blend:
            rep.text("Blend (megatron weights):")
            rep.text(md_table(blend))
    else:
        rep.text("_no data manifest_")

    rep.heading("Joint CPT+IT training")
    train_rows = read_jsonl(p.train / "metrics.jsonl")
    rep.image(loss_curves(train_rows, ["lm_loss", "valid/lm_loss"], "CPT+IT training loss", p.report / "train_loss.png"))
    if train_rows:
        last = train_rows[-1]
        keys = ("iteration", "lm_loss", "valid/lm_loss", "grad_norm", "tokens_per_s", "consumed_samples")
        rep.text(md_table([{k: r.get(k) for k in keys if k in r} for r in (train_rows[0], last)]))

    rep.heading("GenRM preference pairs")
    summary = read_json(p.genrm / "summary.json")
    if summary:
        flat = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
        rep.text(md_table([{"statistic": k, "value": v} for k, v in flat.items()]))
        for k, v in summary.items():
            if isinstance(v, dict) and v and all(not isinstance(x, (dict, list)) for x in v.values()):
                rep.text(f"**{k}**")
                rep.text(md_table([{"key": a, "value": b} for a, b in v.items()]))
    else:
        rep.text("_no GenRM summary_")

    rep.heading("DPO")
    dpo_rows = read_jsonl(p.dpo / "metrics.jsonl")
    rep.image(loss_curves(dpo_rows, ["loss", "valid/loss"], "DPO loss", p.report / "dpo_loss.png"))
    rep.image(loss_curves(dpo_rows, ["reward_accuracy", "valid/reward_accuracy", "reward_margin"],
                          "DPO reward accuracy and margin", p.report / "dpo_rewards.png"))
    if dpo_rows:
        keys = ("iteration", "loss", "reward_accuracy", "reward_margin", "rewards_chosen", "rewards_rejected",
                "valid/loss", "valid/reward_accuracy", "tokens_per_s")
        rep.text(md_table([{k: r.get(k) for k in keys if k in r} for r in (dpo_rows[0], dpo_rows[-1])]))

    rep.heading("FinEval")
    comparison_md = p.eval / "comparison.md"
    results_md = p.eval / "results.md"
    if comparison_md.is_file():
        rep.text(_strip_title(comparison_md.read_text()))
    elif results_md.is_file():
        rep.text(_strip_title(results_md.read_text()))
    else:
        rep.text("_no evaluation results_")
    rep.image(p.eval / "comparison.png")

    rep.heading("Stages: timings")
    rows = []
    for name, rec in records.items():
        rows.append({"stage": name, "title": rec.get("title"), "wall s": _round(rec.get("seconds")),
                     "CPU s": _round(rec.get("cpu_seconds")),
                     "this run": "skipped (done earlier, inputs unchanged)" if rec.get("skipped")
                     else f"ran ({rec.get('reason') or 'not run before'})"})
    if rows:
        rows.append({"stage": "**total**", "title": "", "wall s": _round(sum(r.get("seconds") or 0 for r in
                                                                            records.values())),
                     "CPU s": _round(sum(r.get("cpu_seconds") or 0 for r in records.values())), "this run": ""})
    rep.text("Wall time depends on what else the machine ran; CPU seconds (user + system of each stage's process "
             "tree) do not.")
    rep.text(md_table(rows))
    thr = []
    if train_rows:
        thr.append({"stage": "train", "tokens/s (median)": _median(r.get("tokens_per_s") for r in train_rows)})
    if dpo_rows:
        thr.append({"stage": "dpo", "tokens/s (median)": _median(r.get("tokens_per_s") for r in dpo_rows)})
    if summary and "throughput" in summary and isinstance(summary["throughput"], dict):
        thr.append({"stage": "genrm", **summary["throughput"]})
    if thr:
        rep.text(md_table(thr))
    return rep.write()


def _round(x):
    return None if x is None else round(float(x), 1)


def _median(values):
    vals = sorted(v for v in values if isinstance(v, (int, float)))
    return vals[len(vals) // 2] if vals else None


def _strip_title(md: str) -> str:
    lines = md.splitlines()
    while lines and (lines[0].startswith("# ") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(("###" + ln[1:]) if ln.startswith("## ") else ln for ln in lines)


def _data_rows(manifest: dict) -> list[dict]:
    """Per-source statistics from the data manifest, whichever of list/dict form it uses."""
    sources = manifest.get("sources") or manifest.get("per_source") or {}
    items = sources.items() if isinstance(sources, dict) else ((s.get("name"), s) for s in sources)
    rows = []
    for name, s in items:
        row = {"source": name}
        for k, v in s.items():
            if k == "name":
                continue
            if isinstance(v, dict):
                row[k] = sum(x for x in v.values() if isinstance(x, (int, float)))
            elif not isinstance(v, list):
                row[k] = v
        rows.append(row)
    return rows


def _blend_rows(manifest: dict) -> list[dict]:
    keys = ("domain", "split", "weight", "packs", "documents", "tokens", "target_tokens", "packing_efficiency")
    return [{k: c.get(k) for k in keys} for c in manifest.get("components", [])]

