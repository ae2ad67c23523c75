"""fp32 ONNX -> calibrated QDQ INT8 ONNX plus a JSON-ready report."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from esr.backends.base import input_size
from esr.channels import array_to_channels
from esr.descriptor import ModelDescriptor, read_metadata, write_metadata
from esr.errors import EsrError
from esr.metrics import fidelity_psnr
from esr.quantize import GRANULARITIES, WEIGHT_TYPES
from esr.quantize.calibrate import collect_stats, load_crops
from esr.quantize.graph import analyse
from esr.quantize.grids import UniformGrid, activation_grid, weight_grid
from esr.quantize.qdq import Grid, build_qdq
from esr.quantize.ranges import QUANT_METHODS, QuantMethod, twin_search, weight_absmax
from esr.quantize.sensitivity import choose_fallback, run_model, unit_sensitivity
from esr.quantize.sublayer import group_absmax, reorder_channels


@dataclass
class QuantConfig:
    """Knobs of :func:`quantize_onnx` (the ``esr quantize`` options).

    method: a name in :data:`esr.quantize.ranges.QUANT_METHODS` (activation ranges, weight clipping,
        twin-uniform grids on softmax/GELU outputs).
    granularity: weight scales per tensor, per output channel, or per group of ``group_size``
        channels (sublayer).
    weight_type: "s7" (int8 storage, 7-bit levels: AVX2's u8 x s8 pair sums stay inside int16, no
        saturation), "s8" (full int8: VNNI CPUs, GPUs) or "u8" (uint8 with zero point 128: u8 x u8
        kernels, 8-bit levels without saturation, slower on AVX2).
    layer_budget_db / target_db / max_kept: mixed-precision fallback (see esr.quantize.sensitivity);
        None disables that rule.
    keep: regular expressions of node names forced to stay fp32.
    """

    method: str = "percentile"
    granularity: str = "channel"
    weight_type: str = "s7"
    group_size: int = 8
    num_calib: int = 32
    crop_size: int = 96
    """Calibration crop side; a static-shape graph is calibrated on crops of exactly its input size."""
    downscale: int = 1
    num_sensitivity: int = 4
    layer_budget_db: float | None = None
    target_db: float | None = None
    max_kept: int = 12
    keep: list[str] = field(default_factory=list)
    seed: int = 0
    threads: int = 0
    """CPU threads of the onnxruntime sessions (calibration, sensitivity, fidelity); 0: onnxruntime's default."""


def activation_grids(info, stats, method: QuantMethod) -> dict[str, Grid]:
    """Grid of every calibrated tensor; twin grids for softmax/GELU outputs when the method asks for them."""
    twin_kind = {u.outputs[0]: u.twin for u in info.units if u.twin}
    grids: dict[str, Grid] = {}
    for name, stat in stats.items():
        if method.twin and name in twin_kind:
            grids[name] = twin_search(twin_kind[name], stat)
        else:
            grids[name] = activation_grid(*method.activation_range(stat))
    for unit in info.units:  # graph order: chains of pass-through ops share one grid
        if unit.pass_through and isinstance(grids.get(unit.inputs[0]), UniformGrid):
            grids[unit.outputs[0]] = grids[unit.inputs[0]]
    return grids


def weight_grids(info, config: QuantConfig, reordered: dict[str, list[int]]) -> tuple[dict[str, UniformGrid], dict]:
    """Weight grid per weight initializer and per-unit granularity notes for the report."""
    grids, notes = {}, {}
    clip = QUANT_METHODS.get(config.method).weight_clip
    for unit in info.units:
        if unit.weight is None:
            continue
        weight = np.moveaxis(info.constant_array(unit.weight), unit.weight_axis, 0)
        bits, unsigned = WEIGHT_TYPES[config.weight_type]
        absmax = weight_absmax(weight, clip, bits)
        axis = unit.weight_axis % info.constant_array(unit.weight).ndim
        if config.granularity == "tensor":
            grids[unit.weight] = weight_grid(absmax.max(), bits, unsigned=unsigned)
            notes[unit.name] = {"granularity": "tensor"}
        elif config.granularity == "sublayer":
            shared, groups = group_absmax(absmax, config.group_size)
            grids[unit.weight] = weight_grid(shared, bits, axis, unsigned)
            notes[unit.name] = {"granularity": "sublayer", "groups": groups, "reordered": unit.name in reordered,
                                "contiguous": all(g == list(range(g[0], g[0] + len(g))) for g in groups)}
        else:
            grids[unit.weight] = weight_grid(absmax, bits, axis, unsigned)
            notes[unit.name] = {"granularity": "channel"}
    return grids, notes


def static_input_hw(model: onnx.ModelProto) -> tuple[int, int] | None:
    """(H, W) of the graph's input when both are fixed numbers (a static-shape export), else None."""
    from esr.loading import graph_input_dims

    try:
        height, width = graph_input_dims(model)[2:]
    except ValueError as err:
        raise EsrError(f"quantize: {err}") from None
    return (height, width) if isinstance(height, int) and isinstance(width, int) else None


def input_channels(model: onnx.ModelProto) -> int:
    """The channel count of the graph's image input (3 when it is symbolic)."""
    from esr.loading import graph_input_dims

    channels = graph_input_dims(model)[1]
    return channels if isinstance(channels, int) else 3


def quantize_onnx(model: onnx.ModelProto, calib_dir: str, config: QuantConfig, progress: bool = True,
                  descriptor: ModelDescriptor | None = None) -> tuple[onnx.ModelProto, dict]:
    """Calibrate on LR crops of ``calib_dir`` and return (QDQ model, report).

    The model must map one float NCHW image in [0, 1] to one output image (any esr export). A
    static-shape graph is calibrated on crops of its input size (smaller images reflect-padded);
    crops are converted to the graph's input channels (:mod:`esr.channels`).
    The QDQ model carries ``descriptor`` (default: the input graph's esr metadata) with precision int8.
    """
    if config.method not in QUANT_METHODS:
        raise EsrError(f"unknown method {config.method!r} (known: {', '.join(QUANT_METHODS)})")
    if config.granularity not in GRANULARITIES:
        raise EsrError(f"unknown granularity {config.granularity!r} (known: {', '.join(GRANULARITIES)})")
    if config.weight_type not in WEIGHT_TYPES:
        raise EsrError(f"unknown weight type {config.weight_type!r} (known: {', '.join(WEIGHT_TYPES)})")
    info = analyse(model)
    reordered = reorder_channels(info, info.units) if config.granularity == "sublayer" else {}
    for name in ("num_calib", "crop_size", "downscale", "group_size", "num_sensitivity"):
        if getattr(config, name) < 1:
            raise EsrError(f"{name} {getattr(config, name)}: must be >= 1")
    descriptor = descriptor or read_metadata(model)
    fixed_hw = static_input_hw(model)
    min_side = descriptor.min_size if descriptor is not None else 1
    if fixed_hw is None and config.crop_size < min_side:
        raise EsrError(f"crop size {config.crop_size}: below the model's minimum input side {min_side}")
    crop_hw = fixed_hw or (config.crop_size, config.crop_size)
    if fixed_hw is None and descriptor is not None:  # a square-input model: square crops
        crop_hw = input_size(descriptor, *crop_hw)
    crops = load_crops(calib_dir, config.num_calib, crop_hw, config.downscale, config.seed)
    crops = [array_to_channels(crop, input_channels(model)) for crop in crops]
    tensors = sorted({t for u in info.units for t in u.inputs + u.outputs})
    stats = collect_stats(info.model, tensors, crops, progress=progress, seed=config.seed, threads=config.threads)
    act = activation_grids(info, stats, QUANT_METHODS.get(config.method))
    weights, notes = weight_grids(info, config, reordered)

    def build(enabled: set[str]) -> onnx.ModelProto:
        return build_qdq(info, enabled, act, weights)

    forced = {u.name for u in info.units if any(re.search(p, u.name) for p in config.keep)}
    names = [u.name for u in info.units if u.name not in forced]
    sens_crops = crops[: config.num_sensitivity]
    reference = run_model(info.model, sens_crops, config.threads)
    sensitivity: dict[str, float] = {}
    trace: list[dict] = []
    kept = set(forced)
    if config.layer_budget_db is not None or config.target_db is not None:
        sensitivity = unit_sensitivity(build, names, sens_crops, reference, progress, config.threads)
        auto, trace = choose_fallback(build, sensitivity, sens_crops, reference, config.layer_budget_db,
                                      config.target_db, config.max_kept, progress, config.threads)
        kept |= auto
    enabled = {u.name for u in info.units} - kept
    quantised = build(enabled)
    fidelity = fidelity_psnr(reference, run_model(quantised, sens_crops, config.threads))
    units = []
    for unit in info.units:
        entry = {"name": unit.name, "op": unit.op, "int8": unit.name in enabled,
                 "sensitivity_psnr_db": sensitivity.get(unit.name),
                 "activations": {t: act[t].to_json() for t in unit.inputs + unit.outputs if t in act}}
        if unit.weight is not None:
            entry["weight"] = {**notes[unit.name], "type": config.weight_type, **weights[unit.weight].to_json()}
        units.append(entry)
    report = {
        "config": asdict(config), "calib_dir": str(calib_dir), "num_crops": len(crops), "crop_hw": list(crop_hw),
        "kept_fp32": sorted(kept, key=[u.name for u in info.units].index),
        "fallback_trace": trace, "output_psnr_vs_fp32_db": fidelity,
        "reordered_convs": reordered, "units": units,
    }
    if descriptor is not None:
        write_metadata(quantised, descriptor.replace(precision="int8"))
    return quantised, report
