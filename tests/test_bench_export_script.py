"""scripts/bench_export.py in CI size: both comparisons (with esr bench's own backend), tiny input, two rounds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_export_script_writes_paired_ratios(tmp_path, shared) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_export.py"), "--size", "32", "--repeats", "2",
                          "--warmup", "0", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["input"] == [1, 3, 32, 32] and result["rlfn_weights"] == "official rlfn_x4"
    for group, reference in (("ditn_real", "ditn_real/spandrel_eager"), ("rlfn_x4", "rlfn_x4/torch_channels_last")):
        rows = result[group]["backends"]
        assert result[group]["reference"] == reference and len(rows) == 5
        assert {"ort_default_recipe", "esr_bench_onnxruntime"} <= {name.split("/")[1] for name in rows}
        assert result[group]["bench_vs_export"]["paired_time_ratio_median"] > 0
        assert rows[reference]["speedup_vs_reference"] == 1.0 and rows[reference]["paired_speedup_median"] == 1.0
        for name, row in rows.items():
            assert len(row["runs_ms"]) == 2 and all(ms > 0 for ms in row["runs_ms"])
            assert 0 <= row["rounds_faster_than_reference"] <= 2
            assert name in run.stdout
