"""The auto selector's logic with fake candidates: the floor, the speed rule, the cache and its invalidation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from esr.autoselect import (EXACT_DB, REFERENCE, Candidate, Trial, auto_select, cache_path, choose, measure)
from esr.errors import EsrError

OV_BF16, OV_FP32, TORCH_BF16 = Candidate("openvino", "bf16"), Candidate("openvino", "fp32"), Candidate("torch", "bf16")
ORT_INT8 = Candidate("onnxruntime", "int8")


def trials(**rows: tuple) -> list[Trial]:
    """name -> (median ms, fidelity dB) or an error string."""
    named = {"ref": REFERENCE, "ov_bf16": OV_BF16, "ov_fp32": OV_FP32, "torch_bf16": TORCH_BF16, "int8": ORT_INT8}
    out = []
    for name, row in rows.items():
        out.append(Trial(named[name], error=row) if isinstance(row, str) else Trial(named[name], *row))
    return out


def test_picks_the_fastest_above_the_floor():
    table = trials(ref=(365, EXACT_DB), ov_fp32=(316, 130.0), ov_bf16=(81, 56.1), int8=(60, 39.2))
    decision = choose(table, min_fidelity_db=50.0)
    assert decision.chosen == OV_BF16  # int8 is faster but below the floor
    assert decision.speedup == pytest.approx(365 / 81)
    assert decision.line() == "auto: openvino bf16, 4.5x over onnxruntime fp32, 56.1 dB vs fp32"
    assert choose(table, min_fidelity_db=35.0).chosen == ORT_INT8  # a lower floor admits it
    verdicts = {row.split()[0] + " " + row.split()[1]: row for row in decision.table()[1:]}
    assert "below 50 dB" in verdicts["onnxruntime int8"] and "chosen" in verdicts["openvino bf16"]


def test_never_slower_than_the_reference_without_native_bf16():
    # an AVX2-only CPU: bf16 is emulated (slower), INT8 has no VNNI
    table = trials(ref=(300, EXACT_DB), ov_fp32=(320, 130.0), torch_bf16=(900, 56.0), int8=(450, 51.0))
    decision = choose(table)
    assert decision.chosen == REFERENCE and decision.speedup == 1.0
    assert decision.line() == "auto: onnxruntime fp32, 1.0x over onnxruntime fp32, exact"


def test_errors_are_skipped_and_reported():
    table = trials(ref=(300, EXACT_DB), ov_bf16="openvino backend: OpenVINO is not installed (pip install 'esr[openvino]')")
    decision = choose(table)
    assert decision.chosen == REFERENCE
    assert any("cannot run: openvino backend: OpenVINO is not installed" in line for line in decision.table())
    with pytest.raises(EsrError, match="no backend can run this model"):
        choose(trials(ref="broken", ov_bf16=(10, 20.0)))


def test_reference_stand_in_when_onnxruntime_cannot_run():
    """E.g. on CUDA without onnxruntime-gpu: the next reference in line (torch fp32) is used."""
    torch_fp32 = Candidate("torch", "fp32")

    def build(candidate: Candidate):
        if candidate == REFERENCE:
            raise EsrError("device cuda: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        return lambda x: x

    x = np.zeros((1, 3, 4, 4), np.float32)
    result, reference = measure([torch_fp32], build, x, x, references=(REFERENCE, torch_fp32), runs=1)
    assert reference == torch_fp32 and result[0].candidate == torch_fp32
    assert "onnxruntime-gpu" in next(t.error for t in result if t.candidate == REFERENCE)
    with pytest.raises(EsrError, match="no reference can run"):
        measure([], build, x, x, references=(REFERENCE,), runs=1)


def test_measure_scores_against_the_reference_and_times_only_eligible():
    """Fake runners: the output error sets the fidelity; a fake clock sets the times."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    errors = {REFERENCE: 0.0, OV_BF16: 1e-3, ORT_INT8: 3e-2}  # 60 dB and ~30 dB vs the reference
    cost_ms = {REFERENCE: 300.0, OV_BF16: 80.0, ORT_INT8: 50.0}
    clock_now = [0.0]
    calls: dict[Candidate, int] = {c: 0 for c in errors}

    def build(candidate: Candidate):
        if candidate == TORCH_BF16:
            raise EsrError("torch backend: bf16 on cpu needs AMX-BF16 or AVX512-BF16; this CPU has none")

        def run(x: np.ndarray) -> np.ndarray:
            calls[candidate] += 1
            clock_now[0] += cost_ms[candidate] / 1e3
            return 0.5 + errors[candidate] * noise

        return run

    sample, tile = np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 3, 16, 16), np.float32)
    result, reference = measure([OV_BF16, ORT_INT8, TORCH_BF16], build, sample, tile, min_fidelity_db=50.0,
                                warmup=1, runs=3, clock=lambda: clock_now[0])
    assert reference == REFERENCE
    by = {t.candidate: t for t in result}
    assert result[0].candidate == REFERENCE and by[REFERENCE].fidelity_db == EXACT_DB
    assert by[OV_BF16].fidelity_db == pytest.approx(60.0, abs=0.5)
    assert by[ORT_INT8].fidelity_db < 50.0 and by[ORT_INT8].median_ms is None  # below the floor: not timed
    assert calls[ORT_INT8] == 1  # the fidelity run only
    assert by[OV_BF16].median_ms == pytest.approx(80.0) and by[REFERENCE].median_ms == pytest.approx(300.0)
    assert "AVX512-BF16" in by[TORCH_BF16].error
    assert choose(result).chosen == OV_BF16


def test_cache_reuses_then_invalidates_on_version_change(tmp_path):
    key = {"model": "abc", "tile": [1, 3, 362, 362], "versions": {"openvino": "2026.4.1", "torch": "2.14.1"}}
    measured = []

    def run_measurements() -> tuple[list[Trial], Candidate]:
        measured.append(1)
        return trials(ref=(365, EXACT_DB), ov_bf16=(81, 56.1)), REFERENCE

    first = auto_select(key, run_measurements, cache_root=tmp_path)
    second = auto_select(key, run_measurements, cache_root=tmp_path)
    assert (first.chosen, second.chosen, len(measured)) == (OV_BF16, OV_BF16, 1)
    assert not first.cached and second.cached and second.line().endswith("(cached)")
    assert first.measure_s is not None and "(measured in " in first.line()
    stricter = auto_select(key, run_measurements, min_fidelity_db=60.0, cache_root=tmp_path)
    assert stricter.chosen == REFERENCE and len(measured) == 1  # re-chosen from the cached measurements
    upgraded = {**key, "versions": {**key["versions"], "openvino": "2026.5.0"}}
    auto_select(upgraded, run_measurements, cache_root=tmp_path)
    assert len(measured) == 2  # new versions: measured again
    # a cache file whose stored key differs (e.g. edited or a hash collision) is not trusted
    path = cache_path(key, tmp_path)
    data = json.loads(path.read_text())
    data["key"]["model"] = "other"
    path.write_text(json.dumps(data))
    auto_select(key, run_measurements, cache_root=tmp_path)
    assert len(measured) == 3


def test_int8_graph_reference_uses_the_agreement_floor():
    """On an esr quantize graph the candidates are runtimes of that graph: a looser floor, still above a wrong run."""
    from esr.autoselect import DEFAULT_MIN_FIDELITY_DB, INT8_AGREEMENT_DB, default_floor

    assert default_floor(REFERENCE) == DEFAULT_MIN_FIDELITY_DB
    assert default_floor(ORT_INT8) == INT8_AGREEMENT_DB < DEFAULT_MIN_FIDELITY_DB
    table = [Trial(ORT_INT8, 700, EXACT_DB), Trial(Candidate("openvino", "int8"), 300, 49.1)]
    assert choose(table, default_floor(ORT_INT8), reference=ORT_INT8).chosen == Candidate("openvino", "int8")
    wrong = [Trial(ORT_INT8, 700, EXACT_DB), Trial(Candidate("openvino", "int8"), 300, 34.8)]
    assert choose(wrong, default_floor(ORT_INT8), reference=ORT_INT8).chosen == ORT_INT8
