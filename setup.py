"""Ships configs/ and samples/ inside the wheel (as findap_nemo/_shipped/), so that a non-editable install finds its
model presets, eval tasks, prompt templates and demo data (findap_nemo/shipped.py resolves them). Everything else
is declared in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithShippedFiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's own folders
            return
        for name in ("configs", "samples"):
            dst = Path(self.build_lib) / "findap_nemo" / "_shipped" / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(HERE / name, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
