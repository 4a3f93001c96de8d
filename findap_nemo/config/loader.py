"""Loading, merging and overriding configs (OmegaConf structured configs)."""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from findap_nemo.errors import ConfigError
from findap_nemo.shipped import ROOT

T = TypeVar("T")

CONFIGS_DIR = ROOT / "configs"
"""The shipped ``configs/`` folder (model presets live in ``configs/model/<name>.yaml``)."""


class Problems:
    """Collects every validation failure so the user sees all of them at once, not one per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, value: Any, fix: str) -> None:
        self.items.append(f"{key}={value!r}: {fix}")

    def check(self, ok: bool, key: str, value: Any, fix: str) -> None:
        if not ok:
            self.add(key, value, fix)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def parse_overrides(overrides: Iterable[str]) -> list[str]:
    """Validate ``a.b=value`` strings (value parsed as YAML); returns them for OmegaConf.from_dotlist."""
    out = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r}: expected a dotted assignment such as `optim.lr=1e-5`")
        out.append(item)
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); errors name the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _preset(name: str) -> dict:
    path = CONFIGS_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIGS_DIR / "model").glob("*.yaml"))
        raise ConfigError(f"model.preset={name!r}: no such preset; choose one of {known} or give the shape keys")
    return read_yaml(path)


def model_preset(name: str):
    """The ModelConfig of configs/model/<name>.yaml."""
    from findap_nemo.config.schema import ModelConfig

    return load_config(ModelConfig, None, base=_preset(name))


COMMAND_LINE = "command line"


def _key_lines(path: Path) -> dict[str, int]:
    """Dotted key -> 1-based line of a YAML file, so a problem can say where its value came from."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    walk(root, "")
    return lines


class _Layer:
    """One source of values (preset, pipeline base, YAML file, command line) and where each key came from."""

    def __init__(self, data: dict, name: str, path: Path | None = None):
        self.data, self.name = data, name
        self.lines = _key_lines(path) if path is not None else {}

    def origin(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.name}:{line}" if line else self.name


def _is_structured(node: Any) -> bool:
    return isinstance(node, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(node))


def _nest(key: list[str], value: Any) -> dict:
    out: Any = value
    for k in reversed(key):
        out = {k: out}
    return out


def _check_layer(schema_cfg: DictConfig, layer: _Layer, problems: list[str]) -> dict:
    """The part of ``layer`` that merges cleanly into the schema; every key that does not (unknown key, wrong type)
    becomes a problem naming the key, the value, its origin and what was expected."""
    import difflib

    clean: dict = {}

    def walk(node: DictConfig, data: dict, prefix: list[str], out: dict) -> None:
        probe = copy.deepcopy(node)  # assignments validate and convert; the schema itself stays untouched
        for k, v in data.items():
            key = prefix + [str(k)]
            dotted = ".".join(key)
            if _is_structured(node) and str(k) not in node:
                near = difflib.get_close_matches(str(k), [str(x) for x in node.keys()], n=1, cutoff=0.6)
                renamed = getattr(OmegaConf.get_type(node), "RENAMED", {}).get(str(k))
                hint = f"renamed: {'.'.join(prefix + [renamed])}" if renamed else \
                    f"did you mean {'.'.join(prefix + near)}?" if near else \
                    f"known keys here: {', '.join(sorted(str(x) for x in node.keys()))}"
                problems.append(f"{dotted} ({layer.origin(dotted)}): unknown key; {hint}")
                continue
            child = node[k] if _is_structured(node) else None
            if isinstance(v, dict) and _is_structured(child):
                sub: dict = {}
                walk(child, v, key, sub)
                out[k] = sub
                continue
            try:
                if isinstance(v, (dict, list)):
                    OmegaConf.merge(schema_cfg, _nest(key, v))
                else:
                    with warnings.catch_warnings():  # int -> float is fine here, as in the merge below
                        warnings.simplefilter("ignore", FutureWarning)
                        probe[k] = v
            except OmegaConfBaseException as err:
                msg = str(err).splitlines()[0]
                problems.append(f"{dotted}={v!r} ({layer.origin(dotted)}): {msg}")
                continue
            out[k] = v

    walk(schema_cfg, layer.data, [], clean)
    return clean


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                base: dict | None = None, *, world_size: int | None = None) -> T:
    """Build a validated config object of dataclass type ``schema``.

    ``base`` is an optional mapping merged before the file (used by the pipeline to hand a stage its section).
    ``world_size`` (default: $WORLD_SIZE or 1) is passed to validators that check layouts against it.
    Every problem is reported at once (one :class:`ConfigError`): unparsable overrides, unknown keys (with the
    nearest known key), values of the wrong type, each with its origin (``file:line`` or ``command line``), and the
    schema's own checks on the values that were valid.
    Returns a plain dataclass instance (not a DictConfig), so code downstream gets attribute access and types.
    """
    problems: list[str] = []
    file_data = read_yaml(path) if path else {}
    dot: dict = {}
    for item in overrides:
        if "=" not in item or item.startswith("="):
            problems.append(f"override {item!r} ({COMMAND_LINE}): expected a dotted assignment such as "
                            f"`optim.lr=1e-5`")
            continue
        try:
            dot = OmegaConf.to_container(OmegaConf.merge(dot, OmegaConf.from_dotlist([item])))  # type: ignore
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as err:
            problems.append(f"override {item!r} ({COMMAND_LINE}): cannot parse ({str(err).splitlines()[0]}); "
                            f"values are YAML, quote strings with special characters")
    # The preset is chosen by the file, the base or an override; it sits under the file's own model keys.
    preset = (dot.get("model") or {}).get("preset") if isinstance(dot.get("model"), dict) else None
    preset = preset or (file_data.get("model") or {}).get("preset") or ((base or {}).get("model") or {}).get("preset")
    sections = {f.name for f in dataclasses.fields(schema)}
    layers: list[tuple[str, _Layer]] = []  # (label for checkpoint-architecture conflicts, layer)
    if preset and "model" in sections:
        layers.append((f"model.preset={preset}", _Layer({"model": _preset(preset)}, f"configs/model/{preset}.yaml",
                                                         CONFIGS_DIR / "model" / f"{preset}.yaml")))
    layers.append(("the base config", _Layer(base or {}, "pipeline")))
    layers.append((str(path), _Layer(file_data, str(path), Path(path)) if path else _Layer({}, "defaults")))
    layers.append(("the command line", _Layer(dot, COMMAND_LINE)))
    try:
        cfg: DictConfig = OmegaConf.structured(schema)
        schema_cfg = cfg
        named: list[tuple[str, Any]] = []
        for label, layer in layers:
            clean = _check_layer(schema_cfg, layer, problems)
            named.append((label, clean))
            cfg = OmegaConf.merge(cfg, clean)
        if {"model", "checkpoint"} <= sections:
            try:
                cfg = _adopt_checkpoint_model(schema, cfg, named)
            except ConfigError as err:
                raise ConfigError(problems + err.problems) from None
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ConfigError(problems + [f"{key or '?'}: {str(err).splitlines()[0]}"]) from err
    validate = getattr(obj, "validate", None)
    if callable(validate):
        import inspect

        try:
            if "world_size" in inspect.signature(validate).parameters:
                validate(world_size=world_size)
            else:
                validate()
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        raise ConfigError(problems)
    return obj


def _adopt_checkpoint_model(schema: type, cfg: DictConfig, named: list[tuple[str, Any]]) -> DictConfig:
    """Re-merge with the architecture of ``checkpoint.pretrained`` under every explicit layer (see
    :mod:`findap_nemo.config.checkpoint_model`); explicit values that disagree with it are errors."""
    from findap_nemo.config.checkpoint_model import checkpoint_model, conflicts

    found = checkpoint_model(OmegaConf.select(cfg, "checkpoint.pretrained"))
    if found is None:
        return cfg
    source, arch = found
    plain = [(where, OmegaConf.to_container(layer) if isinstance(layer, DictConfig) else layer)
             for where, layer in named]
    problems = conflicts(arch, source, plain)
    if problems:
        raise ConfigError(problems)
    out: DictConfig = OmegaConf.merge(OmegaConf.structured(schema), {"model": arch})
    for _, layer in named:
        out = OmegaConf.merge(out, layer)
    if arch.get("tokenizer") and OmegaConf.select(out, "model.tokenizer") is None:
        out.model.tokenizer = arch["tokenizer"]  # `tokenizer: null` in a file means "not given": the weights' own
    return out


def config_to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def config_yaml(cfg: Any) -> str:
    """The fully resolved config as YAML, in the schema's key order (``--print-config``, saved run configs)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the fully resolved config next to a run's outputs (atomically) so it can be reproduced."""
    from findap_nemo.files import write_text_atomic

    write_text_atomic(path, config_yaml(cfg))
