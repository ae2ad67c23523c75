#!/usr/bin/env bash
# Rerun every measurement the README and docs/ cite, on this machine, into docs/results/, then render the pages.
# Run from the repo root on an otherwise idle machine, with ../shared (or $ESR_SHARED) present.
# Parts, run in this order (default: all but "train", the two CPU training demos, about an hour together):
#   bash scripts/reproduce_docs.sh [quality] [speed] [auto] [upscale] [video] [scale] [archs] [analyze] [train] [int8]
set -euo pipefail
cd "$(dirname "$0")/.."
R=docs/results
parts="${*:-quality speed auto upscale video scale archs analyze int8}"
has() { [[ " $parts " == *" $1 "* ]]; }
step() { echo; echo "== $* ($(date +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"; }
# the official RLFN weights of ../shared, so zoo names load offline
export ESR_WEIGHTS_DIR="${ESR_WEIGHTS_DIR:-$(python -c 'from esr.paths import shared_dir; print(shared_dir())')/weights/rlfn}"

if has quality; then
  step "official checkpoints, Set5/Set14 Y-PSNR/SSIM"
  python scripts/eval_official.py --out $R/eval_official.json
  esr models --json > $R/models.jsonl
fi
if has speed; then
  step "backend x precision per model (RLFN x4, RLFN-S x4, DITN-Real x4)"
  python scripts/bench_precision.py --rounds 8 --out $R/bench_precision.json
  step "export recipes vs eager; esr bench on the .pth vs the exported graph"
  python scripts/bench_export.py --repeats 20 --out $R/bench_export.json
  step "training step, train.amp off/on"
  python scripts/bench_train_amp.py --iters 20 --warmup 3 --out $R/bench_train_amp.json
fi
if has auto; then
  step "auto through the CLI: Set14, Set5, INT8"
  python scripts/bench_auto.py --int8 --also-model rlfn_x4 --repeats 5 --out $R/bench_auto.json
fi
if has upscale; then
  step "esr upscale end to end, Set14 and a 4000x3000 photo"
  python scripts/bench_upscale.py --repeats 5 --out $R/bench_upscale.json
  step "PNG writing: esr's writer vs OpenCV's on Set14 x4 outputs"
  python scripts/bench_png.py --repeats 5 --out $R/bench_png.json
  step "OpenVINO tiles two at a time (streams) vs one at a time, in process, Set14 HR"
  python scripts/bench_streams.py --passes 5 --out $R/bench_streams.json
fi
if has video; then
  step "video: 10 s 320x180 pipeline vs --jobs 0; 60 s 640x360 peak RSS"
  python scripts/bench_video.py --seconds 10 --size 320x180 --out $R/bench_video.json
  python scripts/bench_video.py --seconds 60 --size 640x360 --repeats 1 --modes pipeline --skip-stages --out $R/bench_video_rss.json
fi
if has scale; then
  step "1 process vs shards vs Ray; 1 vs 2 gloo ranks"
  python scripts/bench_scale.py --out $R/bench_scale.json
fi
if has archs; then
  step "spandrel architectures: eager vs the best esr path"
  python scripts/bench_archs.py --threads 2 --runs 3 --warmup 1 --out $R/bench_archs.json
fi
if has analyze; then
  step "roofline validation on this CPU (calibrates the local profile)"
  python scripts/validate_analyze.py --out results/validate_analyze || echo "validate_analyze: outside its tolerance (the JSON says by how much)"
  cp results/validate_analyze/validate_analyze.json $R/validate_analyze.json
  step "roofline plots: RLFN x4 on h100 (datasheet) and local (calibrated)"
  esr analyze -n rlfn_x4 --hw h100 --precision fp16 --plot $R/roofline_rlfn_x4_h100.png --overwrite > /dev/null
  esr analyze -n rlfn_x4 --hw local --plot $R/roofline_rlfn_x4_local.png --overwrite > /dev/null
  step "GPU predictions (datasheet profiles, fp16, 1x3x256x256): totals only"
  : > $R/analyze_gpus.jsonl
  for hw in h100 orin-nano; do
    for model in rlfn_x4 rlfn_s_x4 ditn_real span; do
      esr analyze -n $model --hw $hw --precision fp16 --json \
        | python -c 'import json, sys; d = json.load(sys.stdin); d.pop("layers"); print(json.dumps(d))' >> $R/analyze_gpus.jsonl
    done
  done
fi
if has train; then
  step "CPU training demos (SPAN about 40 minutes, RLFN-S about 20 on a 2-core Xeon with AMX)"
  for demo in demo_span_x4 demo_rlfn_s_x4; do
    OMP_NUM_THREADS=2 esr train -opt options/$demo.yml --threads 2 >> experiments/$demo.out 2>&1
    python scripts/train_demo_curve.py experiments/$demo --out $R/train_curve_$demo.json
  done
fi
if has int8; then
  step "INT8 methods table (RLFN x4, RLFN-S x4; onnxruntime; not cited by the docs yet)"
  python scripts/quantize_table.py --models rlfn_x4,rlfn_s_x4 --repeats 10 --fresh --out results/quantize_table.json
fi
step "render"
python scripts/render_docs.py
