"""The task registry: tasks declared in YAML, their examples loaded from JSONL, Parquet or a hub dataset.

One YAML file per task (or a file with a top-level ``tasks:`` list) under ``configs/eval/tasks/``. A task says
where its examples come from, how to prompt, how to read the answer and how to score it; see
``configs/eval/tasks/README.md`` for every key. Adding a task needs no code.

Examples are never dropped: a line that is not valid JSON becomes an example whose ``_error`` is set, so it is
scored as wrong and counted, and the denominator stays the size of the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from findap_nemo.config import ConfigError, Problems
from findap_nemo.config.loader import read_yaml
from findap_nemo.files import BadLine, jsonl_lines
from findap_nemo.shipped import ROOT

DEFAULT_REGISTRY = ROOT / "configs" / "eval" / "tasks"

TASK_TYPES = ("classification", "multiple_choice", "numeric", "ner", "instruction", "exact_match", "summarization")
CATEGORIES = ("unseen_similar", "novel_concepts", "novel_finance", "reasoning", "instruction_following", "general")
MC_METHODS = ("generate", "loglik")
LOGLIK_NORMALIZE = ("none", "per_token", "per_char", "per_byte")
DEFAULT_METRICS = {
    "classification": ["accuracy", "macro_f1"],
    "multiple_choice": ["accuracy"],
    "numeric": ["accuracy"],
    "ner": ["entity_f1", "entity_precision", "entity_recall"],
    "instruction": ["prompt_accuracy", "rule_accuracy"],
    "exact_match": ["exact_match"],
    "summarization": ["rougeL", "rouge1", "rouge2"],
}
ERROR_KEY = "_error"  # set on an example that could not be read; it is scored as wrong
LINE_KEY = "_line"


@dataclass
class SourceSpec:
    """Where the examples live: a local file (``path``) or a ``datasets.load_dataset`` name."""

    path: Optional[str] = None  # .jsonl / .json / .parquet; relative to the task YAML, the cwd or the repo
    dataset: Optional[str] = None  # hub name, e.g. an org/FinEval repository
    subset: Optional[str] = None  # the dataset's config name
    split: str = "test"
    data_files: Optional[str] = None  # passed to load_dataset for generic builders (json, parquet)


@dataclass
class TaskSpec:
    """One evaluation task. Field names mirror FinEval's (query, answer, choices, gold) where they exist."""

    name: str
    category: str
    type: str
    source: SourceSpec = field(default_factory=SourceSpec)
    description: str = ""
    # Jinja2 template of the user turn; the example's fields are variables (``{{ query }}``, ``{{ choices }}``).
    prompt: str = "{{ query }}"
    system: Optional[str] = None  # optional system turn
    answer_field: str = "answer"  # the gold answer (label, letter, number, entity list, ...)
    # multiple choice
    choices_field: str = "choices"  # a list of option texts, or a mapping letter -> text
    gold_field: Optional[str] = None  # optional 0-based index of the right option (FinEval's ``gold``)
    mc_method: str = "generate"  # generate: answer text + extraction; loglik: score each option
    loglik_target: str = "letter"  # loglik: score "A"/"B"/... (letter) or the option text (text)
    # loglik: the option's score is its summed log-prob (none), divided by its token count (per_token), by its
    # length in characters (per_char: lm-evaluation-harness's acc_norm) or in UTF-8 bytes (per_byte: acc_bytes).
    # true/false are read as per_token/none.
    loglik_normalize: str = "none"
    bracket_only: bool = False  # generate: accept only "[[A]]" selections (FinEval's CFA protocol)
    # classification
    labels: list[str] = field(default_factory=list)
    label_aliases: dict[str, str] = field(default_factory=dict)  # output word -> label, e.g. {pos: positive}
    # numeric
    abs_tol: float = 1e-6
    rel_tol: float = 0.01
    percent_equivalent: bool = True  # when exactly one side is a percentage: "12%" matches 0.12 and 0.12 gold "12%"
    # ner
    entity_types: dict[str, str] = field(default_factory=dict)  # output word -> type, e.g. {person: PER}
    # exact_match
    aliases_field: Optional[str] = None  # a list of other accepted answers
    # exact: the output (or its first line) equals an answer; contains: an answer appears in the output as whole
    # words (DPR/FiD's NQ-open "has answer"). Both after lower-casing, removing punctuation and articles.
    match: str = "exact"
    # instruction
    rules_field: str = "rules"
    # prompting and generation
    few_shot: int = 0  # k demonstrations, taken from few_shot_source (or the first k examples, then excluded)
    few_shot_source: Optional[SourceSpec] = None
    answer_template: str = "{{ answer }}"  # how a demonstration's answer is written
    max_new_tokens: int = 64
    metrics: list[str] = field(default_factory=list)  # default: by type (DEFAULT_METRICS)
    primary_metric: Optional[str] = None  # the task's score in tables; default: first metric
    id_field: Optional[str] = "id"
    file: Optional[str] = None  # the YAML file the task came from (set by the loader)

    @property
    def primary(self) -> str:
        return self.primary_metric or (self.metrics or DEFAULT_METRICS[self.type])[0]

    @property
    def metric_names(self) -> list[str]:
        return list(self.metrics or DEFAULT_METRICS[self.type])

    def validate(self, where: str) -> list[str]:
        p = Problems()
        p.check(bool(self.name), f"{where}: name", self.name, "give every task a name")
        p.check(self.category in CATEGORIES, f"{where}: category", self.category, f"one of {list(CATEGORIES)}")
        p.check(self.type in TASK_TYPES, f"{where}: type", self.type, f"one of {list(TASK_TYPES)}")
        s = self.source
        p.check(bool(s.path) != bool(s.dataset), f"{where}: source", dataclasses.asdict(s),
                "set exactly one of source.path (local JSONL/Parquet) or source.dataset (hub name)")
        if self.type == "classification":
            p.check(len(self.labels) >= 2, f"{where}: labels", self.labels, "list at least two class labels")
        if self.type == "multiple_choice":
            p.check(self.mc_method in MC_METHODS, f"{where}: mc_method", self.mc_method, f"one of {list(MC_METHODS)}")
            p.check(self.loglik_normalize in LOGLIK_NORMALIZE, f"{where}: loglik_normalize", self.loglik_normalize,
                    f"one of {list(LOGLIK_NORMALIZE)} (per_char is lm-evaluation-harness's acc_norm)")
            p.check(self.loglik_target in ("letter", "text"), f"{where}: loglik_target", self.loglik_target,
                    "letter or text")
        if self.type == "exact_match":
            p.check(self.match in ("exact", "contains"), f"{where}: match", self.match, "exact or contains")
        p.check(self.max_new_tokens >= 1, f"{where}: max_new_tokens", self.max_new_tokens, "must be >= 1")
        p.check(self.few_shot >= 0, f"{where}: few_shot", self.few_shot, "must be >= 0")
        p.check(self.rel_tol >= 0 and self.abs_tol >= 0, f"{where}: abs_tol/rel_tol",
                (self.abs_tol, self.rel_tol), "tolerances must be >= 0")
        from findap_nemo.eval.metrics import KNOWN_METRICS

        for m in self.metric_names:
            p.check(m in KNOWN_METRICS.get(self.type, ()), f"{where}: metrics", m,
                    f"metrics of a {self.type} task: {sorted(KNOWN_METRICS.get(self.type, ()))}")
        p.check(self.primary in self.metric_names, f"{where}: primary_metric", self.primary,
                f"one of the task's metrics {self.metric_names}")
        return p.items


_TASK_FIELDS = {f.name for f in dataclasses.fields(TaskSpec)}
_SOURCE_FIELDS = {f.name for f in dataclasses.fields(SourceSpec)}


def _mapping(value: Any, fields: set[str], where: str, what: str) -> dict:
    """``value`` as a YAML mapping whose keys are all among ``fields`` (a typo is an error, not silently ignored)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what} must be a mapping, got {value!r}")
    unknown = set(value) - fields
    if unknown:
        raise ConfigError(f"{where}: unknown {what} keys {sorted(unknown)}; known keys: {sorted(fields)}")
    return value


def _source(value: Any, where: str) -> SourceSpec:
    return SourceSpec(**_mapping(value, _SOURCE_FIELDS, where, "source (path or dataset)"))


def task_from_dict(data: dict, where: str) -> TaskSpec:
    """Build and validate a TaskSpec from a YAML mapping; unknown keys are errors, not silently ignored."""
    _mapping(data, _TASK_FIELDS, where, "task")
    missing = [k for k in ("name", "category", "type") if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required task keys {missing}")
    data = dict(data)
    if isinstance(data.get("loglik_normalize"), bool):  # older configs: true meant per-token
        data["loglik_normalize"] = "per_token" if data["loglik_normalize"] else "none"
    data["source"] = _source(data.get("source", {}), where)
    if data.get("few_shot_source") is not None:
        data["few_shot_source"] = _source(data["few_shot_source"], where + " few_shot_source")
    try:
        task = TaskSpec(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err
    problems = task.validate(where)
    if problems:
        raise ConfigError(problems)
    return task


def _yaml_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml"))))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"task registry path {str(p)!r} does not exist (expected a folder of task YAMLs or a file)")
    return files


def registry_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """A registry path as given (``~`` expanded) when it exists or is absolute, else from the repository (the shipped
    configs/eval/tasks, also from an installed copy)."""
    out = []
    for p in paths:
        q = Path(os.path.expanduser(str(p)))
        out.append(q if q.is_absolute() or q.exists() else ROOT / q)
    return out


def load_registry(paths: Iterable[str | os.PathLike] | None = None) -> dict[str, TaskSpec]:
    """All tasks declared in the given YAML files/folders (default: configs/eval/tasks), by name."""
    tasks: dict[str, TaskSpec] = {}
    for f in _yaml_files(registry_paths(paths) if paths else [DEFAULT_REGISTRY]):
        data = read_yaml(f)
        items = data.get("tasks") if isinstance(data, dict) and "tasks" in data else [data]
        for i, item in enumerate(items or []):
            where = f"{f}" + (f" tasks[{i}]" if len(items) > 1 else "")
            task = task_from_dict(item, where)
            task.file = str(f)
            if task.name in tasks:
                raise ConfigError(f"{where}: task name {task.name!r} is already declared in {tasks[task.name].file}")
            tasks[task.name] = task
    return tasks


def select_tasks(registry: dict[str, TaskSpec], names: Iterable[str]) -> list[TaskSpec]:
    """Resolve task names, category names or ``all`` to tasks, in registry order, without duplicates."""
    chosen: list[TaskSpec] = []
    unknown = []
    for n in names:
        if n == "all":
            hits = list(registry.values())
        elif n in registry:
            hits = [registry[n]]
        else:
            hits = [t for t in registry.values() if t.category == n]
        if not hits:
            unknown.append(n)
        for t in hits:
            if t not in chosen:
                chosen.append(t)
    if unknown:
        cats = sorted({t.category for t in registry.values()})
        raise ConfigError(f"tasks={unknown}: no such task or category; tasks: {sorted(registry)}; categories: {cats}")
    return chosen


def resolve_path(path: str, task_file: Optional[str] = None) -> Path:
    """A relative source path is looked up next to the task YAML, then in the cwd, then in the repository."""
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    if p.is_absolute():
        return p
    bases = ([Path(task_file).parent] if task_file else []) + [Path.cwd(), ROOT]
    for b in bases:
        if (b / p).exists():
            return b / p
    return (bases[0] / p) if bases else p


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for lineno, _, row in jsonl_lines(path):
        if isinstance(row, BadLine):  # scored as an invalid example, not a stop: the report counts them
            row = {ERROR_KEY: str(row)}
        row[LINE_KEY] = lineno
        rows.append(row)
    return rows


def load_source(source: SourceSpec, task_file: Optional[str] = None, *, what: str = "task") -> list[dict]:
    """Examples of one source as a list of dicts (one per example, in file order)."""
    if source.path:
        path = resolve_path(source.path, task_file)
        if not path.is_file():
            raise ConfigError(f"{what}: source.path={source.path!r}: file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8-sig"))
            except json.JSONDecodeError as err:
                raise ConfigError(f"{what}: {path} line {err.lineno}: not valid JSON ({err.msg}); "
                                  f"use JSONL to have bad lines counted instead") from err
            if not isinstance(data, list):
                raise ConfigError(f"{what}: {path}: a .json source must hold a list of objects")
            return [d if isinstance(d, dict) else {ERROR_KEY: f"{path.name} item {i}: not an object"}
                    for i, d in enumerate(data)]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        raise ConfigError(f"{what}: source.path={source.path!r}: expected a .jsonl, .json or .parquet file")
    import datasets

    try:
        ds = datasets.load_dataset(source.dataset, source.subset, split=source.split,
                                   data_files=source.data_files)
    except Exception as err:  # hub unreachable, unknown name or split: say which task and what was asked
        raise ConfigError(f"{what}: source.dataset={source.dataset!r} subset={source.subset!r} "
                          f"split={source.split!r} could not be loaded: {type(err).__name__}: {err}") from err
    return [dict(r) for r in ds]


def load_examples(task: TaskSpec) -> tuple[list[dict], list[dict]]:
    """(eval examples, few-shot demonstrations). Demonstrations taken from the eval set are removed from it."""
    rows = load_source(task.source, task.file, what=f"task {task.name}")
    shots: list[dict] = []
    if task.few_shot:
        if task.few_shot_source is not None:
            pool = load_source(task.few_shot_source, task.file, what=f"task {task.name} few_shot_source")
            shots = [r for r in pool if ERROR_KEY not in r][: task.few_shot]
        else:
            shots, rows = rows[: task.few_shot], rows[task.few_shot:]
    return rows, shots


_TEXT_FIELDS = ("query", "question", "text", "prompt", "context", "instruction", "sentence", "input",
                "choices", "options", "answer", "answers", "aliases", "output", "response")


def _texts_of(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _texts_of(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _texts_of(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)


def iter_eval_texts(task_or_paths: Any, registry: Iterable[str | os.PathLike] | None = None) -> Iterator[str]:
    """Texts of evaluation examples, for decontaminating training data against them.

    ``task_or_paths``: a task name, a category, ``"all"``, a TaskSpec, a JSONL/JSON/Parquet file, a task YAML,
    or a list of these. Yields each example's prompt/question/choices/answer texts (plus the task's declared
    answer and choices fields), one string per field value.
    """
    items = task_or_paths if isinstance(task_or_paths, (list, tuple)) else [task_or_paths]
    reg: Optional[dict[str, TaskSpec]] = None
    for item in items:
        tasks: list[TaskSpec] = []
        if isinstance(item, TaskSpec):
            tasks = [item]
        else:
            p = Path(str(item))
            if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
                tasks = list(load_registry([p]).values())
            elif p.suffix.lower() in (".jsonl", ".json", ".parquet"):
                for row in load_source(SourceSpec(path=str(p)), what=str(p)):
                    for key in _TEXT_FIELDS:
                        if key in row:
                            yield from _texts_of(row[key])
                continue
            else:
                reg = reg if reg is not None else load_registry(registry)
                tasks = select_tasks(reg, [str(item)])
        for task in tasks:
            keys = list(dict.fromkeys(_TEXT_FIELDS + (task.answer_field, task.choices_field)))
            rows = load_source(task.source, task.file, what=f"task {task.name}")
            for row in rows:
                for key in keys:
                    if key in row:
                        yield from _texts_of(row[key])


def task_table(registry: dict[str, TaskSpec]) -> str:
    """`findap-nemo eval --list-tasks`: one line per task with its category, type, method, metric, example count
    (``missing`` when its file is not there) and source."""
    lines = [f"{'task':24} {'category':22} {'type':16} {'method':9} {'metric':16} examples  source"]
    for t in registry.values():
        src = t.source.path or f"{t.source.dataset}:{t.source.subset or ''}:{t.source.split}"
        try:
            n = str(len(load_source(t.source, t.file, what=t.name))) if t.source.path else "?"
        except Exception:  # a missing file is reported, not fatal, when listing
            n = "missing"
        method = t.mc_method if t.type == "multiple_choice" else "generate"
        lines.append(f"{t.name:24} {t.category:22} {t.type:16} {method:9} {t.primary:16} {n:>8}  {src}")
    return "\n".join(lines) + "\n"
