"""The files that ship beside the code: ``configs/`` (model presets, stage configs, eval tasks, prompt templates)
and ``samples/`` (the demo data and tokenizer). In a checkout or an editable install they are the repository's
folders; a wheel (``pip install .``) carries copies inside the package (``findap_nemo/_shipped/``, written by
setup.py), so presets, the eval task registry and the GenRM templates resolve from any working directory."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _root() -> Path:
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout
    return _PACKAGE / "_shipped"


ROOT = _root()
"""The folder holding configs/ and samples/: the repository, or the installed package's copy."""
