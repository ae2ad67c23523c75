"""scripts/gpu_check.py --dry-run: every section runs on the CPU without BasicSR (training skipped with the reason)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NO_BASICSR = ("import runpy, sys; sys.modules['basicsr'] = None; "  # any import of basicsr now fails
              "sys.argv = ['gpu_check.py', '--dry-run', '--out', sys.argv[1]]; "
              "runpy.run_path('scripts/gpu_check.py', run_name='__main__')")


def test_dry_run_without_basicsr(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", NO_BASICSR, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(next(tmp_path.glob("gpu_check_dry_*.json")).read_text())
    assert result["dry_run"] is True and result["machine"]["cpu"]
    for name in ("torch", "onnxruntime", "tensorrt", "analyze", "upscale", "training"):
        assert "error" not in result[name], (name, result[name])
    assert "BasicSR" in result["training"]["skipped"]
    fp32 = [row for row in result["torch"]["rows"] if row["precision"] == "fp32"]
    assert fp32 and all(row["median_ms"] > 0 and row["psnr_vs_fp32_db"] > 100 for row in fp32)
    assert result["onnxruntime"]["rows"][0]["median_ms"] > 0
    assert result["analyze"]["profile"] == "h200" and result["analyze"]["rows"]
    if importlib.util.find_spec("tensorrt") is None:
        assert "not importable" in result["tensorrt"]["skipped"]
