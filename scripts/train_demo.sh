#!/usr/bin/env bash
# Demo training run in the background: RLFN-S x4 from scratch on T91 + BSD200, 2 stages, Set5 validation.
# Usage (repo root): scripts/train_demo.sh [OPTIONS_YML] [KEY=VALUE ...]
# Log: experiments/<name>.out; curve: experiments/<name>/curve.json. Re-run the same command to resume.
set -euo pipefail
opt="${1:-options/demo_rlfn_s_x4.yml}"
shift || true
name="$(basename "$opt" .yml)"
mkdir -p experiments
export OMP_NUM_THREADS=1
nohup esr train -opt "$opt" --threads 1 "$@" >> "experiments/${name}.out" 2>&1 &
echo "started pid $! (log: experiments/${name}.out)"
