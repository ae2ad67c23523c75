"""Deploy-form modules the passes put into a model (inference only, ONNX/TensorRT friendly)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_EPS = 1e-12
"""``F.normalize``'s default epsilon, kept by the fused attention."""


class SafeChannelLayerNorm(nn.Module):
    """Channel LayerNorm on NCHW, exact in fp32 and overflow-free in fp16, without permutes.

    ``y = weight * (x - mu) / sqrt(var + eps) + bias`` over the channel axis, computed as::

        centred = x - mean_c(x)
        peak    = max(max_c |centred|, 1e-6)        # any positive divisor keeps it exact
        unit    = centred / peak                    # |unit| <= 1: unit**2 cannot overflow
        y       = unit * rsqrt(mean_c(unit**2) + (eps / peak) / peak)

    which equals the plain formula algebraically. The plain form squares ``x - mu``
    and overflows in fp16 once a deviation exceeds 256 (TensorRT issues 2781/2564/3657);
    opset-17 ``LayerNormalization`` normalises the *last* axis, so on NCHW it needs a
    Transpose pair around every norm. This form exports as ReduceMean/ReduceMax over
    axis 1 and elementwise ops only, all native in TensorRT 10 and onnxruntime.

    Args:
        channels: C. eps: variance epsilon. affine: keep ``weight``/``bias`` (C,); the
            ``affine_fold`` pass folds them into the next projection and clears this.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, eps: float, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        peak = centred.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)
        unit = centred / peak
        normed = unit * torch.rsqrt((unit * unit).mean(dim=1, keepdim=True) + (self.eps / peak) / peak)
        if self.weight is None:
            return normed
        return normed * self.weight[:, None, None] + self.bias[:, None, None]


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Reference ISA core: L2-normalise q, k over tokens, softmax(q k^T * t) v.

    Shapes: q, k, v (P, C, L); temperature broadcastable to (P, C, C) -> (P, C, L).
    """
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    return torch.softmax((q @ k.transpose(1, 2)) * temperature, dim=-1) @ v


def fused_channel_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """ISA core as four large ops: MatMul, Mul (norms and temperature), Softmax, MatMul.

    The L2 norms are applied to the (P, C, C) logits instead of to q and k:
    ``(q / |q|) (k / |k|)^T * t == (q k^T) * (t / |q|) * (1 / |k|)^T``, so q and k are
    never rescaled (equal to :func:`channel_attention` up to fp32 round-off).

    Shapes: q, k, v (P, C, L) -> (P, C, L).
    """
    inv_q = temperature / q.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)  # (P, C, 1)
    inv_k = 1.0 / k.norm(dim=-1).clamp_min(NORM_EPS)  # (P, C)
    logits = (q @ k.transpose(1, 2)) * (inv_q * inv_k.unsqueeze(1))
    return torch.softmax(logits, dim=-1) @ v


class DeployISA(nn.Module):
    """DITN's inner-patch attention in channel-major form: no token transposes.

    ``qkv`` is a 1x1 conv (C -> 3C, with bias) applied to the NCHW patches directly,
    so q, k, v come out as (P, C, L) slices of one tensor; ``fused`` selects
    :func:`fused_channel_attention` over the reference :func:`channel_attention`.

    Shapes: (P, C, p, p) -> (P, C, p, p).
    """

    def __init__(self, qkv: nn.Conv2d, project_out: nn.Conv2d, temperature: nn.Parameter, fused: bool) -> None:
        super().__init__()
        self.qkv = qkv
        self.project_out = project_out
        self.temperature = temperature
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3 * c, h * w).chunk(3, dim=1)
        attend = fused_channel_attention if self.fused else channel_attention
        return self.project_out(attend(q, k, v, self.temperature).reshape(n, c, h, w))


class DeploySDA(nn.Module):
    """DITN's SDA with its output ``scale`` folded into ``proj_last``.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, proj_first: nn.Conv2d, dconvs: nn.Sequential, proj_last: nn.Conv2d) -> None:
        super().__init__()
        self.proj_first = proj_first
        self.DConvs = dconvs
        self.proj_last = proj_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, value = self.proj_first(x).chunk(2, dim=1)
        return self.proj_last(value * self.DConvs(attn))

