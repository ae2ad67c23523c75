"""LASNet-style calibration of the latency model on this machine.

1. Micro-benchmarks give the peaks (:func:`esr.analyze.hardware.measure_local_profile`).
2. ONNX Runtime (the deploy runtime, in a session from :func:`esr.backends.sessions.ort_session`,
   the settings the onnxruntime backend runs with) profiles each calibration graph: per-kernel
   times, matched to the analysed layers.
3. Fit, per op class, an efficiency factor (``roofline / measured``, geometric median), the
   fraction of its layers the runtime runs as kernels of their own (the rest it fuses into
   neighbours, e.g. Erf/Div/Mul into Gelu) and a per-kernel overhead (grid search minimising
   the squared log error over all layers);
   then fit the end-to-end residual (kernels the runtime inserts, e.g. NCHWc layout
   reorders, and framework gaps) as a cost per byte moved plus a cost per kernel.
"""
from __future__ import annotations

import json
import math
import statistics
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from esr.analyze.graph import Layer
from esr.analyze.hardware import HardwareProfile
from esr.analyze.roofline import predict, roofline_time
from esr.backends.sessions import ort_session
from esr.bench import Timing, time_runs

KERNEL_SUFFIX = "_kernel_time"
NCHWC_SUFFIX = "_nchwc"
OVERHEAD_GRID_S = [0.0] + [10 ** (e / 4) * 1e-6 for e in range(0, 13)]  # 0 and 1 us .. 1 ms


@dataclass
class Measurement:
    """One profiled graph: per-layer measured seconds (0 where the runtime fused the layer away),
    seconds in kernels matching no layer, and the end-to-end timing without profiling."""

    label: str
    layers: list[Layer]
    layer_s: list[float]
    unmatched_s: float
    end_to_end: Timing

    @property
    def total_s(self) -> float:
        return self.end_to_end.median_ms / 1e3


def profile_kernels(model: onnx.ModelProto, shape: tuple[int, ...], runs: int = 10, warmup: int = 2,
                    threads: int = 0) -> dict[str, tuple[str, float]]:
    """ORT kernel name -> (op name, median seconds over ``runs`` profiled runs) for an input of ``shape``."""
    x = np.random.rand(*shape).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="esr-ort-prof-") as tmp:
        session = ort_session(model, threads=threads, profile_dir=tmp)
        name = session.get_inputs()[0].name
        for _ in range(warmup + runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith(KERNEL_SUFFIX):
            kernel = event["name"][: -len(KERNEL_SUFFIX)]
            durations.setdefault(kernel, []).append(event["dur"] * 1e-6)
            ops[kernel] = event["args"].get("op_name", "")
    return {k: (ops[k], statistics.median(v[-runs:])) for k, v in durations.items()}


def time_session(model: onnx.ModelProto, shape: tuple[int, ...], runs: int = 10, warmup: int = 2,
                 threads: int = 0) -> Timing:
    """End-to-end timing of the graph in an unprofiled ORT session."""
    x = np.random.rand(*shape).astype(np.float32)
    session = ort_session(model, threads=threads)
    name = session.get_inputs()[0].name
    return time_runs(lambda: session.run(None, {name: x}), runs, warmup)


ORT_FUSED_KERNELS = ("Gelu",)
"""Layer ops (:mod:`esr.analyze.graph` fusions) whose onnxruntime kernels are named after the op, not a node."""


def match_kernels(layers: list[Layer], kernels: dict[str, tuple[str, float]]) -> tuple[list[float], float]:
    """Per-layer measured seconds and the unmatched seconds.

    A kernel is matched by node name; a kernel onnxruntime fused and named after its op
    (:data:`ORT_FUSED_KERNELS`: ``Gelu``, ``Gelu_token_0``...) to the next layer of that op, in
    execution order (``kernels`` is in first-run order); then by the output tensor an NCHWc kernel is named after
    (``<tensor>_nchwc``; a convolution fused with the Add after it is booked on the
    convolution), or by the longest layer name it starts with (ORT fusion names).
    """
    by_node = {node: i for i, layer in enumerate(layers) for node in layer.nodes if node}
    by_output = {out: i for i, layer in enumerate(layers) for out in layer.outputs}
    fused_in_order = {op: deque(i for i, layer in enumerate(layers) if layer.op == op) for op in ORT_FUSED_KERNELS}
    measured = [0.0] * len(layers)
    unmatched = 0.0
    for kernel, (op, seconds) in kernels.items():
        index = by_node.get(kernel)
        if index is None and fused_in_order.get(op):
            index = fused_in_order[op].popleft()
        if index is None and kernel.endswith(NCHWC_SUFFIX):
            index = by_output.get(kernel[: -len(NCHWC_SUFFIX)])
            if index is not None and op == "Conv" and layers[index].anchor_op != "Conv":
                producers = [by_output.get(name) for name in layers[index].inputs]
                convs = [i for i in producers if i is not None and layers[i].anchor_op == "Conv"]
                index = convs[0] if convs else index
        if index is None:
            prefixes = [node for node in by_node if kernel.startswith(node + "/")]
            index = by_node[max(prefixes, key=len)] if prefixes else None
        if index is None:
            unmatched += seconds
        else:
            measured[index] += seconds
    return measured, unmatched


def _fit_efficiency(samples: list[tuple[str, float, float]], overhead: float) -> dict[str, float]:
    """Per key: geometric median of roofline / (measured - overhead) over (key, roofline s, measured s).

    Only layers whose roofline time is at least the overhead (and 1 us) count: a tiny layer's time
    is all overhead and says nothing about its op's throughput on real sizes.
    """
    ratios: dict[str, list[float]] = {}
    for key, roof, seconds in samples:
        if roof >= max(overhead, 1e-6):
            ratios.setdefault(key, []).append(math.log(roof / max(seconds - overhead, 0.05 * seconds)))
    return {key: math.exp(statistics.median(values)) for key, values in ratios.items()}


def _log_error(samples: list[tuple[str, float, float]], efficiency: dict[str, float], overhead: float) -> float:
    error = 0.0
    for key, roof, seconds in samples:
        predicted = roof / efficiency.get(key, 1.0) + overhead
        error += (math.log(max(predicted, 1e-9)) - math.log(seconds)) ** 2
    return error


def _fit_residual(rows: list[tuple[float, float, int, float]]) -> tuple[float, float]:
    """``(a, b) >= 0`` minimising the relative error of ``residual ~ a * memory_s + b * kernels``.

    ``rows``: (residual s, bytes / bandwidth s, kernel count, measured total s) per measurement.
    """
    best, best_error = (0.0, 0.0), math.inf
    for use_a, use_b in ((True, True), (True, False), (False, True)):
        design = np.array([[m * use_a / t, k * use_b / t] for _, m, k, t in rows])
        target = np.array([r / t for r, _, _, t in rows])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        if (coef < 0).any():
            continue
        error = float(((design @ coef - target) ** 2).sum())
        if error < best_error:
            best, best_error = (float(coef[0]), float(coef[1])), error
    return best


def fit_profile(base: HardwareProfile, measurements: list[Measurement], precision: str = "fp32") -> HardwareProfile:
    """``base`` (the measured peaks) with efficiencies and overheads fitted to ``measurements``."""
    peak, bandwidth = base.peak(precision), base.memory_bandwidth
    samples = []
    seen: dict[str, list[bool]] = {}
    for m in measurements:
        for layer, seconds in zip(m.layers, m.layer_s):
            seen.setdefault(layer.key, []).append(seconds > 0)
            if seconds > 0:
                samples.append((layer.key, roofline_time(layer, peak, bandwidth, base.channel_block)[0], seconds))
    kept = {key: sum(flags) / len(flags) for key, flags in seen.items()}
    fits = [(o, _fit_efficiency(samples, o)) for o in OVERHEAD_GRID_S]
    overhead, efficiency = min(fits, key=lambda fit: _log_error(samples, fit[1], fit[0]))
    trial = HardwareProfile(**{**base.to_json(), "efficiency": efficiency, "kernel_overhead_s": overhead,
                               "byte_overhead": 0.0, "kept_fraction": kept})
    rows = []
    for m in measurements:
        predicted = sum(row.time_s for row in predict(m.layers, trial, precision))
        memory_s = sum(layer.bytes for layer in m.layers) / bandwidth
        rows.append((m.total_s - predicted, memory_s, len(m.layers), m.total_s))
    byte_overhead, extra_kernel_s = _fit_residual(rows)
    calibration = {
        "graphs": [m.label for m in measurements], "per_layer_samples": len(samples),
        "per_layer_overhead_s": overhead, "extra_kernel_overhead_s": extra_kernel_s, "precision": precision,
        "runtime": "onnxruntime CPUExecutionProvider, esr.backends.sessions.ort_session settings",
    }
    return HardwareProfile(**{**trial.to_json(), "kernel_overhead_s": overhead + extra_kernel_s,
                              "byte_overhead": byte_overhead, "calibration": calibration})


def measure_graph(label: str, model: onnx.ModelProto, layers: list[Layer], shape: tuple[int, ...],
                  runs: int = 10, warmup: int = 2, threads: int = 0) -> Measurement:
    """Profile per kernel and time end to end (``runs`` each) one deploy graph on ``threads`` threads."""
    kernels = profile_kernels(model, shape, runs, warmup, threads)
    layer_s, unmatched = match_kernels(layers, kernels)
    return Measurement(label, layers, layer_s, unmatched, time_session(model, shape, runs, warmup, threads))


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation of two equal-length sequences (average ranks for ties)."""
    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        values_arr = np.asarray(values)
        for value in np.unique(values_arr):
            tied = values_arr == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


DEFAULT_SUITE = ("rlfn", "ditn_real")
"""Presets (x4, random weights: timing does not depend on weight values) profiled by ``--calibrate``."""
DEFAULT_SHAPES = ((1, 3, 64, 64), (1, 3, 160, 160))
"""Calibration input shapes, disjoint from the validation shapes (128, 256) of scripts/validate_analyze.py."""


def calibrate_local(threads: int, presets: tuple[str, ...] = DEFAULT_SUITE,
                    shapes: tuple[tuple[int, int, int, int], ...] = DEFAULT_SHAPES, runs: int = 10,
                    warmup: int = 2) -> tuple[HardwareProfile, list[Measurement]]:
    """Measure the micro-benchmarks, profile every preset x shape, fit, and cache the ``local`` profile."""
    from tqdm import tqdm

    from esr.analyze.graph import analyze_graph
    from esr.analyze.hardware import measure_local_profile, save_local_profile
    from esr.export.graph import build_deploy_graph
    from esr.loading import open_model

    base = measure_local_profile(threads)
    measurements = []
    jobs = [(preset, shape) for preset in presets for shape in shapes]
    for preset, shape in tqdm(jobs, desc="calibrating", unit="graph"):
        graph = build_deploy_graph(open_model(preset, 4, allow_untrained=True), shape=shape, dynamic=False)
        label = f"{preset}_x4 {shape[2]}x{shape[3]}"
        measurements.append(measure_graph(label, graph.model, analyze_graph(graph.model), shape, runs, warmup,
                                          threads))
    profile = fit_profile(base, measurements)
    save_local_profile(profile)
    return profile, measurements
