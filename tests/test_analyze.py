"""esr.analyze: FLOP/byte counts, fusion, roofline, hardware profiles, the calibration fit, `esr analyze`."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from esr.analyze.calibrate import Measurement, fit_profile, match_kernels, profile_kernels, spearman
from esr.analyze.graph import Layer, analyze_graph
from esr.analyze.hardware import HardwareProfile, cpu_channel_block, datasheet_profiles, get_profile
from esr.analyze.roofline import computed_flops, predict, roofline_time, totals
from esr.archs.presets import build_model
from esr.bench import Timing
from esr.cli import main
from esr.complexity import count_macs
from esr.errors import EsrError
from esr.export.graph import build_deploy_graph


def conv_graph(cin: int = 4, cout: int = 8, size: int = 10, k: int = 3, activation: str | None = "Relu",
               extra_consumer: bool = False) -> onnx.ModelProto:
    """x (1, cin, size, size) -> Conv(k, pad same, bias) [-> activation] (-> also Add(conv, conv))."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.random((cout, cin, k, k), dtype=np.float32), "w"),
             numpy_helper.from_array(rng.random(cout, dtype=np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[k // 2] * 4)]
    outputs = ["c"]
    if activation:
        nodes.append(helper.make_node(activation, ["c"], ["a"], name="act"))
        outputs = ["a"]
    if extra_consumer:
        nodes.append(helper.make_node("Add", ["c", "c"], ["s"], name="add"))
        outputs.append("s")
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_layer_flops_bytes_and_fusion():
    layers = analyze_graph(conv_graph())
    assert len(layers) == 1
    layer = layers[0]
    assert layer.op == "Conv+Relu" and layer.key == "Conv3x3" and layer.nodes == ["conv", "act"]
    out = 1 * 8 * 10 * 10
    assert layer.flops == 2 * out * 4 * 9 + out  # MACs x 2, plus one op per ReLU output
    elements = 1 * 4 * 10 * 10 + 8 * 4 * 9 + 8 + out  # input, weight, bias, fused output (no intermediate)
    assert layer.bytes == 4 * elements
    assert analyze_graph(conv_graph(), "fp16")[0].bytes == 2 * elements
    assert analyze_graph(conv_graph(), "int8")[0].bytes == elements


def test_conv_feeding_two_consumers_is_not_fused():
    layers = analyze_graph(conv_graph(activation="Relu", extra_consumer=True))
    assert [layer.op for layer in layers] == ["Conv", "Relu", "Add"]


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="precision"):
        analyze_graph(conv_graph(), "fp8")


@pytest.mark.parametrize("preset", ["rlfn_s", "ditn_real"])
def test_graph_flops_match_torch_flop_counter(preset):
    """Conv/MatMul/Gemm FLOPs of the exported graph == 2 x FlopCounterMode MACs of the torch model."""
    model = build_model(preset, 2).eval()
    layers = analyze_graph(build_deploy_graph(model, "none", (1, 3, 16, 16), dynamic=False).model)
    dense = sum(layer.flops - _elementwise_flops(layer) for layer in layers
                if layer.key.startswith(("Conv", "DWConv")) or layer.key in ("MatMul", "Gemm"))
    assert dense == pytest.approx(2 * count_macs(model, 16, 16), rel=1e-6)


def _elementwise_flops(layer: Layer) -> float:
    """The FLOPs a fused activation adds to its convolution (one or four per output element)."""
    if "+" not in layer.op:
        return 0.0
    per_element = 4.0 if layer.op.split("+")[1] in ("Sigmoid", "Tanh") else 1.0
    return per_element * math.prod(layer.output_shape)


def _layer(flops: float, nbytes: float, key: str = "Conv3x3") -> Layer:
    return Layer(name=key, op=key, key=key, nodes=[key], outputs=[key], output_shape=[1], flops=flops,
                 bytes=nbytes, weight_bytes=0.0, anchor_op=key)


def _profile(**overrides) -> HardwareProfile:
    base = dict(name="toy", description="toy", peak_flops={"fp32": 1e12}, memory_bandwidth=1e11,
                kernel_overhead_s=0.0, source="test")
    return HardwareProfile(**{**base, **overrides})


def test_roofline_bound_and_calibrated_time():
    compute_layer, memory_layer = _layer(1e9, 1e6), _layer(1e6, 1e8, key="Add")  # 1 ms vs 1 us; 1 us vs 1 ms
    assert roofline_time(compute_layer, 1e12, 1e11) == (pytest.approx(1e-3), "compute")
    assert roofline_time(memory_layer, 1e12, 1e11) == (pytest.approx(1e-3), "memory")
    hw = _profile(efficiency={"Conv3x3": 0.5}, kernel_overhead_s=1e-5, byte_overhead=0.25)
    rows = predict([compute_layer, memory_layer], hw)
    assert rows[0].time_s == pytest.approx(1e-3 / 0.5 + 0.25 * 1e6 / 1e11 + 1e-5)
    assert rows[1].time_s == pytest.approx(1e-3 + 0.25 * 1e-3 + 1e-5)
    assert sum(r.share for r in rows) == pytest.approx(1.0)
    summary = totals(rows)
    assert summary["time_ms"] == pytest.approx(sum(r.time_s for r in rows) * 1e3)
    assert (summary["compute_bound_layers"], summary["memory_bound_layers"]) == (1, 1)


def test_datasheet_profiles_are_complete_and_cite_sources():
    profiles = datasheet_profiles()
    assert {"h100-sxm", "h200", "a100", "l4", "rtx3090", "rtx4090", "jetson-agx-orin", "orin-nano"} <= set(profiles)
    for profile in profiles.values():
        assert "datasheet" in profile.source.lower() or "whitepaper" in profile.source.lower()
        assert profile.memory_bandwidth > 1e10 and profile.kernel_overhead_s > 0
        assert profile.peak("fp16") > profile.peak("fp32") and profile.peak("int8") >= profile.peak("fp16")
    assert get_profile("h100").name == "h100-sxm"
    with pytest.raises(EsrError, match="unknown hardware profile"):
        get_profile("tpu-v9")


def test_fit_recovers_known_efficiencies_and_overhead():
    """Measurements synthesised from a known model are fitted back to it."""
    truth = _profile(efficiency={"Conv3x3": 0.6, "Add": 0.3}, kernel_overhead_s=2e-5)
    measurements = []
    for scale in (1.0, 4.0):
        layers = [_layer(2e8 * scale * (1 + i), 1e6 * scale) for i in range(4)]
        layers += [_layer(1e5 * scale, 4e6 * scale * (1 + i), key="Add") for i in range(3)]
        seconds = [row.time_s for row in predict(layers, truth)]
        total = Timing.from_times([sum(seconds) * 1e3], 0)
        measurements.append(Measurement(f"x{scale}", layers, seconds, 0.0, total))
    fused = _layer(1e5, 4e6, key="Erf")  # fused away by the runtime: never measured as its own kernel
    measurements[0].layers.append(fused)
    measurements[0].layer_s.append(0.0)
    fitted = fit_profile(_profile(), measurements)
    assert fitted.kept_fraction == {"Conv3x3": 1.0, "Add": 1.0, "Erf": 0.0}
    assert predict([fused], fitted)[0].time_s == 0.0
    assert fitted.efficiency["Conv3x3"] == pytest.approx(0.6, rel=0.05)
    assert fitted.efficiency["Add"] == pytest.approx(0.3, rel=0.05)
    assert fitted.kernel_overhead_s == pytest.approx(2e-5, rel=0.3)
    for m in measurements:
        predicted = sum(row.time_s for row in predict(m.layers, fitted))
        assert predicted == pytest.approx(m.total_s, rel=0.02)


def test_match_kernels_by_name_nchwc_output_and_fusion_prefix():
    layers = [Layer("conv", "Conv+Relu", "Conv3x3", ["conv", "act"], ["a"], [1], 1.0, 1.0, 0.0, "Conv", ["x"]),
              Layer("/blk/MatMul", "MatMul", "MatMul", ["/blk/MatMul"], ["m"], [1], 1.0, 1.0, 0.0, "MatMul", ["a"]),
              Layer("add", "Add", "Add", ["add"], ["s"], [1], 1.0, 1.0, 0.0, "Add", ["m"])]
    kernels = {"a_nchwc": ("Conv", 3e-3), "/blk/MatMul/MatmulTransposeFusion/": ("FusedMatMul", 2e-3),
               "add": ("Add", 1e-4), "ReorderOutput_token_3": ("ReorderOutput", 5e-5)}
    measured, unmatched = match_kernels(layers, kernels)
    assert measured == pytest.approx([3e-3, 2e-3, 1e-4])
    assert unmatched == pytest.approx(5e-5)


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a = list(rng.random(30))
    b = [x + 0.3 * y for x, y in zip(a, rng.random(30))]
    b[3] = b[4]  # a tie
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_analyze_cli_on_a_datasheet_profile_prints_every_layer_and_plots(tmp_path, cache, capsys):
    png = tmp_path / "roof.png"
    code = main(["analyze", "--model", "rlfn_s_x4", "--hw", "orin-nano", "--shape", "1x3x16x16", "--json",
                 "--plot", str(png), "--save-graph", str(tmp_path / "g.onnx")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    graph_layers = analyze_graph(onnx.load(str(tmp_path / "g.onnx")))
    assert len(report["layers"]) == len(graph_layers) == report["totals"]["layers"]
    assert {layer["bound"] for layer in report["layers"]} <= {"compute", "memory"}
    assert report["totals"]["time_ms"] == pytest.approx(sum(layer["time_ms"] for layer in report["layers"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyze", "--model", "rlfn_s_x4", "--hw", "h100", "--precision", "fp16", "--shape",
                 "1x3x16x16"]) == 0
    table = capsys.readouterr().out
    assert "h100-sxm" in table and "bound" in table and "predicted" in table


def test_analyze_cli_unknown_hardware_is_one_error_line(cache, capsys):
    assert main(["analyze", "--model", "rlfn_s_x4", "--hw", "tpu-v9", "--shape", "1x3x8x8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --hw tpu-v9")


def test_calibration_saves_a_fitted_local_profile(cache):
    from esr.analyze.calibrate import calibrate_local
    from esr.analyze.hardware import local_profile_path

    profile, measurements = calibrate_local(threads=1, presets=("rlfn_s",), shapes=((1, 3, 12, 12),), runs=2, warmup=1)
    assert local_profile_path().is_file()
    cached = get_profile("local", threads=1)
    assert cached.calibrated and cached.efficiency == profile.efficiency
    assert any(key.startswith("Conv") for key in cached.efficiency)
    assert measurements[0].total_s > 0 and sum(s > 0 for s in measurements[0].layer_s) > len(measurements[0].layers) / 2


def test_roofline_plot_stacks_identical_layers_and_keeps_classes_apart():
    from esr.analyze.graph import Layer
    from esr.analyze.hardware import get_profile
    from esr.analyze.plot import profile_kind, stacked, style_of
    from esr.analyze.roofline import predict

    conv = dict(op="Conv", key="Conv3x3", output_shape=[1, 52, 64, 64], flops=2e9, bytes=4e6)
    conv.update(nodes=[], outputs=[], weight_bytes=0.0)
    layers = [Layer(name=f"c{i}", **conv) for i in range(33)] + [Layer(name="x", **{**conv, "flops": 1e9})]
    hw = get_profile("h100")
    spots = stacked([row for row in predict(layers, hw, "fp16")])
    assert sorted(count for *_, count, _ in spots) == [1, 33]
    styles = [style_of(i) for i in range(96)]
    assert len(set(styles)) == 96
    # a class keeps its style between plots whatever else is in them; unknown classes stay distinct
    from esr.analyze.plot import style_indices

    one, other = style_indices(["Conv3x3", "Mul", "Resize"]), style_indices(["Resize", "Mul", "Zeta", "Alpha"])
    assert one["Mul"] == other["Mul"] and one["Resize"] == other["Resize"]
    assert len(set(other.values())) == 4
    assert "UNCALIBRATED" in profile_kind(hw) and not hw.calibrated


def test_channel_block_counts_dense_conv_channels_rounded_up():
    """52 -> 52 channels cost as 64 -> 64 in blocks of 16 (and 56 -> 56 in blocks of 8); 48 stays 48;
    a block of 1, and layers that are not dense convolutions, keep their FLOPs."""
    conv52 = analyze_graph(conv_graph(52, 52, activation=None))[0]
    conv48 = analyze_graph(conv_graph(48, 48, activation=None))[0]
    assert conv52.conv_channels == (52, 52) and conv48.conv_channels == (48, 48)
    assert computed_flops(conv52, 16) == pytest.approx(conv52.flops * (64 / 52) ** 2)
    assert computed_flops(conv52, 8) == pytest.approx(conv52.flops * (56 / 52) ** 2)
    assert computed_flops(conv48, 16) == computed_flops(conv48, 1) == conv48.flops
    add = _layer(1e6, 1e6, key="Add")
    assert computed_flops(add, 16) == add.flops
    hw = _profile()
    blocked = HardwareProfile(**{**hw.to_json(), "channel_block": 16})
    assert (predict([conv52], blocked)[0].roofline_s
            == pytest.approx(predict([conv52], hw)[0].roofline_s * (64 / 52) ** 2))
    assert predict([conv48], blocked)[0].roofline_s == predict([conv48], hw)[0].roofline_s


def test_cpu_channel_block_from_flags():
    assert cpu_channel_block(frozenset({"avx2", "avx512f", "fma"})) == 16
    assert cpu_channel_block(frozenset({"avx", "avx2"})) == 8
    assert cpu_channel_block(frozenset({"neon"})) == 1


def gelu_graph(channels: int = 6, size: int = 5) -> onnx.ModelProto:
    """x -> the exact GELU as torch exports it: x * (erf(x / sqrt 2) + 1) * 0.5."""
    consts = [numpy_helper.from_array(np.array(value, np.float32), name)
              for name, value in (("sqrt2", math.sqrt(2)), ("one", 1.0), ("half", 0.5))]
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"], name="/ffn/Div_1"),
             helper.make_node("Erf", ["d"], ["e"], name="/ffn/Erf"),
             helper.make_node("Add", ["e", "one"], ["p"], name="/ffn/Add_1"),
             helper.make_node("Mul", ["x", "p"], ["m"], name="/ffn/Mul_2"),
             helper.make_node("Mul", ["m", "half"], ["y"], name="/ffn/Mul_3")]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_exported_gelu_is_one_layer_matched_to_onnxruntimes_gelu_kernel():
    """onnxruntime fuses the five nodes into one kernel named ``Gelu`` (then ``Gelu_token_N``): one layer
    whose measured time is that kernel's, as onnxruntime's own profile of the graph names it."""
    model = gelu_graph()
    layers = analyze_graph(model)
    assert [(layer.op, layer.key) for layer in layers] == [("Gelu", "Gelu")] and len(layers[0].nodes) == 5
    elements = 6 * 5 * 5
    assert layers[0].flops == 8 * elements and layers[0].bytes == 4 * 2 * elements  # x in, y out
    kernels = profile_kernels(model, (1, 6, 5, 5), runs=2, warmup=1, threads=1)
    assert [op for op, _ in kernels.values()] == ["Gelu"]
    measured, unmatched = match_kernels(layers, kernels)
    assert measured[0] > 0 and unmatched == 0
    broken = gelu_graph()
    broken.graph.node[1].op_type = "Tanh"  # not a GELU any more: five layers
    assert len(analyze_graph(broken)) == 5
