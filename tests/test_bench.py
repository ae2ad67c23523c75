"""esr.bench protocol and the `esr bench` command (tiny shapes, few runs, no timed assertions)."""
from __future__ import annotations

import importlib.util

import json

import numpy as np
import pytest

from esr.bench import Timing, machine_info, time_runs
from esr.cli import main


def test_time_runs_calls_warmup_plus_runs_and_summarises_its_own_times():
    calls = []
    timing = time_runs(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10
    assert timing.runs == 7 and timing.warmup == 3 and len(timing.times_ms) == 7
    assert timing.median_ms == pytest.approx(float(np.median(timing.times_ms)))
    assert timing.p90_ms == pytest.approx(float(np.percentile(timing.times_ms, 90)))
    assert timing.min_ms <= timing.median_ms <= timing.p90_ms <= max(timing.times_ms)


def test_timing_statistics_match_numpy_on_a_skewed_sample():
    times = [5.0, 1.0, 4.0, 2.0, 3.0, 100.0]
    timing = Timing.from_times(times, warmup=0)
    assert timing.median_ms == pytest.approx(float(np.median(times)))
    assert timing.p90_ms == pytest.approx(float(np.percentile(times, 90)))
    assert timing.mean_ms == pytest.approx(float(np.mean(times)))
    assert timing.min_ms == 1.0


@pytest.mark.parametrize("runs, warmup", [(0, 1), (3, -1)])
def test_time_runs_rejects_bad_counts(runs, warmup):
    with pytest.raises(ValueError):
        time_runs(lambda: None, runs=runs, warmup=warmup)


def test_machine_info_records_hardware_and_versions():
    info = machine_info()
    assert info["cpu"] and info["cores"] >= 1
    assert {"torch", "onnxruntime", "esr", "python"} <= set(info["versions"])


def _records(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_bench_all_backends_on_cpu_times_torch_and_onnxruntime(capsys):
    code = main(["bench", "--model", "rlfn_s_x4", "--backend", "all", "--shape", "1x3x16x16", "--shape", "1x3x20x24",
                 "--runs", "2", "--warmup", "1", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]  # --json: nothing else on stdout
    pairs = {(r["backend"], tuple(r["shape"])) for r in records}
    cpu_runtimes = ("torch", "onnxruntime") + (("openvino",) if importlib.util.find_spec("openvino") else ())
    assert pairs == {(b, s) for b in cpu_runtimes for s in ((1, 3, 16, 16), (1, 3, 20, 24))}
    for r in records:
        assert r["runs"] == 2 and r["warmup"] == 1 and len(r["times_ms"]) == 2
        assert min(r["times_ms"]) <= r["median_ms"] <= max(r["times_ms"])
        assert r["machine"]["cpu"] and r["device"] == "cpu" and r["precision"] == "fp32"
    if "tensorrt" not in {r["backend"] for r in records}:
        assert "skipped tensorrt" in captured.err


def test_bench_onnx_file_uses_onnxruntime_and_prints_a_table(tmp_path, capsys):
    from esr.archs.presets import build_model
    from esr.export.graph import build_deploy_graph

    graph = build_deploy_graph(build_model("rlfn_s", 2).eval(), "none", (1, 3, 12, 12), dynamic=False)
    path = graph.save(tmp_path / "m.onnx")
    assert main(["bench", "--model", str(path), "--shape", "1x3x12x12", "--runs", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "1x3x12x12" in out and "median ms" in out


@pytest.mark.parametrize("argv, message", [
    (["--precision", "int8"], "int8"),
    (["--backend", "torch", "--precision", "fp16"], "fp16 needs CUDA"),
    (["--runs", "0"], "--runs 0"),
])
def test_bench_refuses_what_it_cannot_measure(argv, message, capsys):
    code = main(["bench", "--model", "rlfn_s_x4", "--shape", "1x3x8x8", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err

