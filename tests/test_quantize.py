"""esr.quantize: grids against hand-computed values and ONNX Runtime's own Q/DQ, QDQ models in onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from esr.backends.sessions import ort_session as session
from esr.quantize.graph import analyse
from esr.quantize.grids import activation_grid, twin_grid, weight_grid
from esr.quantize.qdq import activation_nodes
from esr.quantize.ranges import TensorStats, mse_range, percentile_range, twin_search
from esr.quantize.sublayer import group_absmax, reorder_channels


def run_ort_grid(grid, x: np.ndarray) -> np.ndarray:
    """Pass ``x`` through the QDQ nodes esr writes for ``grid``, executed by onnxruntime."""
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))], [])
    nodes, out = activation_nodes(graph, "x", grid)
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, list(x.shape)))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return session(model).run(None, {"x": x})[0]


def test_activation_grid_round_trip_hand_values():
    grid = activation_grid(-1.0, 1.55)  # scale 0.01, zero point 100
    assert float(grid.scale) == pytest.approx(0.01)
    assert int(grid.zero_point) == 100
    x = np.array([-2.0, -1.0, -0.004, 0.0, 0.015, 0.026, 1.5, 3.0], np.float32)
    expected = np.array([-1.0, -1.0, 0.0, 0.0, 0.02, 0.03, 1.5, 1.55], np.float32)  # 0.015 -> 1.5 steps -> even 2
    np.testing.assert_allclose(grid.fake_quant(x), expected, atol=1e-6)
    np.testing.assert_allclose(run_ort_grid(grid, x), expected, atol=1e-6)


def test_activation_grid_random_matches_onnxruntime():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 1000)) * 3).astype(np.float32)
    grid = activation_grid(-2.5, 7.0)
    mine = grid.fake_quant(x)
    np.testing.assert_allclose(run_ort_grid(grid, x), mine, atol=1e-6)
    assert len(np.unique(mine)) <= 256
    inside = (x > -2.5) & (x < 7.0)
    assert np.abs(mine - x)[inside].max() <= float(grid.scale) / 2 + 1e-6


def test_weight_grid_seven_bit_per_channel():
    weight = np.array([[0.63, -0.1, 0.005], [-1.26, 0.5, 0.0]], np.float32)
    grid = weight_grid(np.abs(weight).max(axis=1), bits=7, axis=0)
    np.testing.assert_allclose(grid.scale, [0.01, 0.02], rtol=1e-6)
    q = grid.quantize(weight)
    assert q.min() >= -64 and q.max() <= 63
    np.testing.assert_array_equal(q, [[63, -10, 0], [-63, 25, 0]])  # 0.005/0.01 = 0.5 -> even 0


def test_twin_softmax_two_ranges():
    grid = twin_grid("softmax", 1 / 1024, 1 / 127)
    assert grid.threshold == pytest.approx(128 / 1024)
    x = np.array([0.0, 0.001, 0.05, 0.1249, 0.125, 0.5, 1.0], np.float32)
    expected = np.array([0, 1 / 1024, 51 / 1024, 127 / 1024, 16 / 127, 64 / 127, 1.0], np.float32)
    np.testing.assert_allclose(grid.fake_quant(x), expected, atol=1e-7)
    np.testing.assert_allclose(run_ort_grid(grid, x), expected, atol=1e-7)


def test_twin_gelu_negative_fine_positive_coarse():
    grid = twin_grid("gelu", 0.17 / 128, 4.0 / 127)
    x = np.linspace(-0.17, 4.0, 2001).astype(np.float32)
    out = run_ort_grid(grid, x)
    np.testing.assert_allclose(out, grid.fake_quant(x), atol=1e-6)
    neg, pos = out[x < 0], out[x >= 0]
    np.testing.assert_allclose(neg / (0.17 / 128), np.rint(neg / (0.17 / 128)), atol=1e-3)
    np.testing.assert_allclose(pos / (4.0 / 127), np.rint(pos / (4.0 / 127)), atol=1e-3)
    assert np.abs(neg - x[x < 0]).max() <= 0.17 / 256 + 1e-6


def test_twin_search_beats_uniform_on_softmax_like_values():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((256, 64)) * 3
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    stats = TensorStats()
    stats.update(probs, 20000, rng)
    twin = twin_search("softmax", stats)
    uniform = activation_grid(0.0, float(probs.max()))
    assert np.mean((twin.fake_quant(probs) - probs) ** 2) < np.mean((uniform.fake_quant(probs) - probs) ** 2)


def test_range_methods_clip_outliers():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.standard_normal(100000), [200.0]]).astype(np.float32)
    stats = TensorStats()
    stats.update(values, values.size, rng)
    assert stats.maximum == 200.0
    assert percentile_range(stats)[1] < 10.0
    assert mse_range(stats)[1] < 200.0


def test_group_absmax_shares_group_maxima():
    absmax = np.array([0.1, 5.0, 0.2, 4.0, 0.3, 6.0], np.float32)
    shared, groups = group_absmax(absmax, 2)
    assert groups == [[0, 2], [3, 4], [1, 5]]
    np.testing.assert_allclose(shared, [0.2, 6.0, 0.2, 4.0, 4.0, 6.0])


def tiny_rlfn_onnx(tmp_path) -> onnx.ModelProto:
    """A dynamic plain (recipe none) deploy graph of a tiny random RLFN x2, with esr metadata."""
    from esr.archs.presets import build_model
    from esr.export.graph import build_deploy_graph

    torch.manual_seed(0)
    model = build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4).eval()
    return build_deploy_graph(model, recipe="none", shape=(1, 3, 32, 32), dynamic=True).model


def test_reorder_channels_keeps_function(tmp_path):
    model = tiny_rlfn_onnx(tmp_path)
    info = analyse(model)
    x = np.random.default_rng(3).random((1, 3, 24, 24), np.float32)
    before = session(info.model).run(None, {"input": x})[0]
    applied = reorder_channels(info, info.units)
    names = {name.split("block_1/")[-1] for name in applied}
    assert {"c1_r/Conv", "c2_r/Conv"} <= names
    assert "c3_r/Conv" not in names  # feeds the residual add
    c1 = next(u for u in info.units if u.name.endswith("block_1/c1_r/Conv"))
    weight = info.constant_array(c1.weight)
    order = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
    assert np.all(np.diff(order) >= 0)
    np.testing.assert_allclose(session(info.model).run(None, {"input": x})[0], before, atol=1e-4)


def write_images(folder, count: int = 2) -> None:
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(4)
    for index in range(count):
        ramp = np.linspace(0, 255, 48)[None, :, None] * np.ones((40, 1, 3))
        noise = rng.normal(0, 12, (40, 48, 3))
        cv2.imwrite(str(folder / f"img{index}.png"), np.clip(ramp + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("granularity", ["tensor", "channel", "sublayer"])
def test_calibrate_two_images_qdq_runs_and_fuses(tmp_path, granularity):
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    fp32 = tiny_rlfn_onnx(tmp_path)
    write_images(tmp_path / "calib")
    config = QuantConfig(method="percentile", granularity=granularity, num_calib=2, crop_size=32, group_size=4)
    qdq, report = quantize_onnx(fp32, str(tmp_path / "calib"), config, progress=False)
    ops = {n.op_type for n in qdq.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report["num_crops"] == 2 and all(u["int8"] for u in report["units"])
    path = tmp_path / "int8.onnx"
    onnx.save(qdq, str(path))
    sess = session(path, optimized_path=tmp_path / "optimized.onnx")
    fused = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "QLinearConv" in fused and "Conv" not in fused
    x = np.random.default_rng(5).random((1, 3, 20, 28), np.float32)
    reference = session(fp32).run(None, {"input": x})[0]
    out = sess.run(None, {"input": x})[0]
    assert out.shape == (1, 3, 40, 56)
    error = np.abs(out - reference)
    assert error.mean() < 0.05 * np.abs(reference).mean() and error.max() > 0  # quantised, yet close


def test_fallback_keeps_sensitive_layers(tmp_path):
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    write_images(tmp_path / "calib")
    config = QuantConfig(num_calib=2, crop_size=32, num_sensitivity=2, target_db=200.0, max_kept=2)
    qdq, report = quantize_onnx(tiny_rlfn_onnx(tmp_path), str(tmp_path / "calib"), config, progress=False)
    sens = {u["name"]: u["sensitivity_psnr_db"] for u in report["units"]}
    assert all(v is not None for v in sens.values())
    worst = sorted(sens, key=sens.get)[:2]
    trace = report["fallback_trace"]
    assert [t["kept"] for t in trace] == [0, 1, 2]  # target unreachable: the two most sensitive were tried
    best = max(trace, key=lambda t: t["output_psnr_db"])["kept"]
    assert set(report["kept_fp32"]) == set(worst[:best])  # ... and the best of those points is returned
    kept_units = [u for u in report["units"] if not u["int8"]]
    assert {u["name"] for u in kept_units} == set(worst[:best])


def test_ditn_twin_uniform_uses_where_on_softmax_and_gelu(tmp_path):
    from esr.archs.presets import build_model
    from esr.export.graph import build_deploy_graph
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    torch.manual_seed(0)
    model = build_model("ditn_real", 2, dim=12, num_itl=1, num_sal=1).eval()
    fp32 = build_deploy_graph(model, recipe="none", shape=(1, 3, 32, 32), dynamic=True).model
    info = analyse(fp32)
    assert {u.twin for u in info.units if u.twin} == {"softmax", "gelu"}
    write_images(tmp_path / "calib")
    qdq, report = quantize_onnx(fp32, str(tmp_path / "calib"), QuantConfig(method="twin-uniform", num_calib=2,
                                                                           crop_size=32), progress=False)
    wheres = [n for n in qdq.graph.node if n.op_type == "Where"]
    assert len(wheres) == sum(1 for u in info.units if u.twin)
    twins = [g for u in report["units"] for g in u["activations"].values() if g.get("twin")]
    assert twins and all(g["small"]["scale"] <= g["large"]["scale"] for g in twins)
    x = np.random.default_rng(6).random((1, 3, 16, 16), np.float32)
    out = session(qdq).run(None, {"input": x})[0]
    assert out.shape == (1, 3, 32, 32) and np.isfinite(out).all()


def test_cli_quantize_then_eval_onnx(tmp_path, capsys):
    from esr.cli import main

    fp32 = tmp_path / "tiny.onnx"
    onnx.save(tiny_rlfn_onnx(tmp_path), str(fp32))
    write_images(tmp_path / "calib")
    out = tmp_path / "tiny_int8.onnx"
    args = ["quantize", "--model", str(fp32), "--calib", str(tmp_path / "calib"), "--num-calib", "2",
            "--crop-size", "32", "--granularity", "sublayer", "--group-size", "4", "--out", str(out)]
    assert main(args) == 0
    report = __import__("json").loads(out.with_suffix(".json").read_text())
    assert report["config"]["granularity"] == "sublayer" and report["units"]
    before = out.read_bytes()
    capsys.readouterr()
    assert main(args) == 2  # no --overwrite: refused before any work (usage error), file kept
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
    assert out.read_bytes() == before
    assert main([*args[:4], str(tmp_path / "missing"), *args[5:-1], str(tmp_path / "other.onnx")]) != 0
    assert "missing" in capsys.readouterr().err
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "calib"), "--json"]) == 0
    result = __import__("json").loads(capsys.readouterr().out)
    assert main(["eval", "--model", str(fp32), "--data", str(tmp_path / "calib"), "--json"]) == 0
    reference = __import__("json").loads(capsys.readouterr().out)
    assert result["scale"] == reference["scale"] == 2  # read from the ONNX output shape
    assert abs(result["psnr_y"] - reference["psnr_y"]) < 1.0  # random weights: INT8 tracks the fp32 ONNX score


def test_fallback_returns_the_best_kept_set_when_the_target_is_missed(monkeypatch) -> None:
    from esr.quantize import sensitivity as sens

    units = {"a": 40.0, "b": 41.0, "c": 42.0}  # lone-unit PSNRs: a is the most sensitive
    whole = {frozenset("abc"): 30.0, frozenset("bc"): 36.0, frozenset("c"): 35.0, frozenset(): 99.0}
    monkeypatch.setattr(sens, "run_model", lambda enabled, crops, threads=0: whole[frozenset(enabled)])
    monkeypatch.setattr(sens, "fidelity_psnr", lambda reference, outputs: outputs)
    kept, trace = sens.choose_fallback(lambda enabled: enabled, units, [], [], None, 50.0, 2, progress=False)
    assert [t["output_psnr_db"] for t in trace] == [30.0, 36.0, 35.0]  # a, then b kept in fp32
    assert kept == {"a"}  # keeping b as well lowered the whole-model PSNR
    kept, trace = sens.choose_fallback(lambda enabled: enabled, units, [], [], None, 36.0, 2, progress=False)
    assert kept == {"a"} and len(trace) == 2  # target reached: stop there
