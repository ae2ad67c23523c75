"""OpenVINO runtime: parity with onnxruntime fp32 on Set5 LR, the shape policy, and one-line refusals."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'esr[openvino]')")

from esr.errors import EXIT_USAGE, EsrError  # noqa: E402
from esr.backends.openvino_runtime import COMPILED, OpenVINORunner, check_support  # noqa: E402
from esr.backends.sessions import ort_session  # noqa: E402
from esr.export.graph import build_deploy_graph  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


@pytest.fixture(scope="module")
def deploy_graph(tmp_path_factory):
    """RLFN-S x4 (embedded official weights), default deploy recipe, dynamic H/W."""
    return build_deploy_graph("rlfn_s_x4").save(tmp_path_factory.mktemp("ov") / "rlfn_s_x4.onnx")


@pytest.fixture(scope="module")
def set5_lr(shared) -> list[np.ndarray]:
    files = sorted((shared / "datasets" / "Set5" / "LR_bicubic" / "X4").glob("*.png"))
    assert len(files) == 5
    return [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255
            for p in files]


def skip_without_bf16() -> None:
    """Skip the calling test where OpenVINO's CPU device has no native bf16 (CI may lack AMX)."""
    try:
        check_support("cpu", "bf16")
    except EsrError as err:
        pytest.skip(f"no native bf16 here: {err}")


def bf16_runner_or_skip(deploy_graph) -> OpenVINORunner:
    """A bf16 runner of ``deploy_graph`` with the compiled-model cache emptied (skips without native bf16)."""
    skip_without_bf16()
    COMPILED.clear()
    return OpenVINORunner(deploy_graph, "cpu", "bf16", threads=1)


def test_fp32_matches_onnxruntime_on_set5(deploy_graph, set5_lr):
    session = ort_session(deploy_graph, threads=1)
    runner = OpenVINORunner(deploy_graph, "cpu", "fp32", threads=1)
    for x in set5_lr:
        expected = session.run(None, {"input": x})[0]
        actual = runner(x)
        assert actual.shape == expected.shape == (1, 3, x.shape[2] * 4, x.shape[3] * 4)
        assert float(np.abs(actual - expected).max()) <= 1e-4  # measured about 3e-6


def test_streamed_calls_from_two_threads_match_plain_calls(deploy_graph, set5_lr):
    """Two streams (a THROUGHPUT compilation, one request each) serve calls from two threads at once; each caller
    gets its own input's result, equal to a plain call's (measured bit for bit; the bound is the parity one).
    The first two calls arrive together on an empty cache: one compilation, built once (two OpenVINO builds at
    once deadlocked)."""
    from concurrent.futures import ThreadPoolExecutor

    COMPILED.clear()
    runner = OpenVINORunner(deploy_graph, "cpu", "fp32", threads=2,
                            output_shape=lambda shape: (shape[0], 3, shape[2] * 4, shape[3] * 4))
    assert runner.streams == 2 and OpenVINORunner(deploy_graph, "cpu", "fp32", threads=1).streams == 1
    builds, compile_once = [], runner._compile
    runner._compile = lambda shape, streams: builds.append((shape, streams)) or compile_once(shape, streams)
    inputs = set5_lr * 2  # five shapes: the dynamic compilation, then each shape's static one from its second call
    with ThreadPoolExecutor(2) as pool:
        streamed = [future.result(timeout=120) for future in [pool.submit(runner.run_streamed, x) for x in inputs]]
    assert builds.count((None, 2)) == 1 and len(builds) == len(set(builds)) == 6  # each built once
    plain = [runner(x) for x in inputs]
    for expected, actual in zip(plain, streamed):
        assert float(np.abs(actual - expected).max()) <= 1e-4
    streamed_compilations = [key for key in COMPILED.models if key[-2] == 2]
    assert streamed_compilations and all(COMPILED.models[key].free.qsize() == 2 for key in streamed_compilations)
    assert ov_compiled_streams(runner) == {1: "1", 2: "2"}


def ov_compiled_streams(runner: OpenVINORunner) -> dict[int, str]:
    """streams -> the NUM_STREAMS OpenVINO compiled for the runner's configuration (from a fresh compilation)."""
    import openvino as ov

    core = ov.Core()
    return {streams: str(core.compile_model(str(runner.path), "CPU", runner.config(streams)).get_property("NUM_STREAMS"))
            for streams in (1, runner.streams)}


def test_shape_seen_twice_gets_a_static_compilation(deploy_graph):
    COMPILED.clear()
    runner = OpenVINORunner(deploy_graph, "cpu", "fp32", threads=1)
    x = np.random.default_rng(0).random((1, 3, 24, 40), dtype=np.float32)
    first = runner(x)
    assert [key[-1] for key in COMPILED.models] == [None]  # the dynamic compilation
    second = runner(x)
    assert [key[-1] for key in COMPILED.models] == [None, (1, 3, 24, 40)]
    assert float(np.abs(first - second).max()) <= 1e-5
    runner(x)
    assert len(COMPILED.models) == 2  # reused, not compiled again


def test_results_written_in_place_stay_each_callers_own(deploy_graph):
    copying = OpenVINORunner(deploy_graph, "cpu", "fp32", threads=1)
    in_place = OpenVINORunner(deploy_graph, "cpu", "fp32", threads=1,
                              output_shape=lambda shape: (shape[0], 3, shape[2] * 4, shape[3] * 4))
    rng = np.random.default_rng(1)
    inputs = [rng.random((1, 3, 24, 40), dtype=np.float32), rng.random((1, 3, 16, 16), dtype=np.float32)]
    first = in_place(inputs[0])
    kept = first.copy()
    second = in_place(inputs[1])  # a smaller output: OpenVINO would reuse the first array if it were still set
    copied = copying(inputs[0])  # a runner without output shapes must not write into that array either
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)
    assert float(np.abs(first - copied).max()) <= 1e-6
    assert second.shape == (1, 3, 64, 64)


def test_refusals_are_one_line(monkeypatch, deploy_graph, tmp_path):
    import esr.backends.openvino_runtime as ovr

    class FakeCore:
        available_devices = ["CPU"]

        def get_property(self, device, name):
            assert name == "OPTIMIZATION_CAPABILITIES"
            return ["FP32", "INT8"]  # an AVX2 CPU: no BF16, no FP16

    monkeypatch.setattr(ovr, "ov_core", lambda: FakeCore())
    for device, precision, words in [("cpu", "bf16", "bf16 on CPU needs AMX-BF16 or AVX512-BF16"),
                                     ("cpu", "fp16", "fp16 on CPU needs AVX512-FP16"),
                                     ("gpu", "fp32", "no GPU device (OpenVINO sees: CPU)"),
                                     ("cuda", "fp32", "not an OpenVINO device")]:
        with pytest.raises(EsrError) as err:
            check_support(device, precision)
        assert words in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == EXIT_USAGE
    assert check_support("cpu", "int8") == "CPU"
    monkeypatch.undo()
    with pytest.raises(EsrError, match="no such file"):
        OpenVINORunner(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(EsrError, match="OpenVINO cannot read"):
        OpenVINORunner(bad)


def test_int8_qdq_graph_matches_onnxruntime_from_the_first_call(deploy_graph, set5_lr, shared, tmp_path):
    """OpenVINO's dynamic-shape INT8 ran QDQ graphs 5 dB off; the runner compiles INT8 for the static shape."""
    import onnx

    from esr.metrics import fidelity_psnr
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    config = QuantConfig(weight_type="s8", num_calib=4, crop_size=48, downscale=4)
    qdq, _ = quantize_onnx(onnx.load(str(deploy_graph)), str(shared / "datasets" / "T91"), config, progress=False)
    path = tmp_path / "int8.onnx"
    onnx.save(qdq, str(path))
    session = ort_session(path, threads=1)
    runner = OpenVINORunner(path, "cpu", "int8", threads=1)
    expected = [session.run(None, {"input": x})[0] for x in set5_lr]
    actual = [runner(x) for x in set5_lr]  # each shape's first call
    # measured: 42.7 dB (two INT8 runtimes round differently); a dynamic-shape compilation gave about 35 dB
    assert fidelity_psnr(expected, actual) >= 40.0


def test_bf16_split_of_the_image_conv_is_exact_in_f32_and_recovers_bf16_fidelity(deploy_graph):
    """The rewrite of :mod:`esr.backends.openvino_bf16`: the same function in f32; at bf16 (where the CPU has it)
    RLFN-S's output on the sample image moves from 52.0 to 57.4 dB vs fp32 (measured); about 2 s."""
    from esr.backends.openvino_bf16 import bf16_round, split_image_convs
    from esr.backends.openvino_runtime import ov_core
    from esr.metrics import fidelity_psnr
    from esr.sample import sample_batch

    weights = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    high = bf16_round(weights)
    assert np.array_equal(high, torch.from_numpy(weights).bfloat16().float().numpy())
    assert not np.array_equal(high, weights) and np.all(np.abs(weights - high) <= np.abs(weights) * 2.0 ** -8)

    x = sample_batch()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    plain = ov_core().read_model(str(deploy_graph))
    split = ov_core().read_model(str(deploy_graph))
    assert split_image_convs(split) == 1  # conv_1 only: every other conv reads features, not the image
    assert split_image_convs(split) == 0  # applied once: the conv reads 12 channels now
    reference = ov_core().compile_model(plain, "CPU", config)(x)[0]
    assert float(np.abs(ov_core().compile_model(split, "CPU", config)(x)[0] - reference).max()) <= 1e-5
    skip_without_bf16()
    bf16 = OpenVINORunner(deploy_graph, "cpu", "bf16", threads=1)
    assert fidelity_psnr([reference], [bf16(x)]) >= 56.0  # measured 57.2-57.4; without the split 52.0


def test_bf16_gives_the_same_output_on_every_call(deploy_graph):
    """At bf16 a static compilation rounds differently from the dynamic one (47 dB apart on noise), so every shape
    runs the dynamic one: an image comes out the same whatever ran before it. About 1 s."""
    runner = bf16_runner_or_skip(deploy_graph)
    x = np.random.default_rng(0).random((1, 3, 24, 40), dtype=np.float32)
    first, second = runner(x), runner(x)
    assert np.array_equal(first, second) and [key[-1] for key in COMPILED.models] == [None]


def test_sizes_read_upstream_let_biases_fuse_and_change_nothing(deploy_graph):
    """:mod:`esr.backends.openvino_shapes` on RLFN-S: each ESA block's ``ShapeOf`` (for its ``Resize``) now reads
    the 1x1 convolution ``c5``'s input, the same function in f32 (both compiled at fp32); about 1 s."""
    from esr.backends.openvino_runtime import ov_core
    from esr.backends.openvino_shapes import read_sizes_upstream

    plain = ov_core().read_model(str(deploy_graph))
    moved = ov_core().read_model(str(deploy_graph))
    assert read_sizes_upstream(moved) == 6  # six RLFB blocks, one ESA resize each
    assert read_sizes_upstream(moved) == 0  # the ShapeOfs now read a residual sum, not a convolution
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    x = np.random.default_rng(1).random((1, 3, 37, 29), dtype=np.float32)
    reference = ov_core().compile_model(plain, "CPU", config)(x)[0]
    assert reference.shape == (1, 3, 148, 116)
    assert float(np.abs(ov_core().compile_model(moved, "CPU", config)(x)[0] - reference).max()) <= 1e-5


def _shape_of_conv(kernel: int, stride: int, pad: int, index: int):
    """A model: conv (bias) -> ShapeOf -> Gather(index) -> output, beside the conv's own output."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 3, -1, -1], np.float32)
    weights = ops.constant(np.ones((5, 3, kernel, kernel), np.float32))
    conv = ops.convolution(x, weights, [stride, stride], [pad, pad], [pad, pad], [1, 1])
    biased = ops.add(conv, ops.constant(np.ones((1, 5, 1, 1), np.float32)))
    size = ops.gather(ops.shape_of(biased), ops.constant(np.array([index], np.int64)), ops.constant(np.int64(0)))
    return ov.Model([biased.output(0), size.output(0)], [x])


@pytest.mark.parametrize("kernel,stride,pad,index,moved", [
    (1, 1, 0, 2, 1), (3, 1, 1, 3, 1),  # H and W kept, a spatial entry read: moved
    (3, 1, 1, 1, 0),  # the channel entry is read (5 vs the input's 3): left alone
    (3, 2, 1, 2, 0), (3, 1, 0, 2, 0),  # H and W change: left alone
])
def test_sizes_move_upstream_only_where_they_are_the_same(kernel, stride, pad, index, moved):
    from esr.backends.openvino_runtime import ov_core
    from esr.backends.openvino_shapes import read_sizes_upstream

    model = _shape_of_conv(kernel, stride, pad, index)
    assert read_sizes_upstream(model) == moved
    x = np.random.default_rng(2).random((1, 3, 11, 13), dtype=np.float32)
    compiled = ov_core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = compiled(x)
    assert list(outputs[compiled.outputs[1]]) == [list(outputs[compiled.outputs[0]].shape)[index]]


def test_16_bit_outputs_read_as_float32():
    """bf16 and f16 output tensors arrive as 16-bit patterns; :func:`as_float32` gives their exact values."""
    import openvino as ov

    from esr.backends.openvino_runtime import as_float32

    values = torch.tensor([[0.0, 1.0, -2.5], [0.00390625, 1e-30, 65504.0]])
    bf16_bits = values.to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(as_float32(bf16_bits, ov.Type.bf16), values.to(torch.bfloat16).float().numpy())
    f16_bits = values.numpy().astype(np.float16).view(np.uint16)
    assert np.array_equal(as_float32(f16_bits, ov.Type.f16), values.numpy().astype(np.float16).astype(np.float32))
    assert as_float32(values.numpy(), None).dtype == np.float32


def test_bf16_output_tensor_is_the_f32_one_rounded_nowhere(deploy_graph):
    """At bf16 the output tensor is bf16 (the last layer computes in bf16 anyway): on RLFN-S the values are exactly
    those of an f32 output tensor, in both the copying and the in-place runner."""
    skip_without_bf16()
    x = np.random.default_rng(2).random((1, 3, 40, 56), dtype=np.float32)
    f32_output = OpenVINORunner(deploy_graph, "cpu", "bf16", threads=1)
    f32_output.output_type, f32_output.fingerprint = None, f"{f32_output.fingerprint} f32 output"
    expected = f32_output(x)
    copying = OpenVINORunner(deploy_graph, "cpu", "bf16", threads=1)
    in_place = OpenVINORunner(deploy_graph, "cpu", "bf16", threads=1,
                              output_shape=lambda shape: (shape[0], 3, shape[2] * 4, shape[3] * 4))
    for runner in (copying, in_place):
        actual = runner(x)
        assert actual.dtype == np.float32 and np.array_equal(actual, expected)




def test_bf16_shape_seen_often_moves_to_a_static_compilation_that_matches(deploy_graph, monkeypatch):
    """At the STATIC_AFTER_16_BIT-th sighting the static compilation is built and checked on that input; RLFN-S's
    matches bit for bit, so it runs the shape from then on and every call gives the same output. About 2 s."""
    from esr.backends import openvino_runtime

    monkeypatch.setattr(openvino_runtime, "STATIC_AFTER_16_BIT", 2)
    runner = bf16_runner_or_skip(deploy_graph)
    x = np.random.default_rng(3).random((1, 3, 24, 40), dtype=np.float32)
    first = runner(x)
    assert [key[-1] for key in COMPILED.models] == [None]
    second = runner(x)
    assert [key[-1] for key in COMPILED.models] == [None, (1, 3, 24, 40)]
    assert COMPILED.verdicts[(*runner.key(), (1, 3, 24, 40))] is True
    runner(np.zeros((1, 3, 16, 16), np.float32))  # another shape: the dynamic compilation, now most recent
    third = runner(x)
    assert list(COMPILED.models)[-1][-1] == (1, 3, 24, 40)  # the static one ran this call
    assert (first == second).all() and (second == third).all()


def test_bf16_static_compilation_that_differs_is_dropped_for_good(deploy_graph, monkeypatch):
    from esr.backends import openvino_runtime

    monkeypatch.setattr(openvino_runtime, "STATIC_AFTER_16_BIT", 2)
    monkeypatch.setattr(openvino_runtime.np, "array_equal", lambda a, b: False)  # as if it rounded differently
    runner = bf16_runner_or_skip(deploy_graph)
    x, y = (np.random.default_rng(4).random((1, 3, h, 32), dtype=np.float32) for h in (24, 28))
    outputs = [runner(x), runner(x), runner(x)]
    assert [key[-1] for key in COMPILED.models] == [None]  # built, checked, dropped
    assert COMPILED.verdicts[runner.key()] is False
    runner(y), runner(y)
    assert [key[-1] for key in COMPILED.models] == [None]  # no further tries for this configuration
    assert (outputs[0] == outputs[1]).all() and (outputs[1] == outputs[2]).all()
