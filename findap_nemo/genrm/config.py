"""Schema of `findap-nemo genrm` configs (configs/genrm/*.yaml documents every key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, List, Optional

from findap_nemo.config import Problems
from findap_nemo.inference.config import BackendConfig, ServerSpec
from findap_nemo.shipped import ROOT

SCP_TARGETS = ("rejected", "all")


def resolve_path(path: str) -> Path:
    """A relative path is taken from the working directory, else from the shipped files (templates, sample prompts)."""
    p = Path(path)
    if p.is_absolute() or p.exists() or not (ROOT / p).exists():
        return p
    return ROOT / p


@dataclass
class ModelSpec:
    model: str = ""  # HF checkpoint folder (the converter's `mcore-to-hf` export for a Megatron-trained policy)
    max_length: Optional[int] = None  # context limit; null: the model's max_position_embeddings
    url: Optional[str] = None  # an OpenAI-compatible server (`vllm serve <model>`) instead of loading the model
    served_model: Optional[str] = None  # the server's model name; null: the `model` path (vllm serve's default)


@dataclass
class SamplingConfig:
    num_samples: int = 4  # N solutions per prompt
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0
    keep_truncated: bool = True  # false: solutions cut at max_new_tokens are neither judged nor paired (counted)


@dataclass
class FAPConfig:
    enabled: bool = True
    template: str = "configs/genrm/prompts/fap.txt"
    yes_tokens: List[str] = field(default_factory=lambda: ["Yes", " Yes"])  # variants summed into P(Yes)
    no_tokens: List[str] = field(default_factory=lambda: ["No", " No"])
    min_yes_no_mass: float = 0.0  # judgements whose P(Yes)+P(No) (unnormalised) is below this count as unparsable
    margin: float = 0.1  # best - worst score must reach this, else the prompt's pair is a tie (dropped, counted)
    min_chosen_score: float = 0.0  # the chosen solution's P(Yes) must reach this


@dataclass
class SCPConfig:
    enabled: bool = True
    template: str = "configs/genrm/prompts/scp.txt"
    apply_to: str = "rejected"  # rejected: samples with FAP score < max_fap_score (all when FAP is off) | all
    max_fap_score: float = 0.5
    max_new_tokens: int = 256  # the GenRM's critique (first wrong step + its correction)
    temperature: float = 0.0  # 0: greedy critique
    max_per_prompt: Optional[int] = None  # at most this many SCP pairs per prompt (null: one per corrected sample)
    max_critiques_per_prompt: Optional[int] = None  # critique at most this many samples per prompt, lowest FAP
    # score first (null: every eligible sample); critiques are long generations, the costly part of SCP
    response_prefix: str = ""  # the judge's reply begins with this text (prefilled after the assistant header,
    # parsed with the critique): e.g. "First incorrect step:" holds a small judge to the reply format
    judge_corrections: bool = True  # FAP-score corrected solutions; pair rewards = the two FAP scores (else 1/0)


@dataclass
class GenRMBackendConfig(BackendConfig):
    batch_size: int = 16  # hf: sequences per forward pass while sampling and judging
    concurrency: int = 32  # server urls: requests in flight at once


@dataclass
class GenRMConfig:
    RENAMED: ClassVar[dict] = {"resume": "force (resume=false is force=true: start over)"}

    prompts_file: str = "samples/genrm/prompts.jsonl"  # JSONL: id (optional), prompt, reference (optional), system
    output_dir: str = "runs/genrm"
    limit: Optional[int] = None  # only the first N prompts (smoke runs)
    chunk_prompts: int = 8  # prompts processed (and checkpointed to progress.jsonl) together
    force: bool = False  # true: start over, discarding progress.jsonl of an earlier run; false resumes from it
    system_prompt: Optional[str] = None  # system message for the policy (a record's own "system" wins)
    solve_template: str = "configs/genrm/prompts/solve.txt"
    policy: ModelSpec = field(default_factory=ModelSpec)
    genrm: ModelSpec = field(default_factory=ModelSpec)  # the judge; may be the policy itself
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    fap: FAPConfig = field(default_factory=FAPConfig)
    scp: SCPConfig = field(default_factory=SCPConfig)
    backend: GenRMBackendConfig = field(default_factory=GenRMBackendConfig)

    def validate(self) -> None:
        p = Problems()
        for key, spec in (("policy", self.policy), ("genrm", self.genrm)):
            p.check(bool(spec.model) and (Path(spec.model) / "config.json").is_file(), f"{key}.model", spec.model,
                    "must be an HF checkpoint folder with config.json, weights and tokenizer "
                    "(`findap-nemo convert mcore-to-hf` writes one)")
            if spec.url is not None:  # the server's address follows the one rule FinEval's servers.* follow
                ServerSpec(spec.url, spec.served_model).validate(p, key)
            p.check(spec.max_length is None or spec.max_length >= 32, f"{key}.max_length", spec.max_length,
                    "null or >= 32")
        p.check(resolve_path(self.prompts_file).is_file(), "prompts_file", self.prompts_file,
                "must be a JSONL file of {\"prompt\": ..., \"reference\": ...} records")
        for key, path, needed in (("solve_template", self.solve_template, ("{question}",)),
                                  ("fap.template", self.fap.template, ("{question}", "{solution}")),
                                  ("scp.template", self.scp.template, ("{question}", "{solution}"))):
            if not resolve_path(path).is_file():
                p.add(key, path, "must be a prompt template file (see configs/genrm/prompts/)")
                continue
            text = resolve_path(path).read_text(encoding="utf-8")
            missing = [n for n in needed if n not in text]
            p.check(not missing, key, path, f"the template lacks the placeholder(s) {missing}")
        p.check(self.limit is None or self.limit >= 1, "limit", self.limit, "null or >= 1")
        p.check(self.chunk_prompts >= 1, "chunk_prompts", self.chunk_prompts, ">= 1")
        s = self.sampling
        p.check(s.num_samples >= 1, "sampling.num_samples", s.num_samples, ">= 1 (FAP pairs need >= 2)")
        p.check(s.num_samples >= 2 or not self.fap.enabled, "sampling.num_samples", s.num_samples,
                "FAP pairs compare samples of one prompt: use >= 2, or fap.enabled=false")
        p.check(s.temperature >= 0, "sampling.temperature", s.temperature, ">= 0 (0 = greedy)")
        p.check(0 < s.top_p <= 1, "sampling.top_p", s.top_p, "in (0, 1]")
        p.check(s.max_new_tokens >= 1, "sampling.max_new_tokens", s.max_new_tokens, ">= 1")
        f = self.fap
        p.check(bool(f.yes_tokens) and bool(f.no_tokens), "fap.yes_tokens/no_tokens", (f.yes_tokens, f.no_tokens),
                "list at least one spelling of each answer, e.g. ['Yes', ' Yes']")
        p.check(not set(f.yes_tokens) & set(f.no_tokens), "fap.yes_tokens", f.yes_tokens,
                "must not share a spelling with fap.no_tokens")
        p.check(0 <= f.min_yes_no_mass < 1, "fap.min_yes_no_mass", f.min_yes_no_mass, "in [0, 1)")
        p.check(0 <= f.margin <= 1, "fap.margin", f.margin, "in [0, 1]")
        p.check(0 <= f.min_chosen_score <= 1, "fap.min_chosen_score", f.min_chosen_score, "in [0, 1]")
        c = self.scp
        p.check(c.apply_to in SCP_TARGETS, "scp.apply_to", c.apply_to, f"one of {list(SCP_TARGETS)}")
        p.check(0 <= c.max_fap_score <= 1, "scp.max_fap_score", c.max_fap_score, "in [0, 1]")
        p.check(c.max_new_tokens >= 1, "scp.max_new_tokens", c.max_new_tokens, ">= 1")
        p.check(c.temperature >= 0, "scp.temperature", c.temperature, ">= 0")
        p.check(c.max_per_prompt is None or c.max_per_prompt >= 1, "scp.max_per_prompt", c.max_per_prompt,
                "null or >= 1")
        p.check(c.max_critiques_per_prompt is None or c.max_critiques_per_prompt >= 1,
                "scp.max_critiques_per_prompt", c.max_critiques_per_prompt, "null or >= 1")
        p.check(f.enabled or c.enabled, "fap.enabled/scp.enabled", (f.enabled, c.enabled),
                "enable at least one pair method")
        b = self.backend
        b.validate(p)
        p.check(b.batch_size >= 1, "backend.batch_size", b.batch_size, ">= 1")
        p.check(b.concurrency >= 1, "backend.concurrency", b.concurrency, ">= 1")
        p.raise_if_any()
