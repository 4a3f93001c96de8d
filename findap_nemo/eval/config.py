"""Schema of `findap-nemo eval` configs (configs/eval/*.yaml documents every key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Dict, List, Optional

from findap_nemo.config import Problems
from findap_nemo.inference.config import BackendConfig, ServerSpec



@dataclass
class GenerationConfig:
    max_new_tokens: Optional[int] = None  # null: each task's own max_new_tokens; set: overrides every task
    chat_template: bool = True  # FinEval applies the model's chat template
    batch_size: int = 8
    max_length: Optional[int] = None  # context limit; null: the model's max_position_embeddings
    seed: int = 0


@dataclass
class EvalConfig:
    RENAMED: ClassVar[dict] = {"overwrite": "force (false reuses an identical run's predictions, true redoes them)"}

    models: Dict[str, str] = field(default_factory=dict)  # name -> HF checkpoint folder
    tasks: List[str] = field(default_factory=lambda: ["all"])  # task names, category names or "all"
    registry: List[str] = field(default_factory=lambda: ["configs/eval/tasks"])  # task YAML folders/files
    output_dir: str = "runs/eval"
    limit: Optional[int] = None  # evaluate only the first N examples of each task (smoke runs)
    task_limits: Dict[str, int] = field(default_factory=dict)  # per-task caps that replace `limit` (name -> N)
    force: bool = False  # true: recompute every (model, task); false reuses the predictions of an identical run
    chart: bool = True  # comparison.png when two or more models are evaluated
    save_prompts: bool = False  # also write each example's full prompt text (as the model saw it) to predictions
    # (model, task) pairs evaluated by this many processes at once (hf backend): on CPU each takes its share of the
    # cores (two 1-thread processes outrun one 2-thread process by ~1.5x); on GPUs worker k uses cuda:k
    workers: int = 1
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    # models answered by a running OpenAI-compatible server instead of a local engine: model name -> {url,
    # served_model}; the model's folder still provides the tokenizer (and the fingerprint of what was evaluated)
    servers: Dict[str, ServerSpec] = field(default_factory=dict)

    def validate(self) -> None:
        import re

        p = Problems()
        p.check(bool(self.models), "models", dict(self.models),
                "name at least one model, e.g. `models.base=/ckpt/llama3-8b-instruct-hf`")
        for name, path in self.models.items():
            p.check(bool(re.fullmatch(r"[A-Za-z0-9._+-]+", name)), f"models.{name}", path,
                    "model names become folder names: use letters, digits, . _ + -")
            p.check(bool(path) and (Path(str(path)) / "config.json").is_file(), f"models.{name}", path,
                    "must be an HF checkpoint folder with config.json, weights and tokenizer "
                    "(`findap-nemo convert mcore-to-hf` writes one)")
        for name, server in self.servers.items():
            p.check(name in self.models, f"servers.{name}", server.url,
                    f"name a model of `models` ({', '.join(self.models) or 'none'})")
            server.validate(p, f"servers.{name}")
        p.check(bool(self.tasks), "tasks", self.tasks, "list task names, categories or 'all'")
        p.check(self.limit is None or self.limit >= 1, "limit", self.limit, "null or >= 1")
        for name, n in self.task_limits.items():
            p.check(n >= 1, f"task_limits.{name}", n, ">= 1")
        g = self.generation
        p.check(g.max_new_tokens is None or g.max_new_tokens >= 1, "generation.max_new_tokens", g.max_new_tokens,
                "null or >= 1")
        p.check(g.batch_size >= 1, "generation.batch_size", g.batch_size, "must be >= 1")
        p.check(g.max_length is None or g.max_length >= 16, "generation.max_length", g.max_length, "null or >= 16")
        b = self.backend
        b.validate(p)
        p.check(self.workers >= 1, "workers", self.workers, ">= 1")
        p.check(self.workers == 1 or b.kind != "vllm", "workers", self.workers,
                "1 with backend.kind=vllm (vLLM batches one model over its GPUs itself; use "
                "backend.tensor_parallel_size for more GPUs)")
        p.check(self.workers == 1 or not b.device_map, "workers", self.workers,
                "1 with backend.device_map (one model spread over every GPU)")
        p.raise_if_any()
