#!/usr/bin/env bash
# Demo training run in the background: RLFN-S x4 from scratch on T91 + BSD200, 2 stages, Set5 validation.
# Usage (repo root): scripts/train_demo.sh [OPTIONS_YML] [KEY=VALUE ...]
# Log: experiments/<name>.out; curve: experiments/<name>/curve.json. Re-run the same command to resume.
set -euo pipefail
opt="${1:-options/demo_rlfn_s_x4.yml}"
shift || true
name="$(basename "$opt" .yml)"
mkdir -p experiments
# ESR_THREADS: torch threads (default 2, this CPU's cores). On a CPU shared with other jobs use 1:
# there 2 busy-waiting OpenMP threads ran a step 6-20x slower than 1.
threads="${ESR_THREADS:-2}"
export OMP_NUM_THREADS="$threads"
nohup esr train -opt "$opt" --threads "$threads" "$@" >> "experiments/${name}.out" 2>&1 &
echo "started pid $! (log: experiments/${name}.out)"
