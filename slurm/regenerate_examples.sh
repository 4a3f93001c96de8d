#!/usr/bin/env bash
# Re-render the example scripts in slurm/examples/ from the shipped configs (tests check they are current):
#   slurm/regenerate_examples.sh            # writes slurm/examples/*.sbatch
#   OUT=/tmp/x slurm/regenerate_examples.sh # writes elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-slurm/examples}
mkdir -p "$OUT"
PY=${PYTHON:-python}
COMMON=(environment.workdir=/shared/findap-nemo environment.python=/shared/venvs/findap/bin/python
        run_dir=/shared/runs/findap-8b resources.account=fin)
TRAIN=(train --config configs/train/llama3-8b-cpt-it-4node.yaml checkpoint.pretrained=/shared/runs/findap-8b/base_mcore
       data.manifest=/shared/runs/findap-8b/data/manifest.json model.tokenizer=/shared/models/Meta-Llama-3-8B-Instruct
       checkpoint.save=/shared/runs/findap-8b/train)
render() {  # drop the "# ===== name: sbatch ..." header the dry run prints before the script
  "$PY" -m findap_nemo.cli slurm submit --dry-run "$@" 2>/dev/null | tail -n +2
}
render --config configs/slurm/h100.yaml "${COMMON[@]}" resources.nodes=4 resources.time=1-00:00:00 \
  -- "${TRAIN[@]}" > "$OUT/train_llama3_8b_4node.sbatch"
render --config configs/slurm/h100.yaml "${COMMON[@]}" resources.nodes=4 resources.time=1-00:00:00 \
  'container.image=nvcr.io#nvidia/pytorch:25.01-py3' 'container.mounts=[/shared:/shared]' \
  -- "${TRAIN[@]}" > "$OUT/train_llama3_8b_4node_pyxis.sbatch"
echo "wrote $OUT/train_llama3_8b_4node.sbatch $OUT/train_llama3_8b_4node_pyxis.sbatch"
