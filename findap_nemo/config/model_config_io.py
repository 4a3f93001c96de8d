"""Where a megatron checkpoint's model shape is kept: ``<root>/model_config.yaml`` (written by hf-to-mcore) or the
``model:`` section of the training/DPO job's resolved ``<root>/config.yaml``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from findap_nemo.config import ConfigError, config_to_dict
from findap_nemo.config.schema import ModelConfig

MODEL_CONFIG_NAME = "model_config.yaml"
JOB_CONFIG_NAME = "config.yaml"


def save_model_config(model: ModelConfig, path: str | os.PathLike) -> None:
    data = {"model": config_to_dict(model)}
    Path(path).write_text("# megatron model shape of this checkpoint (findap-nemo ModelConfig)\n"
                          + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def load_model_config(path: str | os.PathLike, overrides: list[str] = ()) -> ModelConfig:
    """ModelConfig from a YAML holding either a ``model:`` section (job configs, model_config.yaml) or its fields.

    ``overrides`` are ``model.key=value`` (or ``key=value``) strings, applied last.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the model config: {err}") from err
    section = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'model' section")
    section = {k: v for k, v in section.items() if k != "preset"}  # job configs are saved fully resolved
    dots = []
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r}: expected a dotted assignment such as model.rope_scaling=true")
        dots.append(o[len("model."):] if o.startswith("model.") else o)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), section, OmegaConf.from_dotlist(dots))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path}: invalid model config ({err.msg if hasattr(err, 'msg') else err}); "
                          f"known keys: {[f.name for f in dataclasses.fields(ModelConfig)]}") from err
    return OmegaConf.to_object(merged)


def find_model_config(root: Path) -> Path | None:
    for name in (MODEL_CONFIG_NAME, JOB_CONFIG_NAME):
        if (root / name).is_file():
            return root / name
    return None


def pretrained_root(root: Path) -> Path | None:
    """The checkpoint a training/DPO run started from (``checkpoint.pretrained`` of its job config), if any."""
    job = root / JOB_CONFIG_NAME
    if not job.is_file():
        return None
    try:
        data = yaml.safe_load(job.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return None
    pre = (data.get("checkpoint") or {}).get("pretrained") if isinstance(data, dict) else None
    if not pre:
        return None
    from findap_nemo.checkpoint_layout import checkpoint_root

    return checkpoint_root(pre)
