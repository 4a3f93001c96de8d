"""The FinDAP stages of `findap-nemo run` and how each one's outputs feed the next (one place for the wiring)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from findap_nemo.checkpoint_layout import TRACKER
from findap_nemo.pipeline.config import PipelineConfig, StageSpec
from findap_nemo.pipeline.runner import Stage


def stage_cli(stage: str, spec: StageSpec | None, *args: str) -> list[str]:
    """`python -m findap_nemo.cli <stage> [--nproc-per-node N] [--config YAML] <args> <the spec's overrides>`."""
    cmd = [sys.executable, "-m", "findap_nemo.cli", stage]
    if spec is not None and spec.nproc_per_node and spec.nproc_per_node > 1:
        cmd += ["--nproc-per-node", str(spec.nproc_per_node)]
    if spec is not None and spec.config:
        cmd += ["--config", spec.config]
    return cmd + list(args) + (list(spec.overrides) if spec is not None else [])


def convert_cli(cfg: PipelineConfig, direction: str, *args: str) -> list[str]:
    """`findap-nemo convert <direction> <args> --force [--config YAML] <convert.overrides>`: every conversion of a
    run reads the same convert options (each direction takes its own section of them)."""
    spec = cfg.convert
    return stage_cli("convert", None, direction, *args, "--force", *(["--config", spec.config] if spec.config else []),
                     *spec.overrides)


class Paths:
    """Where every stage of a run writes: one folder per stage, by default ``<run_dir>/<folder>``.

    ``roots`` maps a stage name to its folder; `findap-nemo ablate` re-roots stages into a store shared by the
    variants of an ablation (a folder per distinct stage fingerprint) before it builds their commands, which read
    the folders lazily.
    """

    FOLDERS = {"base_hf": "base_hf", "base_mcore": "base_mcore", "data_cpt": "data_cpt", "train_cpt": "train_cpt",
               "data": "data", "train": "train", "export_cptit": "cptit_hf", "genrm": "genrm", "dpo": "dpo",
               "export_dpo": "dpo_hf", "eval": "eval"}

    def __init__(self, cfg: PipelineConfig):
        self.run = Path(cfg.run_dir)
        self.roots: dict[str, Path] = {stage: self.run / folder for stage, folder in self.FOLDERS.items()}
        if cfg.base_model.hf_path:  # an existing checkpoint is an input, not a stage's output
            self.roots["base_hf"] = Path(cfg.base_model.hf_path)
        # real checkpoints bring their own tokenizer; the random model is built around the configured one
        self._tokenizer = Path(cfg.base_model.tokenizer) if cfg.base_model.kind == "random" else None
        self.report = self.run / "report"

    base_hf = property(lambda self: self.roots["base_hf"])
    tokenizer = property(lambda self: self._tokenizer or self.base_hf)
    base_mcore = property(lambda self: self.roots["base_mcore"])
    train_cpt = property(lambda self: self.roots["train_cpt"])
    data = property(lambda self: self.roots["data"])
    manifest = property(lambda self: self.data / "manifest.json")
    train = property(lambda self: self.roots["train"])
    cptit_hf = property(lambda self: self.roots["export_cptit"])
    genrm = property(lambda self: self.roots["genrm"])
    pairs = property(lambda self: self.genrm / "pairs.jsonl")
    dpo = property(lambda self: self.roots["dpo"])
    dpo_hf = property(lambda self: self.roots["export_dpo"])
    eval = property(lambda self: self.roots["eval"])


TRAIN_TITLES = {"joint": "joint CPT+IT training", "sequential": "IT training from the CPT run (sequential recipe)",
                "cpt_only": "CPT-only training", "it_only": "IT-only training"}
# recipe -> (blend.kinds of its `data` stage, what that build holds)
RECIPE_DATA = {"joint": ("", "CPT+IT blend"), "cpt_only": ("[cpt]", "the CPT part of the blend"),
               "it_only": ("[it]", "the IT part of the blend"),
               "sequential": ("[it]", "the IT part of the blend (stage 2)")}


def build_stages(cfg: PipelineConfig, p: Paths | None = None) -> list[Stage]:
    p = p or Paths(cfg)
    stages: list[Stage] = []
    if cfg.base_model.kind == "gguf":
        stages.append(Stage(
            "base_hf", f"base model: {cfg.base_model.gguf} (GGUF -> HF safetensors)",
            lambda: convert_cli(cfg, "gguf-to-hf", "--gguf", str(cfg.base_model.gguf), "--out", str(p.base_hf)),
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
        lambda: convert_cli(cfg, "hf-to-mcore", "--hf", str(p.base_hf), "--out", str(p.base_mcore)),
        lambda: [p.base_mcore]))

    def data_stage(name: str, kinds: str, what: str) -> Stage:
        return Stage(name, f"FinTrain data: {what} -> Megatron indexed datasets",
                     lambda: stage_cli("data", cfg.data, f"tokenizer={p.tokenizer}", f"output_dir={p.roots[name]}",
                                       "force=true", *([f"blend.kinds={kinds}"] if kinds else [])),
                     lambda: [p.roots[name] / "manifest.json"])

    def train_stage(name: str, spec: StageSpec, data: str, start: Callable[[], Path], title: str) -> Stage:
        return Stage(name, f"{title} (megatron-core)",
                     lambda: stage_cli("train", spec, "data.mock=false",
                                       f"data.manifest={p.roots[data] / 'manifest.json'}",
                                       f"checkpoint.save={p.roots[name]}", f"checkpoint.pretrained={start()}"),
                     lambda: [p.roots[name] / TRACKER])

    # The model config (shape, RoPE, vocabulary, tokenizer) travels with the converted weights into train and DPO.
    recipe = cfg.recipe
    if recipe == "sequential":
        if cfg.data.enabled:
            stages.append(data_stage("data_cpt", "[cpt]", "the CPT part of the blend (sequential recipe, stage 1)"))
        stages.append(train_stage("train_cpt", cfg.train_cpt_spec(), "data_cpt", lambda: p.base_mcore,
                                  "CPT training (sequential recipe, stage 1)"))
    if cfg.data.enabled:
        stages.append(data_stage("data", *RECIPE_DATA[recipe]))
    stages.append(train_stage("train", cfg.train, "data",
                              (lambda: p.train_cpt) if recipe == "sequential" else (lambda: p.base_mcore),
                              TRAIN_TITLES[recipe]))
    stages.append(Stage(
        "export_cptit", "export the trained checkpoint -> HF",
        lambda: convert_cli(cfg, "mcore-to-hf", "--mcore", str(p.train), "--out", str(p.cptit_hf)),
        lambda: [p.cptit_hf / "config.json"]))
    if cfg.genrm.enabled:
        stages.append(Stage(
            "genrm", "GenRM: sample solutions, FAP/SCP judgements -> preference pairs",
            lambda: stage_cli("genrm", cfg.genrm, f"policy.model={p.cptit_hf}",
                         f"genrm.model={cfg.genrm_judge or p.cptit_hf}", f"output_dir={p.genrm}"),
            lambda: [p.pairs]))
    if cfg.dpo.enabled:
        stages.append(Stage(
            "dpo", "DPO (frozen reference = the trained policy)",
            lambda: stage_cli("dpo", cfg.dpo, f"checkpoint.pretrained={p.train}", f"data.train_file={p.pairs}",
                         f"checkpoint.save={p.dpo}"),
            lambda: [p.dpo / TRACKER]))
        stages.append(Stage(
            "export_dpo", "export DPO checkpoint -> HF",
            lambda: convert_cli(cfg, "mcore-to-hf", "--mcore", str(p.dpo), "--out", str(p.dpo_hf)),
            lambda: [p.dpo_hf / "config.json"]))
    if cfg.eval.enabled:
        def eval_cmd() -> list[str]:
            models = [f"models.base={p.base_hf}", f"models.cpt_it={p.cptit_hf}"]
            if cfg.dpo.enabled:
                models.append(f"models.dpo={p.dpo_hf}")
            return stage_cli("eval", cfg.eval, *models, f"output_dir={p.eval}")

        stages.append(Stage("eval", "FinEval: base vs CPT+IT vs DPO", eval_cmd,
                            lambda: [p.eval / "results.json"]))
    return stages


# ----------------------------------------------------------------------------------------------------- report
def write_report(cfg: PipelineConfig, records: dict[str, dict]):
    from findap_nemo.files import read_json, read_jsonl
    from findap_nemo.pipeline.report import Report, loss_curves, md_table, round1

    p = Paths(cfg)
    rep = Report(cfg.title, p.report)
    rep.text(f"Run directory: `{p.run}`. Base model: `{p.base_hf}`; tokenizer: `{p.tokenizer}`.")
    comparison = read_json(p.eval / "comparison.json", missing_ok=True)
    if comparison and comparison.get("rows"):
        from findap_nemo.pipeline.headline import headline_markdown

        rep.heading("Headline: what the adaptation gained and kept")
        rep.text(headline_markdown(comparison))

    manifest = read_json(p.manifest, missing_ok=True)
    rep.heading("Data mix (FinTrain)")
    if manifest:
        rep.text(md_table(_data_rows(manifest)))
        blend = _blend_rows(manifest)
        if blend:
            rep.text("Blend (megatron weights):")
            rep.text(md_table(blend))
    else:
        rep.text("_no data manifest_")

    rep.heading(TRAIN_TITLES[cfg.recipe][0].upper() + TRAIN_TITLES[cfg.recipe][1:])
    if cfg.recipe == "sequential":
        cpt_rows = read_jsonl(p.train_cpt / "metrics.jsonl", missing_ok=True, torn_tail_ok=True)
        rep.image(loss_curves(cpt_rows, ["lm_loss", "valid/lm_loss"], "stage 1: CPT training loss",
                              p.report / "train_cpt_loss.png"))
    train_rows = read_jsonl(p.train / "metrics.jsonl", missing_ok=True, torn_tail_ok=True)
    rep.image(loss_curves(train_rows, ["lm_loss", "valid/lm_loss"], TRAIN_TITLES[cfg.recipe] + " loss",
                          p.report / "train_loss.png"))
    if train_rows:
        last = train_rows[-1]
        keys = ("iteration", "lm_loss", "valid/lm_loss", "grad_norm", "tokens_per_s", "consumed_samples")
        rep.text(md_table([{k: r.get(k) for k in keys if k in r} for r in (train_rows[0], last)]))

    rep.heading("GenRM preference pairs")
    summary = read_json(p.genrm / "summary.json", missing_ok=True)
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
    dpo_rows = read_jsonl(p.dpo / "metrics.jsonl", missing_ok=True, torn_tail_ok=True)
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
        rows.append({"stage": name, "title": rec.get("title"), "wall s": round1(rec.get("seconds")),
                     "CPU s": round1(rec.get("cpu_seconds")),
                     "this run": "skipped (done earlier, inputs unchanged)" if rec.get("skipped")
                     else f"ran ({rec.get('reason') or 'not run before'})"})
    if rows:
        rows.append({"stage": "**total**", "title": "", "wall s": round1(sum(r.get("seconds") or 0 for r in
                                                                            records.values())),
                     "CPU s": round1(sum(r.get("cpu_seconds") or 0 for r in records.values())), "this run": ""})
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

