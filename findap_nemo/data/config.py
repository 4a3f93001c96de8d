"""The data recipe: sources (kind, domain, field mapping), the blend targets and decontamination."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from findap_nemo.config import Problems


@dataclass
class SourceConfig:
    """One input. ``path`` is a local .jsonl/.json/.parquet file (or folder of them); ``hf_dataset`` a
    ``datasets.load_dataset`` name or local dataset folder (with ``hf_subset``/``hf_split``)."""

    name: str = ""
    kind: str = "cpt"  # cpt (raw text) | it (chat messages or prompt/response)
    domain: str = "finance"  # finance | general
    path: Optional[str] = None
    hf_dataset: Optional[str] = None
    hf_subset: Optional[str] = None
    hf_split: str = "train"
    # field mapping
    text_field: str = "text"  # cpt
    messages_field: Optional[str] = "messages"  # it: list of {"role", "content"}
    prompt_field: Optional[str] = "prompt"  # it, when there are no messages
    response_field: Optional[str] = "response"
    system_field: Optional[str] = None
    max_documents: Optional[int] = None  # read at most this many (after bad-input handling)


@dataclass
class BlendConfig:
    # FinDAP's reference release: CPT shuffled (seed 42) and cut to as many EXAMPLES as the IT set, 1:1.
    downsample_cpt: str = "examples"  # examples | tokens | none
    cpt_to_it_ratio: float = 1.0  # CPT size = ratio x IT size, in the unit above
    # Share of training samples per domain (megatron blend weights); null: proportional to packed tokens.
    domain_weights: Optional[dict] = None
    valid_fraction: float = 0.05  # packs held out per component for validation
    # Which kinds the blend trains on: [cpt, it] (FinDAP: joint), [cpt] or [it] (recipe ablations; a sequential
    # run is a [cpt] build, then an [it] build). CPT is still cut to the size of the whole IT set, so a CPT-only
    # or sequential run sees exactly the CPT examples of the joint one.
    kinds: list = field(default_factory=lambda: ["cpt", "it"])


@dataclass
class DecontaminationConfig:
    eval_sets: list = field(default_factory=list)  # JSONL files or globs (e.g. samples/fineval/*.jsonl)
    eval_tasks: list = field(default_factory=list)  # FinEval task names/categories from the eval registry
    ngram: int = 13  # word n-grams, lower-cased, punctuation stripped (as GPT-3 / FinDAP-style dedup)


@dataclass
class DataRecipe:
    """`findap-nemo data` config."""

    RENAMED: ClassVar[dict] = {"overwrite": "force (true rebuilds a complete dataset)"}

    tokenizer: Optional[str] = None  # HF tokenizer folder (its chat template renders IT data)
    output_dir: str = "runs/data"
    seq_length: int = 8000  # FinDAP: 8000; packs hold at most seq_length + 1 tokens
    seed: int = 42
    num_workers: int = 2  # tokenizer processes
    skip_bad: bool = False  # false: the first bad record stops the build naming file and line
    it_overlong: str = "drop"  # IT conversations longer than a pack: drop | truncate (counted either way)
    min_tokens: int = 2  # shorter documents are dropped (counted)
    force: bool = False  # true: rebuild when output_dir already holds a complete dataset (false refuses to)
    sources: list[SourceConfig] = field(default_factory=list)
    blend: BlendConfig = field(default_factory=BlendConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)

    def validate(self) -> None:
        p = Problems()
        p.check(bool(self.tokenizer), "tokenizer", self.tokenizer, "give an HF tokenizer folder (tokenizer=...)")
        if self.tokenizer:
            p.check(os.path.isdir(self.tokenizer), "tokenizer", self.tokenizer, "folder not found")
        p.check(self.seq_length >= 8, "seq_length", self.seq_length, "must be >= 8")
        p.check(bool(self.sources), "sources", [], "list at least one source")
        names = [s.name for s in self.sources]
        for i, s in enumerate(self.sources):
            key = f"sources[{i}]"
            p.check(bool(s.name), f"{key}.name", s.name, "every source needs a unique name")
            p.check(names.count(s.name) == 1 or not s.name, f"{key}.name", s.name, "source names must be unique")
            p.check(s.kind in ("cpt", "it"), f"{key}.kind", s.kind, "use cpt (raw text) or it (chat/instruction)")
            p.check(s.domain in ("finance", "general"), f"{key}.domain", s.domain, "use finance or general")
            p.check(bool(s.path) != bool(s.hf_dataset), f"{key}", s.name,
                    "give exactly one of path (local file) or hf_dataset (datasets.load_dataset name)")
            if s.path:
                p.check(os.path.exists(s.path), f"{key}.path", s.path, "file not found")
        p.check(self.blend.downsample_cpt in ("examples", "tokens", "none"), "blend.downsample_cpt",
                self.blend.downsample_cpt, "use examples (FinDAP release), tokens or none")
        p.check(self.blend.cpt_to_it_ratio > 0, "blend.cpt_to_it_ratio", self.blend.cpt_to_it_ratio, "must be > 0")
        p.check(0 <= self.blend.valid_fraction < 0.5, "blend.valid_fraction", self.blend.valid_fraction,
                "must be in [0, 0.5)")
        kinds = list(self.blend.kinds or [])
        p.check(bool(kinds) and set(kinds) <= {"cpt", "it"} and len(set(kinds)) == len(kinds), "blend.kinds",
                kinds, "use [cpt, it] (joint), [cpt] or [it]")
        if set(kinds) != {"cpt", "it"}:  # a build of one part (recipe ablations) needs sources of that part
            for kind in set(kinds) & {"cpt", "it"}:
                p.check(any(s.kind == kind for s in self.sources), "blend.kinds", kinds,
                        f"no source has kind {kind}: add one or drop {kind} from blend.kinds")
        if self.blend.domain_weights:
            for k, v in self.blend.domain_weights.items():
                p.check(k in ("finance", "general"), f"blend.domain_weights.{k}", v, "domains are finance/general")
                p.check(isinstance(v, (int, float)) and v > 0, f"blend.domain_weights.{k}", v, "must be > 0")
        p.check(self.it_overlong in ("drop", "truncate"), "it_overlong", self.it_overlong, "use drop or truncate")
        p.check(self.decontamination.ngram >= 4, "decontamination.ngram", self.decontamination.ngram, "use >= 4")
        p.raise_if_any()
