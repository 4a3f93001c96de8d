"""Loading, merging and overriding configs (OmegaConf structured configs)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
"""The repository's ``configs/`` folder (model presets live in ``configs/model/<name>.yaml``)."""


class ConfigError(ValueError):
    """A config problem a user can fix: names the key, the value and what to do."""

    def __init__(self, problems: Iterable[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))


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
            raise ConfigError(f"override {item!r}: expected a dotted assignment such as `train.lr=1e-5`")
        out.append(item)
    return out


def _read_yaml(path: str | os.PathLike) -> dict:
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
    return _read_yaml(path)


def model_preset(name: str):
    """The ModelConfig of configs/model/<name>.yaml."""
    from findap_nemo.config.schema import ModelConfig

    return load_config(ModelConfig, None, base=_preset(name))


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                base: dict | None = None, *, world_size: int | None = None) -> T:
    """Build a validated config object of dataclass type ``schema``.

    ``base`` is an optional mapping merged before the file (used by the pipeline to hand a stage its section).
    ``world_size`` (default: $WORLD_SIZE or 1) is passed to validators that check layouts against it.
    Returns a plain dataclass instance (not a DictConfig), so code downstream gets attribute access and types.
    """
    file_data = _read_yaml(path) if path else {}
    try:
        dot = OmegaConf.from_dotlist(parse_overrides(overrides)) if overrides else OmegaConf.create({})
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"overrides {list(overrides)}: cannot parse ({str(err).splitlines()[0]}); values are "
                          f"YAML, quote strings with special characters") from err
    # The preset is chosen by the file, the base or an override; it sits under the file's own model keys.
    preset = OmegaConf.select(dot, "model.preset") or (file_data.get("model") or {}).get("preset") \
        or ((base or {}).get("model") or {}).get("preset")
    sections = {f.name for f in dataclasses.fields(schema)}
    named: list[tuple[str, Any]] = []
    if preset and "model" in sections:
        named.append((f"model.preset={preset}", {"model": _preset(preset)}))
    named += [("the base config", base or {}), (str(path), file_data), ("the command line", dot)]
    layers = [layer for _, layer in named]
    try:
        cfg: DictConfig = OmegaConf.structured(schema)
        for layer in layers:
            cfg = OmegaConf.merge(cfg, layer)
        if {"model", "checkpoint"} <= sections:
            cfg = _adopt_checkpoint_model(schema, cfg, named)
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        where = f" (from {path})" if path else ""
        key = getattr(err, "full_key", None)
        msg = str(err).splitlines()[0]
        raise ConfigError(f"{key or '?'}{where}: {msg}") from err
    validate = getattr(obj, "validate", None)
    if callable(validate):
        import inspect

        if "world_size" in inspect.signature(validate).parameters:
            validate(world_size=world_size)
        else:
            validate()
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
    return out


def config_to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the fully resolved config next to a run's outputs (atomically) so it can be reproduced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
