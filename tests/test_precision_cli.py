"""--precision and --backend auto through the CLI: one-line refusals (exit 2), auto's line, cache and table,
and the registered OpenVINO backend against onnxruntime fp32 on Set5 LR."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from esr.cli import main
from esr.errors import EXIT_USAGE

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

try:
    import openvino  # noqa: F401  (the optional esr[openvino] extra)
    HAVE_OPENVINO = True
except ImportError:
    HAVE_OPENVINO = False
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed (esr[openvino])")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("argv,words", [
    (["bench", "--backend", "torch", "--precision", "fp16"], "fp16 needs CUDA"),
    (["bench", "--backend", "torch", "--precision", "int8"], "QDQ graph"),
    (["bench", "--backend", "onnxruntime", "--precision", "bf16"], "bf16 on cpu is not available"),
    (["bench", "--backend", "onnxruntime", "--precision", "int8"], "esr quantize"),
    pytest.param(["bench", "--backend", "openvino", "--precision", "int8"], "int8 needs an INT8 QDQ graph",
                 marks=needs_openvino),
    (["export", "--precision", "bf16"], "runtime precision"),
    (["export", "--precision", "fp16"], "add --trt"),
])
def test_refused_precisions_are_one_line_exit_2(argv, words, capsys, cache, one_thread):
    assert main([*argv, "--shape", "1x3x16x16"] if argv[0] == "bench" else argv) == EXIT_USAGE
    assert words in one_error_line(capsys)


def test_bf16_refused_on_a_cpu_without_it(monkeypatch, capsys, cache):
    import esr.backends.openvino_runtime as ovr
    import esr.capabilities as caps

    monkeypatch.setattr(caps, "cpu_flags", lambda: frozenset({"avx2", "fma"}))

    class AVX2Core:  # what OpenVINO reports on an AVX2-only CPU
        available_devices = ["CPU"]

        def get_property(self, device, name):
            return ["FP32", "INT8"]

    monkeypatch.setattr(ovr, "ov_core", lambda: AVX2Core())
    for backend in ("torch", "openvino") if HAVE_OPENVINO else ("torch",):
        assert main(["bench", "--backend", backend, "--precision", "bf16", "--shape", "1x3x16x16"]) == EXIT_USAGE
        assert "AMX-BF16 or AVX512-BF16" in one_error_line(capsys)


def test_auto_measures_once_then_uses_the_cache(capsys, cache, one_thread):
    argv = ["bench", "--backend", "auto", "--shape", "1x3x24x24", "--runs", "1", "--warmup", "0", "--threads", "1"]
    assert main(argv) == 0
    first = capsys.readouterr()
    announced, line = [x for x in first.out.splitlines() if x.startswith("auto: ")][:2]
    assert announced.startswith("auto: measuring ") and "once for this model, machine and tile 24x24" in announced
    assert "over onnxruntime fp32" in line and "(measured in" in line
    assert "auto -> " in first.out
    files = list((cache / "auto").glob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["key"]["tile"] == [1, 3, 24, 24] and stored["reference"]["backend"] == "onnxruntime"
    labels = {t["candidate"]["backend"] + " " + t["candidate"]["precision"] for t in stored["trials"]}
    assert {"onnxruntime fp32", "torch fp32", "openvino fp32"} <= labels
    assert main(argv) == 0
    cached = [x for x in capsys.readouterr().out.splitlines() if x.startswith("auto: ")]
    assert len(cached) == 1 and cached[0].endswith("(cached)")  # no announcement: nothing is measured


def test_bench_all_prints_the_table_auto_chooses_from(capsys, cache, one_thread):
    assert main(["bench", "--precision", "all", "--shape", "1x3x24x24", "--runs", "1",
                 "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "candidate" in out and "chosen" in out and "onnxruntime fp32" in out
    assert "torch fp16" in out and "fp16 needs CUDA" in out  # refused candidates are listed with their reason
    assert out.strip().splitlines()[-1].startswith("auto: ")


def test_openvino_backend_matches_onnxruntime_on_set5(shared, one_thread):
    pytest.importorskip("openvino")
    from esr.backends import create_backend
    from esr.loading import open_model

    loaded = open_model("rlfn_s_x4")
    ort = create_backend("onnxruntime", loaded, "cpu", "fp32", threads=1)
    ov = create_backend("openvino", loaded, "cpu", "fp32", threads=1)
    assert (ov.precision, ov.max_hw, ov.descriptor.scale) == ("fp32", None, 4)
    for path in sorted((shared / "datasets" / "Set5" / "LR_bicubic" / "X4").glob("*.png")):
        x = torch.from_numpy(np.ascontiguousarray(cv2.imread(str(path))[..., ::-1].transpose(2, 0, 1)[None],
                                                  dtype=np.float32) / 255)
        expected, actual = ort(x), ov(x)
        assert actual.shape == expected.shape == (1, 3, x.shape[2] * 4, x.shape[3] * 4)
        assert float((actual - expected).abs().max()) <= 1e-4  # measured about 3e-6


def test_fp16_graph_for_onnxruntime_cuda_keeps_float32_io(cache):
    """The fp16 copy onnxruntime-gpu runs: fp16 weights, float32 input/output, descriptor says fp16 (CPU-checkable)."""
    import onnx

    from esr.backends.graph_cache import cached_deploy_graph, cached_fp16_graph
    from esr.descriptor import read_metadata
    from esr.loading import open_model

    fp32 = cached_deploy_graph(open_model("rlfn_s_x4"))
    half_path = cached_fp16_graph(fp32)
    assert cached_fp16_graph(fp32) == half_path  # made once
    half = onnx.load(str(half_path))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in half.graph.initializer)
    assert read_metadata(half).precision == "fp16" and read_metadata(onnx.load(str(fp32))).precision == "fp32"


def test_auto_is_the_default_of_upscale_and_the_python_api():
    import inspect

    from esr.api import get_upscaler
    from esr.cli import build_parser
    from esr.upscale_batch import BatchOptions

    parameters = inspect.signature(get_upscaler).parameters
    assert parameters["backend"].default == "auto" and parameters["precision"].default == "auto"
    assert (BatchOptions(inputs=[], outdir=".").backend, BatchOptions(inputs=[], outdir=".").precision) == ("auto", "auto")
    upscale = build_parser().parse_args(["upscale", "x.png", "-o", "out"])
    assert (upscale.backend, upscale.precision) == ("auto", "auto")
    evaluate = build_parser().parse_args(["eval", "--data", "d"])
    assert (evaluate.backend, evaluate.precision) == (None, None)  # eval measures the model: the fp32 reference
