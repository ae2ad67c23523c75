"""ONNX export: parity with PyTorch (static/dynamic, odd sizes), graph form, TensorRT paths, esr export CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from esr import plugins
from esr.export.onnx_export import op_counts
from esr.export.pipeline import PARITY_TOL, run_export
from esr.export.trt_build import EXIT_NO_TENSORRT, EngineSpec, trtexec_command
from esr.export.trt_support import check_trt_support
from test_plugins import image_range_model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def set5_lr(shared):
    return shared / "datasets" / "Set5" / "LR_bicubic" / "X4"


def load_rlfn_x4(shared) -> torch.nn.Module:
    from esr.loading import load_model

    path = shared / "weights" / "rlfn" / "rlfn_x4.pth"
    if not path.is_file():
        pytest.skip(f"official RLFN weights not found at {path}")
    return load_model(str(path))


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("arch", ["rlfn_x4", "ditn_real_x4"])
def test_onnx_parity_on_real_images(shared, set5_lr, tmp_path, arch: str, dynamic: bool) -> None:
    model = load_rlfn_x4(shared) if arch == "rlfn_x4" else image_range_model("ditn_real")
    shape = (1, 3, 37, 53)  # odd: static graph at this size; dynamic traced here, run on Set5's own sizes
    report = run_export(model, tmp_path / "m.onnx", plugins.default_recipe(model), shape, dynamic,
                        parity_dir=set5_lr)
    assert "images from" in report.parity_source
    sizes = {key.rsplit("_", 1)[1] for key in report.parity}
    assert sizes == {"37x53"} if not dynamic else len(sizes) >= 3
    assert report.parity_max <= PARITY_TOL
    graph = onnx.load(str(tmp_path / "m.onnx"))
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == (["batch", 3, "height", "width"] if dynamic else [1, 3, 37, 53])
    assert report.support.ok


def test_dynamic_graph_runs_odd_and_batched_shapes(tmp_path) -> None:
    model = image_range_model("ditn_real")
    run_export(model, tmp_path / "d.onnx", plugins.default_recipe(model), (1, 3, 64, 64), True)
    assert_graph_matches_torch(tmp_path / "d.onnx", model, [(2, 3, 17, 9), (1, 3, 8, 31)])


def assert_graph_matches_torch(path: Path, model: torch.nn.Module, shapes: list[tuple[int, int, int, int]]) -> None:
    """The ONNX graph at ``path`` on onnxruntime equals ``model`` within PARITY_TOL on random inputs of ``shapes``."""
    from esr.backends.sessions import ort_session

    session = ort_session(path, threads=1)
    for shape in shapes:
        x = torch.rand(shape)
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() <= PARITY_TOL


def transposes_ok(graph: onnx.ModelProto) -> bool:
    """Every Transpose is the once-per-UFONE patch unfold/fold (rank 6) or feeds only a MatMul (k^T)."""
    consumers: dict[str, list[str]] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    for node in graph.graph.node:
        if node.op_type != "Transpose":
            continue
        perm = next(a.ints for a in node.attribute if a.name == "perm")
        if len(perm) != 6 and set(consumers.get(node.output[0], [])) != {"MatMul"}:
            return False
    return True


@pytest.mark.parametrize("preset", ["ditn", "ditn_real"])
def test_ditn_graph_form_and_node_counts(tmp_path, preset: str) -> None:
    model = image_range_model(preset)
    report = run_export(model, tmp_path / "g.onnx", plugins.default_recipe(model), (1, 3, 32, 32), False)
    after = onnx.load(str(tmp_path / "g.onnx"))
    assert op_counts(after) == report.ops_after
    assert "LayerNormalization" not in report.ops_after
    assert transposes_ok(after)
    assert sum(1 for n in after.graph.node if n.op_type == "Transpose" and len(n.attribute[0].ints) == 6) == 2
    # 16 norm affines fold into the next projections: Tanh's 1x1 convs, or LayerNorm's Mul/Add pairs
    if preset == "ditn_real":
        # minus 16 folded tanh 1x1 convs, plus 4 qkv Linears (MatMul/Gemm) that became 1x1 convs
        assert report.ops_before["Conv"] - report.ops_after["Conv"] == 16 - 4
        assert report.ops_after["Tanh"] == 16
    else:
        assert report.ops_after["ReduceMax"] == 16
    assert report.ops_before != report.ops_after and report.parity_ok


def test_trt_support_flags_unsupported_ops() -> None:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Unique", ["x"], ["u"]), helper.make_node("Gelu", ["u"], ["g"], domain="com.microsoft"),
             helper.make_node("Pad", ["g"], ["y"], mode="reflect")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    report = check_trt_support(helper.make_model(graph))
    assert not report.ok
    assert report.unsupported == {"Unique": 1, "com.microsoft::Gelu": 1}
    assert "Pad" in report.restricted and any("double" in d for d in report.dtypes)


def test_trtexec_command_carries_the_build(tmp_path) -> None:
    spec = EngineSpec(tmp_path / "m.onnx", tmp_path / "m.engine", (1, 3, 16, 16), (1, 3, 256, 256),
                      (1, 3, 720, 1280), precision="int8", workspace_mib=2048, timing_cache=tmp_path / "t.cache",
                      calib_cache=tmp_path / "c.cache")
    line = trtexec_command(spec)
    for part in ("--minShapes=input:1x3x16x16", "--optShapes=input:1x3x256x256", "--maxShapes=input:1x3x720x1280",
                 "--fp16", "--int8", f"--calib={tmp_path / 'c.cache'}", "--memPoolSize=workspace:2048M",
                 f"--timingCacheFile={tmp_path / 't.cache'}", f"--saveEngine={tmp_path / 'm.engine'}"):
        assert part in line.split()
    static = EngineSpec(tmp_path / "m.onnx", tmp_path / "m.engine", *(3 * [(1, 3, 64, 64)]))
    assert "Shapes" not in trtexec_command(static) and "--fp16" not in trtexec_command(static)


def test_cli_export_trt_without_tensorrt(shared, tmp_path, capsys) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed: the no-TensorRT path is not reachable")
    except ImportError:
        pass
    from esr.cli import main

    out = tmp_path / "sub" / "rlfn_s.onnx"
    rc = main(["export", "--opt", "1x3x24x24", "--onnx", str(out), "--trt", "--fp16"])
    captured = capsys.readouterr()
    assert rc == EXIT_NO_TENSORRT
    onnx.checker.check_model(onnx.load(str(out)))
    assert f"trtexec --onnx={out} --saveEngine={out.with_suffix('.engine')} --fp16" in captured.out
    assert "conv_fold" in captured.out and "parity onnxruntime vs PyTorch" in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "TensorRT is not installed" in errors[0]
    assert not out.with_suffix(".engine").exists()


def test_cli_export_bad_shape_is_one_line(capsys) -> None:
    from esr.cli import main

    assert main(["export", "--opt", "64xfoo"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --min/--opt/--max")


def test_tensorrt_engine_build_and_run(tmp_path) -> None:
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (it needs an NVIDIA GPU machine)")
    if not torch.cuda.is_available():
        pytest.skip("tensorrt imports but no CUDA device is available")
    import json

    from esr.archs.presets import build_model
    from esr.export.trt_build import build_engine
    from esr.export.trt_runner import TRTRunner
    from esr.loading import engine_sidecar

    model = build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1).eval()
    run_export(model, tmp_path / "t.onnx", ["conv_fold"], (1, 3, 32, 32), True)
    spec = EngineSpec(tmp_path / "t.onnx", tmp_path / "t.engine", (1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64),
                      timing_cache=tmp_path / "t.cache")
    sidecar = build_engine(spec, {"source_model": "tiny"})
    assert json.loads(engine_sidecar(spec.engine_path).read_text()) == sidecar
    assert spec.timing_cache.is_file()
    runner = TRTRunner(spec.engine_path)
    assert runner.profile_max_hw == (64, 64)
    x = torch.rand(2, 3, 21, 37)
    with torch.no_grad():
        expected = model(x)
    assert (runner(x.cuda()).cpu() - expected).abs().max() <= 1e-3
    assert np.abs(runner.run_host(x.numpy()) - expected.numpy()).max() <= 1e-3


def test_arch_crop_is_left_to_the_deploy_wrapper_and_small_inputs_stay_exact(tmp_path, monkeypatch) -> None:
    """Under the deploy wrapper the arch's own crop is not traced (a top-left crop of a top-left crop is the
    smaller one): RLFN-S's dynamic graph holds two Slice ops fewer than when the arch crops too, and still
    equals torch, also below ESA's 15 px minimum, where the wrapper pads the input."""
    import contextlib

    from esr.archs.padding import crop_to, cropped_by_caller
    from esr.export import onnx_export
    from esr.loading import open_model

    y = torch.rand(1, 3, 12, 10)
    with cropped_by_caller():
        assert crop_to(y, 4, 4) is y
    assert crop_to(y, 4, 5).shape == (1, 3, 4, 5)  # the flag is reset after the block
    model = open_model("rlfn_s_x4").module

    def slices(path: Path) -> int:
        run_export(model, path, plugins.default_recipe(model), (1, 3, 32, 32), True)
        return sum(node.op_type == "Slice" for node in onnx.load(str(path)).graph.node)

    fewer = slices(tmp_path / "r.onnx")
    monkeypatch.setattr(onnx_export, "cropped_by_caller", contextlib.nullcontext)
    assert slices(tmp_path / "both_crop.onnx") == fewer + 2
    assert_graph_matches_torch(tmp_path / "r.onnx", model, [(1, 3, 9, 13), (1, 3, 40, 23)])
