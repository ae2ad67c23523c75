"""Quantisation methods (the one registry, :data:`QUANT_METHODS`) and their range (clipping) functions.

A method is an activation range function (it takes :class:`TensorStats`, the exact min/max and
a random sample of the tensor's values over the calibration set, and returns the clipping range
``(lo, hi)`` of a uint8 grid), how weights are clipped (abs-max or an MSE search), and whether
softmax/GELU outputs get twin-uniform grids. Adding a method = its range function and one
:func:`quant_method` registration; ``esr quantize --method`` reads its choices and help from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from esr.quantize.grids import TwinGrid, activation_grid, twin_grid, weight_grid
from esr.registry import Registry

WeightClip = Literal["absmax", "mse"]


@dataclass(frozen=True)
class QuantMethod:
    """``activation_range(stats) -> (lo, hi)``; ``weight_clip``: abs-max or MSE-searched weight ranges;
    ``twin``: twin-uniform grids (PTQ4ViT) on softmax and GELU outputs."""

    name: str
    summary: str
    activation_range: Callable[["TensorStats"], tuple[float, float]]
    weight_clip: WeightClip = "absmax"
    twin: bool = False


QUANT_METHODS = Registry("quantisation method")
"""name -> :class:`QuantMethod`, in the order ``esr quantize --help`` lists them."""


def quant_method(name: str, summary: str, weight_clip: WeightClip = "absmax", twin: bool = False) -> Callable:
    """Decorator registering an activation range function as the method ``name``."""

    def register(fn: Callable) -> Callable:
        QUANT_METHODS.register(QuantMethod(name, summary, fn, weight_clip, twin), name=name)
        return fn

    return register


def methods_help() -> str:
    """``name: summary`` of every method, for ``--method`` help."""
    return "; ".join(f"{name}: {method.summary}" for name, method in QUANT_METHODS.items())

MSE_STEPS = np.linspace(0.2, 1.0, 41)
"""Fractions of the observed range tried by the MSE search."""


@dataclass
class TensorStats:
    """Running statistics of one activation tensor: exact extremes and a value sample."""

    minimum: float = float("inf")
    maximum: float = float("-inf")
    samples: list[np.ndarray] | None = None

    def update(self, values: np.ndarray, sample_size: int, rng: np.random.Generator) -> None:
        flat = values.reshape(-1)
        self.minimum = min(self.minimum, float(flat.min()))
        self.maximum = max(self.maximum, float(flat.max()))
        pick = flat if flat.size <= sample_size else flat[rng.integers(0, flat.size, sample_size)]
        self.samples = (self.samples or []) + [pick.astype(np.float32)]

    def values(self) -> np.ndarray:
        """The sample plus the exact extremes (so clipping them is always paid for)."""
        return np.concatenate(self.samples + [np.array([self.minimum, self.maximum], np.float32)])


@quant_method("minmax", "activation min/max")
def minmax_range(stats: TensorStats) -> tuple[float, float]:
    return stats.minimum, stats.maximum


@quant_method("percentile", "99.99th percentiles of activations")
def percentile_range(stats: TensorStats, percent: float = 99.99) -> tuple[float, float]:
    values = stats.values()
    return float(np.percentile(values, 100.0 - percent)), float(np.percentile(values, percent))


@quant_method("mse", "MSE-best activation and weight ranges", weight_clip="mse")
def mse_range(stats: TensorStats) -> tuple[float, float]:
    """The fraction of [min, max] whose uint8 grid gives the least squared error on the sample."""
    values = stats.values()
    errors = []
    for step in MSE_STEPS:
        grid = activation_grid(step * stats.minimum, step * stats.maximum)
        errors.append(float(np.mean((grid.fake_quant(values) - values) ** 2)))
    best = MSE_STEPS[int(np.argmin(errors))]
    return best * stats.minimum, best * stats.maximum


QUANT_METHODS.register(QuantMethod("twin-uniform", "mse plus twin-uniform grids on softmax/GELU outputs", mse_range,
                                   "mse", twin=True), name="twin-uniform")


def twin_search(kind: str, stats: TensorStats, max_shift: int = 10) -> TwinGrid:
    """PTQ4ViT twin-uniform search: ``delta_small = delta_large / 2**m`` (a shift in hardware).

    softmax: ``delta_large = 1/127`` (R2 covers [0, 1]); m searched by squared error.
    gelu: ``delta_large`` searched over fractions of max/127 jointly with m.
    """
    values = stats.values()
    if kind == "softmax":
        larges = [1.0 / 127.0]
    else:
        larges = [step * max(stats.maximum, 1e-6) / 127.0 for step in MSE_STEPS]
    best, best_error = None, float("inf")
    for large in larges:
        for shift in range(max_shift + 1):
            grid = twin_grid(kind, large / 2**shift, large)
            error = float(np.mean((grid.fake_quant(values) - values) ** 2))
            if error < best_error:
                best, best_error = grid, error
    return best


def weight_absmax(weight: np.ndarray, clip: WeightClip, bits: int) -> np.ndarray:
    """Per-output-channel clipping value of a (C_out, ...) weight: its abs-max, or the MSE-best fraction."""
    flat = weight.reshape(weight.shape[0], -1)
    absmax = np.abs(flat).max(axis=1)
    if clip != "mse":
        return absmax
    errors = []
    for step in MSE_STEPS:
        grid = weight_grid(step * absmax, bits, axis=0)
        errors.append(((grid.fake_quant(flat) - flat) ** 2).mean(axis=1))
    return absmax * MSE_STEPS[np.argmin(np.stack(errors), axis=0)]
