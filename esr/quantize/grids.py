"""Quantisation grids and their exact quantise-dequantise (the ONNX QuantizeLinear rules).

A uniform grid maps x to ``scale * (clip(rint(x / scale) + zp, qmin, qmax) - zp)``
(round half to even, as ONNX ``QuantizeLinear``). A twin-uniform grid (PTQ4ViT) uses two
uniform grids split at a threshold: a fine one for small values and a coarse one for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8 = (-128, 127)
UINT8 = (0, 255)


@dataclass(frozen=True)
class UniformGrid:
    """Affine grid: per-tensor (scalar) or per-channel (1-D, ``axis``) scale and zero point.

    ``qmin``/``qmax`` are the integer limits (int8 or uint8, possibly narrowed for reduced-range
    weights); ``signed`` selects the ONNX storage type (int8 vs uint8).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int
    axis: int | None = None

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    def _broadcast(self, value: np.ndarray, ndim: int) -> np.ndarray:
        if self.axis is None or value.ndim == 0:
            return value
        shape = [1] * ndim
        shape[self.axis] = -1
        return value.reshape(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float array -> integers on the grid (int32 array, saturated to [qmin, qmax])."""
        scale = self._broadcast(self.scale, x.ndim)
        zero = self._broadcast(self.zero_point, x.ndim)
        return np.clip(np.rint(x / scale) + zero, self.qmin, self.qmax).astype(np.int32)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        scale = self._broadcast(self.scale, q.ndim)
        zero = self._broadcast(self.zero_point, q.ndim)
        return ((q - zero) * scale).astype(np.float32)

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        """Quantise then dequantise: the value a QDQ pair produces."""
        return self.dequantize(self.quantize(x))

    def to_json(self) -> dict:
        return {"scale": np.asarray(self.scale).tolist(), "zero_point": np.asarray(self.zero_point).tolist(),
                "qmin": self.qmin, "qmax": self.qmax, "axis": self.axis}


def activation_grid(lo: float, hi: float) -> UniformGrid:
    """uint8 asymmetric grid covering [lo, hi] (widened to include 0 so zero is exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / (UINT8[1] - UINT8[0]), 1e-8)
    zero = int(np.clip(round(-lo / scale), *UINT8))
    return UniformGrid(np.float32(scale), np.uint8(zero), *UINT8)


def weight_grid(absmax: np.ndarray, bits: int = 8, axis: int | None = 0, unsigned: bool = False) -> UniformGrid:
    """Symmetric grid with ``2**(bits-1) - 1`` positive levels: int8 with zero point 0, or uint8 with 128.

    ``absmax`` is a scalar (per-tensor, ``axis`` ignored) or one value per output channel.
    ``bits=7`` keeps u8 x s8 pair sums inside int16 on AVX2 (no VPMADDUBSW saturation);
    ``unsigned`` (8 bits, u8 x u8 kernels) avoids the saturation without losing the bit.
    """
    qmax = 2 ** (bits - 1) - 1
    absmax = np.asarray(absmax, dtype=np.float32)
    scale = np.maximum(absmax / qmax, 1e-12).astype(np.float32)
    offset = 128 if unsigned else 0
    zero = np.full(scale.shape, offset, dtype=np.uint8 if unsigned else np.int8)
    return UniformGrid(scale, zero, offset - qmax - 1, offset + qmax, axis if absmax.ndim else None)


@dataclass(frozen=True)
class TwinGrid:
    """Twin-uniform grid: values below ``threshold`` use ``small`` (fine), the rest ``large``.

    For post-softmax values (in [0, 1]) both ranges are non-negative and the threshold is the
    top of the fine range; for post-GELU values the threshold is 0 and ``small`` holds the
    negative tail. Both grids are int8 with zero point 0: ``2**7`` levels per range.
    """

    small: UniformGrid
    large: UniformGrid
    threshold: float

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < self.threshold, self.small.fake_quant(x), self.large.fake_quant(x)).astype(np.float32)

    def to_json(self) -> dict:
        return {"twin": True, "threshold": self.threshold, "small": self.small.to_json(), "large": self.large.to_json()}


def twin_grid(kind: str, delta_small: float, delta_large: float) -> TwinGrid:
    """``kind`` "softmax": R1 = [0, 128 d1), R2 = [0, 127 d2]; "gelu": R1 = [-128 d1, 0), R2 = [0, 127 d2]."""
    small = UniformGrid(np.float32(delta_small), np.int8(0), *INT8)
    large = UniformGrid(np.float32(delta_large), np.int8(0), *INT8)
    threshold = 128.0 * float(np.float32(delta_small)) if kind == "softmax" else 0.0
    return TwinGrid(small, large, threshold)
