"""`findap-nemo doctor`: what this environment gives the project, in one glance.

Prints the versions of the stack that decides whether a job runs (torch, megatron-core, Transformer Engine, NVIDIA
apex, transformers) and whether CUDA, Transformer Engine and FP8 are usable here, each "no" with its reason. Run it
first inside a new container or after a `pip install`: the tested versions are listed in the README's setup
section. Nothing is imported beyond torch and (only when CUDA is usable) Transformer Engine.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

from findap_nemo import __version__

# distribution name -> what the line calls it
PACKAGES = {
    "torch": "torch",
    "megatron-core": "megatron-core",
    "transformer-engine": "transformer-engine",
    "apex": "apex",
    "transformers": "transformers",
    "datasets": "datasets",
    "triton": "triton",
}


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    from findap_nemo.runtime import has_apex

    import torch

    out = {name: _version(dist) for name, dist in PACKAGES.items()}
    out["torch"] = torch.__version__  # with its build tag: +cpu, +cu130, NVIDIA's nv25.xx
    if out["transformer-engine"] is None:  # wheels split into transformer-engine-cu12 / -cu13 + the torch part
        out["transformer-engine"] = _version("transformer-engine-torch") or _version("transformer_engine_cu12")
    if out["apex"] is not None and not has_apex():  # PyPI's unrelated `apex`, which shadows NVIDIA's
        out["apex"] = f"{out['apex']} (PyPI's apex, not NVIDIA's)"
    elif out["apex"] is None and has_apex():  # source builds in NVIDIA containers may lack metadata
        out["apex"] = "present"
    return out


def _cuda() -> tuple[bool, str]:
    import torch

    if torch.version.cuda is None:
        return False, "this torch is a CPU-only build"
    if not torch.cuda.is_available():
        return False, f"torch is built for CUDA {torch.version.cuda} but no GPU/driver is visible"
    name = torch.cuda.get_device_name(0)
    major, minor = torch.cuda.get_device_capability(0)
    return True, f"{torch.cuda.device_count()} x {name} (sm_{major}{minor}, CUDA {torch.version.cuda})"


def _transformer_engine(cuda: bool, installed: bool) -> tuple[bool, str]:
    from findap_nemo.runtime import has_transformer_engine

    if not installed:
        return False, "not installed (NVIDIA's PyTorch containers ship it; or `pip install findap-nemo[gpu]`)"
    if not cuda:
        return False, "installed, but needs CUDA"
    if not has_transformer_engine():
        return False, "installed, but `import transformer_engine.pytorch` fails"
    return True, "transformer_engine.pytorch imports"


def _fp8(te: bool) -> tuple[bool, str]:
    """Transformer Engine's own verdict (it knows the GPU architecture, CUDA and cuBLASLt it needs)."""
    if not te:
        return False, "needs Transformer Engine on a GPU"
    import transformer_engine.pytorch as te_pt

    if hasattr(te_pt, "is_fp8_available"):  # TE >= 2.8
        ok, reason = te_pt.is_fp8_available(return_reason=True)
    else:
        from transformer_engine.pytorch.fp8 import check_fp8_support

        ok, reason = check_fp8_support()
    return bool(ok), "supported" if ok else str(reason)


def report() -> dict:
    versions = _versions()
    cuda, cuda_why = _cuda()
    te, te_why = _transformer_engine(cuda, versions["transformer-engine"] is not None)
    fp8, fp8_why = _fp8(te)
    return {
        "findap-nemo": __version__,
        "python": platform.python_version(),
        "versions": versions,
        "cuda": {"usable": cuda, "detail": cuda_why},
        "transformer_engine": {"usable": te, "detail": te_why},
        "fp8": {"usable": fp8, "detail": fp8_why},
    }


def summary_line(rep: dict) -> str:
    v = rep["versions"]
    parts = [f"findap-nemo {rep['findap-nemo']}", f"python {rep['python']}"]
    parts += [f"{name} {v[name] or '-'}" for name in ("torch", "megatron-core", "transformer-engine", "apex",
                                                       "transformers")]
    parts += [f"{what} {'yes' if rep[key]['usable'] else 'no'}"
              for what, key in (("CUDA", "cuda"), ("TE", "transformer_engine"), ("FP8", "fp8"))]
    return " | ".join(parts)


def run(args) -> int:
    rep = report()
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(summary_line(rep))
    for name, version in rep["versions"].items():
        print(f"  {name:<20} {version or 'not installed'}")
    for what, key in (("CUDA", "cuda"), ("Transformer Engine", "transformer_engine"), ("FP8", "fp8")):
        print(f"  {what:<20} {'yes' if rep[key]['usable'] else 'no'}: {rep[key]['detail']}")
    sys.stdout.flush()
    return 0
