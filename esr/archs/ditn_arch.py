"""DITN: Deployment-friendly Inner-patch Transformer Network (Liu et al., ACM MM 2023).

Two forms share one module tree and differ only in the normalisation slots
``conv1``/``conv2`` of every ITL and SAL layer:

* ``norm="tanh"`` (DITN-Real, the deployment form): :class:`TanhAffine`, i.e.
  ``W @ tanh(x) + B`` as a 1x1 conv with bias. The state dict is the official
  DITN-Real layout (the same as spandrel's ``DITN_Real``), keys and shapes identical.
* ``norm="layernorm"`` (DITN): :class:`ChannelLayerNorm` over channels. Its keys
  (``...conv1.weight``/``...conv1.bias``, shape ``(dim,)``) are ours: the official
  LayerNorm weights are not available.

Swapping one form for the other is a module replacement at ``conv1``/``conv2``;
it is not exact, a swapped model needs fine-tuning.

Module tree (``dim`` channels throughout the body)::

    sft                      3x3 conv, in_channels -> dim
    UFONE.{g}                unfold into patch_size x patch_size patches once,
      .ITLs.{i}              inner-patch transformer layers on the patches,
                             fold back once,
      .SALs.{j}              spatial-aware layers on the full map
    conv_after_body          3x3 conv, + sft (long residual)
    upsample.0 / .1          3x3 conv dim -> out_channels * s * s, PixelShuffle(s)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from esr.archs.padding import crop_to, pad_to_fit
from esr.descriptor import ModelDescriptor
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY

LAYERNORM_EPS = 1e-5
"""Variance epsilon of :class:`ChannelLayerNorm` (as in the DITN/Restormer LayerNorm)."""


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor, without permutes.

    ``y = weight * (x - mean_c(x)) / sqrt(var_c(x) + eps) + bias`` with the biased
    variance, per pixel; equal to ``F.layer_norm`` on the NHWC view.

    Args:
        channels: C. Parameters ``weight`` (C,) (init 1) and ``bias`` (C,) (init 0).
        eps: added to the variance (default 1e-5).

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, eps: float = LAYERNORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        var = centred.pow(2).mean(dim=1, keepdim=True)
        normed = centred * torch.rsqrt(var + self.eps)
        return normed * self.weight[:, None, None] + self.bias[:, None, None]


class TanhAffine(nn.Conv2d):
    """DITN-Real's LayerNorm replacement: ``tanh`` then a full 1x1 conv with bias.

    Parameters ``weight`` (C, C, 1, 1) and ``bias`` (C,), as in the official release.
    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.tanh(x))


NORMS: dict[str, type[nn.Module]] = {"tanh": TanhAffine, "layernorm": ChannelLayerNorm}


class FeedForward(nn.Module):
    """Gated-GELU FFN: 1x1 (C -> 2h), depthwise 3x3, GELU(first half) * second half, 1x1 (h -> C).

    ``h = int(channels * expansion)``. Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class ISA(nn.Module):
    """Inner-patch self-attention: single-head channel attention within each patch.

    q, k, v come from one Linear (C -> 3C, with bias) applied per pixel; q and k are
    L2-normalised along the token (pixel) axis; the C x C map is scaled by a learned
    ``temperature`` (1, 1, 1), softmaxed over its last axis and applied to v; then a
    1x1 ``project_out`` (bias only if ``bias``).

    Shapes: (P, C, p, p) patches -> (P, C, p, p).
    """

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(1, 1, 1))
        self.qkv = nn.Linear(channels, 3 * channels)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = x.reshape(n, c, h * w).transpose(1, 2)  # (P, L, C)
        q, k, v = self.qkv(tokens).transpose(1, 2).chunk(3, dim=1)  # each (P, C, L)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(1, 2)) * self.temperature, dim=-1)  # (P, C, C)
        return self.project_out((attn @ v).reshape(n, c, h, w))


class SDA(nn.Module):
    """Large-kernel spatial attention of the SAL.

    1x1 ``proj_first`` (C -> 2C) split into (a, x); ``DConvs`` on a: depthwise 5x5,
    depthwise 7x7 dilation 3, 1x1; then ``proj_last``(x * a) times a per-channel
    ``scale`` (1, C, 1, 1), initialised to 0 so each SAL starts as an identity.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.DConvs = nn.Sequential(
            nn.Conv2d(channels, channels, 5, padding=2, groups=channels),
            nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels),
            nn.Conv2d(channels, channels, 1),
        )
        # Single-conv Sequentials keep the official ``proj_first.0`` / ``proj_last.0`` keys.
        self.proj_first = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1))
        self.proj_last = nn.Sequential(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, value = self.proj_first(x).chunk(2, dim=1)
        return self.proj_last(value * self.DConvs(attn)) * self.scale


class ITL(nn.Module):
    """Inner-patch transformer layer: ``x + ISA(conv1(x))``, then ``x + FFN(conv2(x))``.

    ``conv1``/``conv2`` are the normalisation slots (:class:`TanhAffine` or
    :class:`ChannelLayerNorm`). Shapes: (P, C, p, p) -> (P, C, p, p).
    """

    def __init__(self, channels: int, ffn_expansion: float, bias: bool, norm: str) -> None:
        super().__init__()
        # Registration order follows the official release, so state-dict key order matches too.
        self.attn = ISA(channels, bias)
        self.conv1 = NORMS[norm](channels)
        self.conv2 = NORMS[norm](channels)
        self.ffn = FeedForward(channels, ffn_expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.conv1(x))
        return x + self.ffn(self.conv2(x))


class SAL(nn.Module):
    """Spatial-aware layer: ``x + SDA(conv1(x))``, then ``x + FFN(conv2(x))``.

    Same normalisation slots as :class:`ITL`. Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, ffn_expansion: float, bias: bool, norm: str) -> None:
        super().__init__()
        self.SDA = SDA(channels)
        self.ffn = FeedForward(channels, ffn_expansion, bias)
        self.conv1 = NORMS[norm](channels)
        self.conv2 = NORMS[norm](channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.SDA(self.conv1(x))
        return x + self.ffn(self.conv2(x))


class UFONE(nn.Module):
    """Unfolding ONce is Enough: ITLs on non-overlapping patches, then SALs on the whole map.

    The map is cut into ``patch_size`` x ``patch_size`` patches once before the ITLs
    and stitched back once after them.

    Shapes: (N, C, H, W) -> (N, C, H, W); H and W must be multiples of ``patch_size``.
    """

    def __init__(
        self, channels: int, num_itl: int, num_sal: int, patch_size: int,
        ffn_expansion: float, bias: bool, norm: str,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.ITLs = nn.Sequential(*(ITL(channels, ffn_expansion, bias, norm) for _ in range(num_itl)))
        self.SALs = nn.Sequential(*(SAL(channels, ffn_expansion, bias, norm) for _ in range(num_sal)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch_size
        rows, cols = h // p, w // p
        # (N, C, rows, p, cols, p) -> (N * rows * cols, C, p, p), patches in row-major order.
        patches = x.reshape(n, c, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)
        patches = self.ITLs(patches)
        x = patches.reshape(n, rows, cols, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
        return self.SALs(x)


@ARCH_REGISTRY.register()
class DITN(nn.Module):
    """DITN / DITN-Real super-resolution network.

    Defaults are DITN-Real x4 (0.444 M parameters). Keyword names map onto
    spandrel's ``DITN_Real`` as: in_channels = inp_channels, num_itl = ITL_blocks,
    num_sal = SAL_blocks, num_ufone = UFONE_blocks, ffn_expansion =
    ffn_expansion_factor, bias, patch_size, upscale (its unused LayerNorm_type is
    replaced by ``norm``).

    Args:
        in_channels: image channels in (3 for RGB).
        out_channels: image channels out (DITN-Real: 3, fixed there).
        dim: feature width of the body (60).
        num_ufone: number of UFONE groups (1).
        num_itl: inner-patch transformer layers per UFONE (4).
        num_sal: spatial-aware layers per UFONE (4).
        patch_size: side of the ITL patches (8); inputs are padded to a multiple of it.
        ffn_expansion: FFN hidden width as a multiple of ``dim`` (2; hidden = int(dim * it)).
        bias: biases on the attention ``project_out`` and the FFN convs (False in
            DITN-Real; the qkv Linear, SDA and norm convs always have biases).
        upscale: scale factor s (2, 3 or 4; 1 gives a same-size restoration net).
        norm: ``"tanh"`` for DITN-Real (tanh + 1x1 conv with bias, official state-dict
            layout) or ``"layernorm"`` for DITN (:class:`ChannelLayerNorm`, eps 1e-5).

    Shapes: (N, in_channels, H, W) in [0, 1] -> (N, out_channels, H * s, W * s) in
    [0, 1], unclamped; no mean shift or range scaling. Any H, W >= 1: the input is
    reflect-padded at the bottom/right to a multiple of ``patch_size`` inside
    ``forward`` and the output cropped back.
    """

    LIMITS = {  # checked by esr.limits before any model is allocated
        "in_channels": (1, 4), "out_channels": (1, 4), "dim": (1, 1024), "num_ufone": (1, 16),
        "num_itl": (0, 64), "num_sal": (0, 64), "patch_size": (1, 64), "ffn_expansion": (0.01, 16.0),
        "upscale": (1, 8),
    }

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 60,
        num_ufone: int = 1,
        num_itl: int = 4,
        num_sal: int = 4,
        patch_size: int = 8,
        ffn_expansion: float = 2,
        bias: bool = False,
        upscale: int = 4,
        norm: str = "tanh",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        self.upscale = upscale
        self.patch_size = patch_size
        self.hyperparams = dict(
            in_channels=in_channels, out_channels=out_channels, dim=dim, num_ufone=num_ufone,
            num_itl=num_itl, num_sal=num_sal, patch_size=patch_size, ffn_expansion=ffn_expansion,
            bias=bias, upscale=upscale, norm=norm,
        )
        self.sft = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.UFONE = nn.Sequential(*(
            UFONE(dim, num_itl, num_sal, patch_size, ffn_expansion, bias, norm) for _ in range(num_ufone)
        ))
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.upsample = nn.Sequential(
            nn.Conv2d(dim, out_channels * upscale**2, 3, padding=1), nn.PixelShuffle(upscale)
        )
        self.descriptor = ModelDescriptor(
            name="DITN", arch="DITN", scale=upscale, in_channels=in_channels, out_channels=out_channels,
            size_multiple=patch_size, pads_inside=True, purpose="SR" if upscale > 1 else "Restoration",
            hyperparams=dict(self.hyperparams),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x, _, _ = pad_to_fit(x, multiple=self.patch_size)
        shallow = self.sft(x)
        out = self.upsample(self.conv_after_body(self.UFONE(shallow)) + shallow)
        return crop_to(out, height * self.upscale, width * self.upscale)


def _count_indices(keys: set[str], prefix: str) -> int:
    """How many consecutive ``{prefix}.{i}.`` submodules (i = 0, 1, ...) the keys hold."""
    count = 0
    while any(key.startswith(f"{prefix}.{count}.") for key in keys):
        count += 1
    return count


@DETECTOR_REGISTRY.register(name="DITN")
def detect_ditn(state_dict: dict) -> tuple[str, dict] | None:
    """Read DITN hyperparameters from a state dict, or None if it is not DITN.

    Reads in/dim from ``sft``, the UFONE/ITL/SAL counts from the key indices, the
    norm form from the rank of ``conv1.weight`` (4-D 1x1 conv: tanh, 1-D: layernorm),
    ``bias`` and ``ffn_expansion`` from the FFN's ``project_in``, and the scale from
    the upsample conv (``out_channels * s * s`` outputs, ``out_channels`` assumed
    equal to ``in_channels``). ``patch_size`` is not stored in the weights: the
    DITN default 8 is returned; a checkpoint trained with another patch size must
    override it.
    """
    required = ("sft.weight", "conv_after_body.weight", "upsample.0.weight")
    if any(key not in state_dict for key in required):
        return None
    keys = set(state_dict)
    num_ufone = _count_indices(keys, "UFONE")
    if num_ufone == 0:
        return None
    num_itl = _count_indices(keys, "UFONE.0.ITLs")
    num_sal = _count_indices(keys, "UFONE.0.SALs")
    layer = "UFONE.0.ITLs.0" if num_itl else "UFONE.0.SALs.0"
    if f"{layer}.conv1.weight" not in state_dict or f"{layer}.ffn.project_in.weight" not in state_dict:
        return None

    dim, in_channels = (int(n) for n in state_dict["sft.weight"].shape[:2])
    norm = "tanh" if state_dict[f"{layer}.conv1.weight"].ndim == 4 else "layernorm"
    hidden = int(state_dict[f"{layer}.ffn.project_in.weight"].shape[0]) // 2
    ffn_expansion: float = hidden // dim if hidden % dim == 0 else hidden / dim
    if int(dim * ffn_expansion) != hidden:  # float round-off would lose one channel
        ffn_expansion = (hidden + 0.5) / dim

    up_out = int(state_dict["upsample.0.weight"].shape[0])
    out_channels = in_channels
    scale = round((up_out / out_channels) ** 0.5)
    if out_channels * scale * scale != up_out:
        return None
    return "DITN", dict(
        in_channels=in_channels, out_channels=out_channels, dim=dim, num_ufone=num_ufone,
        num_itl=num_itl, num_sal=num_sal, patch_size=8, ffn_expansion=ffn_expansion,
        bias=f"{layer}.ffn.project_in.bias" in state_dict, upscale=scale, norm=norm,
    )
