"""YAML configs with dotted command-line overrides, validated before any work starts.

Every stage has a root dataclass schema (see :mod:`findap_nemo.config.schema`). Loading merges, in order:
schema defaults <- model preset (``model.preset``) <- YAML file <- ``key.sub=value`` overrides.
Unknown keys and wrongly typed values are rejected with the key's full path.
"""

from findap_nemo.config.loader import (
    ConfigError,
    Problems,
    config_to_dict,
    config_yaml,
    load_config,
    model_preset,
    parse_overrides,
    save_config,
)

__all__ = ["ConfigError", "Problems", "config_to_dict", "config_yaml", "load_config", "model_preset", "parse_overrides", "save_config"]
