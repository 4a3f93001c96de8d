"""Schema of `findap-nemo convert` options (one section per direction), so a run's conversions are configured like
every other stage: a YAML file (``--config``), dotted overrides (``mcore_to_hf.dtype=bf16``) and the pipeline's
``convert: {config, overrides}``. A direction's flags (``--dtype``, ...) win over both; where a conversion reads
and writes comes from its flags only (``--hf/--mcore/--gguf``, ``--out``), because one config serves all of a
run's conversions."""

from __future__ import annotations

from dataclasses import dataclass, field

from findap_nemo.config import ConfigError, Problems

DTYPES = ("auto", "fp32", "bf16", "fp16")
GGUF_DTYPES = ("fp32", "bf16")


def parse_size(text: str) -> int:
    """'5GB', '500MB', '2GiB' or a byte count (a ConfigError, which is a ValueError, otherwise)."""
    t = str(text).strip().upper()
    units = {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for u, mult in units.items():
        if t.endswith(u):
            try:
                return int(float(t[: -len(u)]) * mult)
            except ValueError:
                break
    if t.isdigit():
        return int(t)
    raise ConfigError(f"max_shard_size={text!r}: expected a size such as 5GB, 500MB or 2GiB")


@dataclass
class HFToMcoreOptions:
    dtype: str = "auto"  # stored dtype: auto keeps the HF weights' | fp32 | bf16 | fp16
    # pad the vocabulary to a multiple of make_vocab_size_divisible_by x this TP (megatron re-pads on load at any
    # other TP, so 1 is fine; set the training TP to store it exactly)
    pad_vocab_for_tp: int = 1
    make_vocab_size_divisible_by: int = 128


@dataclass
class McoreToHFOptions:
    dtype: str = "auto"  # exported dtype: auto keeps the checkpoint's | fp32 | bf16 | fp16
    max_shard_size: str = "5GB"  # largest safetensors shard (e.g. 2GB, 500MB)


@dataclass
class GGUFToHFOptions:
    dtype: str = "fp32"  # dtype of the dequantised weights: fp32 | bf16


@dataclass
class ConvertConfig:
    progress: bool = True  # a progress bar when stderr is a terminal (the logs keep the throughput either way)
    hf_to_mcore: HFToMcoreOptions = field(default_factory=HFToMcoreOptions)
    mcore_to_hf: McoreToHFOptions = field(default_factory=McoreToHFOptions)
    gguf_to_hf: GGUFToHFOptions = field(default_factory=GGUFToHFOptions)

    def validate(self) -> None:
        p = Problems()
        for key, value, allowed in (("hf_to_mcore.dtype", self.hf_to_mcore.dtype, DTYPES),
                                    ("mcore_to_hf.dtype", self.mcore_to_hf.dtype, DTYPES),
                                    ("gguf_to_hf.dtype", self.gguf_to_hf.dtype, GGUF_DTYPES)):
            p.check(value in allowed, key, value, f"one of {list(allowed)}")
        h = self.hf_to_mcore
        p.check(h.pad_vocab_for_tp >= 1, "hf_to_mcore.pad_vocab_for_tp", h.pad_vocab_for_tp, ">= 1 (a TP size)")
        p.check(h.make_vocab_size_divisible_by >= 1, "hf_to_mcore.make_vocab_size_divisible_by",
                h.make_vocab_size_divisible_by, ">= 1 (megatron's default is 128)")
        try:
            ok = parse_size(self.mcore_to_hf.max_shard_size) > 0
        except ValueError:
            ok = False
        p.check(ok, "mcore_to_hf.max_shard_size", self.mcore_to_hf.max_shard_size,
                "a positive size such as 5GB, 500MB or a number of bytes")
        p.raise_if_any()
