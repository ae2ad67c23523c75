"""Real-model checks on Set14 LR x4 with RLFN-S x4: tiling is seamless, backends agree, TensorRT fails clearly."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from esr.backends import create_backend
from esr.cli import main
from esr.errors import EsrError
from esr.loading import load_model
from esr.upscaler import Upscaler

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the legacy exporter's notes


@pytest.fixture(scope="module")
def set14_lr(shared) -> list[np.ndarray]:
    files = sorted((shared / "datasets" / "Set14" / "LR_bicubic" / "X4").glob("*.png"))
    assert len(files) == 14
    return [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in files]


@pytest.fixture(scope="module")
def model():
    return load_model("rlfn_s_x4")


@pytest.fixture(scope="module")
def torch_outputs(set14_lr, model) -> list[np.ndarray]:
    upscaler = Upscaler(create_backend("torch", model))
    return [upscaler.upscale_array(lr) for lr in set14_lr]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_tiled_matches_untiled_on_set14(set14_lr, model, torch_outputs):
    tiled = Upscaler(create_backend("torch", model), tile=64, tile_pad=16)
    assert all(tiled.tile_for(*lr.shape[:2]) == 64 for lr in set14_lr)
    scores = [psnr(tiled.upscale_array(lr), whole) for lr, whole in zip(set14_lr, torch_outputs)]
    assert all(np.isfinite(scores))  # every image really was cut into tiles (all are > 64 px)
    # measured: mean 52.3 dB, worst 45.3 dB (ppt3)
    assert np.mean(scores) >= 40.0, scores


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    from esr.export.graph import build_deploy_graph

    return build_deploy_graph(model, recipe="none").save(tmp_path_factory.mktemp("onnx") / "rlfn_s_x4.onnx")


def test_onnxruntime_matches_torch_on_set14(set14_lr, torch_outputs, onnx_path):
    backend = create_backend("onnxruntime", onnx_path)
    assert backend.descriptor.scale == 4 and backend.max_hw is None
    upscaler = Upscaler(backend)
    worst = max(np.abs(upscaler.upscale_array(lr).astype(int) - whole).max()
                for lr, whole in zip(set14_lr, torch_outputs))
    assert worst <= 2, worst


@pytest.mark.parametrize("height, width", [(3, 4), (7, 9), (10, 11), (14, 15)])
def test_onnxruntime_runs_inputs_below_the_arch_min_size(onnx_path, model, height, width):
    """RLFN's ESA needs 15 px (``min_size`` in the graph's metadata): the backend pads smaller tiles
    to it the way the torch model pads itself (a raw 10 px tile crashed onnxruntime)."""
    import torch

    backend = create_backend("onnxruntime", onnx_path)
    assert backend.descriptor.min_size == 15 and backend.descriptor.recipe == ()
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height))
    y = backend(x)
    assert tuple(y.shape) == (1, 3, 4 * height, 4 * width)
    with torch.no_grad():
        assert float((y - model(x)).abs().max()) <= 1e-4


def test_onnx_cache_key_follows_the_export_code(tmp_path):
    from esr.backends.graph_cache import exporter_sources, files_fingerprint

    names = {path.name for path in exporter_sources()}
    assert {"onnx_export.py", "padding.py", "rlfn_arch.py", "ditn_arch.py"} <= names
    source = tmp_path / "padding.py"
    source.write_text("MIN = 15\n")
    before = files_fingerprint([source])
    source.write_text("MIN = 16\n")
    assert files_fingerprint([source]) != before


def test_onnxruntime_exports_on_the_fly_into_the_cache(tmp_path, monkeypatch, set14_lr, torch_outputs):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path))
    backend = create_backend("onnxruntime", "rlfn_s_x4")
    cached = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    out = Upscaler(backend).upscale_array(set14_lr[0])
    assert np.abs(out.astype(int) - torch_outputs[0]).max() <= 2
    create_backend("onnxruntime", "rlfn_s_x4")
    assert list((tmp_path / "onnx").glob("*.onnx")) == cached  # reused, not exported again


def test_cli_runs_an_onnx_file(tmp_path, shared, onnx_path, torch_outputs, capsys):
    lr = sorted((shared / "datasets" / "Set14" / "LR_bicubic" / "X4").glob("*.png"))[0]
    code = main(["upscale", str(lr), "-o", str(tmp_path), "--model", str(onnx_path), "--backend", "onnxruntime",
                 "--quiet"])
    assert code == 0 and capsys.readouterr().out.splitlines()[-1] == "1 upscaled, 0 skipped, 0 failed"
    out = cv2.imread(str(tmp_path / f"{lr.stem}.png"))[..., ::-1]
    assert np.abs(out.astype(int) - torch_outputs[0]).max() <= 2


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_errors_clearly_without_tensorrt(tmp_path, capsys):
    with pytest.raises(EsrError) as info:
        create_backend("tensorrt", tmp_path / "model.engine", device="cuda")
    message = str(info.value)
    assert "TensorRT is not installed" in message and "--backend onnxruntime" in message and "\n" not in message
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 128, np.uint8))
    assert main(["upscale", str(image), "-o", str(tmp_path / "out"), "--backend", "tensorrt", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
