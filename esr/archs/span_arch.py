"""SPAN: Swift Parameter-free Attention Network (Wan et al., CVPRW 2024; NTIRE 2024 ESR winner).

Module names follow the official release (hongyuanyu/SPAN, Apache-2.0) and spandrel's ``SPAN``,
so their state dicts load unchanged: ``conv_1``, ``block_{1..6}`` (``c1_r``, ``c2_r``, ``c3_r``),
``conv_cat``, ``conv_2``, ``upsampler.0``. Every 3x3 conv except the upsampler's is a
:class:`Conv3XC`: a re-parameterisable block whose keys are ``sk`` (1x1 skip), ``conv.0/1/2``
(1x1 expand -> 3x3 -> 1x1 reduce, the training branches) and ``eval_conv`` (their fold into one
3x3 conv). The NTIRE 2024 challenge release of SPAN (``team38_span_ch28_slim.pth``,
Amazingren/NTIRE2024_ESR) keeps only ``eval_conv``: built with ``branches=False``, this module
has that layout too.

Input normalisation (official): ``(x - rgb_mean) * img_range`` with ``rgb_mean`` the DIV2K mean
and ``img_range`` 255; the output is *not* de-normalised (the network learns [0, 1] outputs).
Neither value is stored in the official weights. spandrel's ``norm=False`` variant skips the
normalisation and marks itself with a ``no_norm`` buffer (zeros(1)) in the state dict; so does ours.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from esr.descriptor import ModelDescriptor
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY

NUM_BLOCKS = 6
"""SPAB blocks in every released SPAN (the concatenation reads blocks 1 and 6)."""
CONV3XC_GAIN = 2
"""Width multiplier inside the Conv3XC training branch (``gain1=2`` in the official code)."""
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""Per-channel mean subtracted from the input (official default, not stored in checkpoints)."""


class Conv3XC(nn.Module):
    """A 3x3 conv (padding 1) trained as ``conv3x3(pad0(x)) + conv1x1(x)`` with 1x1 convs around the 3x3.

    Training mode (with branches): ``sk(x) + conv[2](conv[1](conv[0](zero_pad(x, 1))))``, where
    ``conv[0]`` is 1x1 C_in -> 2 C_in, ``conv[1]`` 3x3 (no padding) -> 2 C_out, ``conv[2]`` 1x1 -> C_out.
    This is linear in x, and equal to one 3x3 conv with zero padding 1 (the padded pixels see
    ``conv[0]``'s bias, which the folded bias counts for every tap), held in ``eval_conv``.

    Eval mode runs ``eval_conv`` only. It is recomputed from the branches (in float64) whenever the
    module switches to eval mode and after every ``load_state_dict``, so it never lags the branch
    weights: the official code and spandrel recompute it at every eval forward instead, and a
    checkpoint's stored ``eval_conv`` (e.g. an EMA average of it) is ignored by both.
    ``eval_conv`` is never trained while branches exist (``requires_grad`` False).

    With ``branches=False`` the module is a plain 3x3 conv named ``eval_conv`` (the deployed
    form, and the NTIRE 2024 slim checkpoints); it then trains ``eval_conv`` directly.

    Shapes: (N, C_in, H, W) -> (N, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, branches: bool = True) -> None:
        super().__init__()
        self.sk: nn.Conv2d | None = None  # registration order = the official state-dict order
        self.conv: nn.Sequential | None = None
        if branches:
            wide_in, wide_out = in_channels * CONV3XC_GAIN, out_channels * CONV3XC_GAIN
            self.sk = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
            self.conv = nn.Sequential(
                nn.Conv2d(in_channels, wide_in, 1, bias=bias),
                nn.Conv2d(wide_in, wide_out, 3, bias=bias),
                nn.Conv2d(wide_out, out_channels, 1, bias=bias),
            )
        self.eval_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        if branches:
            self.eval_conv.requires_grad_(False)
            self.refresh()
            self.register_load_state_dict_post_hook(refresh_after_load)

    @property
    def has_branches(self) -> bool:
        return self.sk is not None

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight (C_out, C_in, 3, 3), bias (C_out,) or None) of the single 3x3 conv equal to the
        branches, computed in float64 on the CPU."""

        def matrix(layer: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
            weight = layer.weight.detach().to("cpu", torch.float64)
            bias = (layer.bias.detach().to("cpu", torch.float64) if layer.bias is not None
                    else torch.zeros(weight.shape[0], dtype=torch.float64))
            return weight, bias

        (w1, b1), (w2, b2), (w3, b3) = (matrix(layer) for layer in self.conv)
        w_sk, b_sk = matrix(self.sk)
        weight = torch.einsum("on,nmhw,mi->oihw", w3[:, :, 0, 0], w2, w1[:, :, 0, 0])
        weight[:, :, 1, 1] += w_sk[:, :, 0, 0]
        bias = w3[:, :, 0, 0] @ (torch.einsum("nmhw,m->n", w2, b1) + b2) + b3 + b_sk
        return weight, bias if self.eval_conv.bias is not None else None

    @torch.no_grad()
    def refresh(self) -> None:
        """Write the fold of the branches into ``eval_conv`` (no-op without branches, and on the meta
        device, where :mod:`esr.limits` builds a model only to count its parameters)."""
        if not self.has_branches or self.eval_conv.weight.is_meta:
            return
        weight, bias = self.folded()
        self.eval_conv.weight.copy_(weight)
        if bias is not None:
            self.eval_conv.bias.copy_(bias)

    def training_only_parameters(self) -> list[nn.Parameter]:
        """The branch parameters (none without branches): eval mode runs only ``eval_conv``
        (read by :func:`esr.complexity.count_params`)."""
        return [p for layer in (self.sk, self.conv) if layer is not None for p in layer.parameters()]

    def drop_branches(self) -> None:
        """Keep only ``eval_conv`` (refreshed first): the deployed, slim form."""
        self.refresh()
        self.sk = self.conv = None
        self.eval_conv.requires_grad_(True)

    def train(self, mode: bool = True) -> Conv3XC:
        super().train(mode)
        if not mode:
            self.refresh()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.has_branches:
            return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)
        return self.eval_conv(x)


def refresh_after_load(module: Conv3XC, _incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: the loaded branches, not the stored ``eval_conv``, define the conv."""
    module.refresh()


class SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XC with SiLU between them, then
    ``(h + x) * (sigmoid(h) - 0.5)``: the attention map comes from the features, with no parameters.

    Returns ``(block output, SiLU of the first conv's output)``; the last block's second value
    feeds the concatenation in :class:`SPAN`. (The official code returns the first conv's output
    after its in-place SiLU has overwritten it, so the activated tensor is what it concatenates.)
    Shapes: (N, C, H, W) -> two (N, C, H, W).
    """

    def __init__(self, channels: int, bias: bool = True, branches: bool = True) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels, bias, branches)
        self.c2_r = Conv3XC(channels, channels, bias, branches)
        self.c3_r = Conv3XC(channels, channels, bias, branches)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = F.silu(self.c1_r(x))
        out = self.c3_r(F.silu(self.c2_r(first)))
        return (out + x) * (torch.sigmoid(out) - 0.5), first


@ARCH_REGISTRY.register()
class SPAN(nn.Module):
    """Swift Parameter-free Attention Network.

    Args:
        in_channels: image channels in (3 for RGB).
        out_channels: image channels out.
        feature_channels: trunk width (48 in the official release, 28 in the NTIRE 2024 entry).
        upscale: 1, 2, 3 or 4 (any positive integer works).
        bias: whether the Conv3XC convs have biases (always True in released checkpoints).
        norm: subtract ``rgb_mean`` and multiply by ``img_range`` before the first conv
            (official: True). False registers a ``no_norm`` buffer, as spandrel does.
        img_range: input multiplier when ``norm`` (official: 255).
        rgb_mean: per-channel mean (``in_channels`` values) subtracted when ``norm``.
        branches: build the Conv3XC training branches (False: ``eval_conv`` only, the deployed
            and NTIRE 2024 slim layout).

    Shapes: (N, 3, H, W) in [0, 1] -> (N, 3, H * upscale, W * upscale), unclamped. Any H, W >= 1
    (only zero-padded 3x3 and 1x1 convs: no size requirement, no internal padding).
    """

    LIMITS = {  # checked by esr.limits before any model is allocated
        "in_channels": (1, 4), "out_channels": (1, 4), "feature_channels": (1, 1024), "upscale": (1, 8),
        "img_range": (1e-3, 65535.0),
    }

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        feature_channels: int = 48,
        upscale: int = 4,
        bias: bool = True,
        norm: bool = True,
        img_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        branches: bool = True,
    ) -> None:
        super().__init__()
        if norm and len(rgb_mean) != in_channels:
            raise ValueError(f"rgb_mean has {len(rgb_mean)} values for {in_channels} input channels")
        self.upscale = upscale
        self.norm = norm
        self.img_range = img_range
        self.hyperparams = dict(
            in_channels=in_channels, out_channels=out_channels, feature_channels=feature_channels,
            upscale=upscale, bias=bias, norm=norm, img_range=img_range,
            rgb_mean=[float(v) for v in rgb_mean], branches=branches,
        )
        self.register_buffer("mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        if not norm:
            self.register_buffer("no_norm", torch.zeros(1))
        self.conv_1 = Conv3XC(in_channels, feature_channels, bias, branches)
        for index in range(1, NUM_BLOCKS + 1):
            self.add_module(f"block_{index}", SPAB(feature_channels, bias, branches))
        self.conv_cat = nn.Conv2d(feature_channels * 4, feature_channels, 1)
        self.conv_2 = Conv3XC(feature_channels, feature_channels, bias, branches)
        self.upsampler = nn.Sequential(
            nn.Conv2d(feature_channels, out_channels * upscale**2, 3, padding=1), nn.PixelShuffle(upscale)
        )
        self.descriptor = ModelDescriptor(
            name="SPAN", arch="SPAN", scale=upscale, in_channels=in_channels, out_channels=out_channels,
            purpose="SR" if upscale > 1 else "Restoration", hyperparams=dict(self.hyperparams),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm:
            x = (x - self.mean) * self.img_range
        shallow = self.conv_1(x)
        block_1, _ = self.block_1(shallow)
        out = block_1
        for index in range(2, NUM_BLOCKS + 1):
            out, first = getattr(self, f"block_{index}")(out)
        out = self.conv_cat(torch.cat([shallow, self.conv_2(out), block_1, first], dim=1))
        return self.upsampler(out)


def scale_from_pixelshuffle(conv_out: int, channels: int) -> int | None:
    """``s`` with ``channels * s * s == conv_out`` (the conv before a PixelShuffle), or None."""
    scale = round((conv_out / channels) ** 0.5)
    return scale if scale >= 1 and channels * scale * scale == conv_out else None


@DETECTOR_REGISTRY.register(name="SPAN")
def detect_span(state_dict: dict) -> tuple[str, dict] | None:
    """Read SPAN hyperparameters from an official/spandrel (or slim NTIRE) state dict, or None.

    ``feature_channels`` and ``in_channels`` come from ``conv_1``'s fused conv, ``bias`` from
    whether it has one, ``branches`` from whether ``sk`` keys exist, ``norm`` from the absence of
    the ``no_norm`` buffer, the scale from the upsampler conv (``out_channels`` assumed equal to
    ``in_channels``). ``img_range`` and ``rgb_mean`` are not stored: the official values are used.
    """
    required = ("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight",
                f"block_{NUM_BLOCKS}.c3_r.eval_conv.weight", "conv_cat.weight",
                "conv_2.eval_conv.weight", "upsampler.0.weight")
    if any(key not in state_dict for key in required):
        return None
    if f"block_{NUM_BLOCKS + 1}.c1_r.eval_conv.weight" in state_dict:
        return None
    feature_channels, in_channels = (int(n) for n in state_dict["conv_1.eval_conv.weight"].shape[:2])
    norm = "no_norm" not in state_dict
    if norm and in_channels != len(DIV2K_RGB_MEAN):
        return None  # the official normalisation only exists for RGB inputs
    if state_dict["conv_cat.weight"].shape[:2] != (feature_channels, 4 * feature_channels):
        return None
    scale = scale_from_pixelshuffle(int(state_dict["upsampler.0.weight"].shape[0]), in_channels)
    if scale is None:
        return None
    return "SPAN", dict(
        in_channels=in_channels, out_channels=in_channels, feature_channels=feature_channels,
        upscale=scale, bias="conv_1.eval_conv.bias" in state_dict, norm=norm,
        branches="conv_1.sk.weight" in state_dict,
    )
