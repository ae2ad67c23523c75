"""RLFN: Residual Local Feature Network (Kong et al., CVPRW 2022).

Module names follow the official release so its checkpoints load unchanged:
``conv_1``, ``block_{i}`` (``c1_r``, ``c2_r``, ``c3_r``, ``c5``, ``esa``), ``conv_2``,
``upsampler.0``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from esr.archs.padding import crop_to, pad_to_fit
from esr.descriptor import ModelDescriptor
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY

# ESA: 3x3 stride-2 conv (no pad), 7x7/3 max-pool, then a padded 3x3 conv: the
# smallest input with a non-empty pooled map is 2 * (7 - 1) + 3 = 15 pixels.
ESA_MIN_SIZE = 15


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    """Conv2d with bias and 'same' padding for odd kernels unless ``padding`` is given."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2 if padding is None else padding)


class ESA(nn.Module):
    """Enhanced spatial attention: a coarse sigmoid mask (N, C, H, W) that multiplies the input."""

    def __init__(self, esa_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, esa_channels, 1)
        self.conv_f = conv(esa_channels, esa_channels, 1)
        self.conv2 = conv(esa_channels, esa_channels, 3, stride=2, padding=0)
        self.conv3 = conv(esa_channels, esa_channels, 3)
        self.conv4 = conv(esa_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        coarse = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        coarse = F.interpolate(self.conv3(coarse), size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(coarse + self.conv_f(reduced)))
        return x * mask


class RLFB(nn.Module):
    """Residual local feature block: 3 x (conv3x3 + LeakyReLU 0.05), residual add, 1x1 conv, ESA."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = conv(channels, mid_channels, 3)
        self.c2_r = conv(mid_channels, mid_channels, 3)
        self.c3_r = conv(mid_channels, channels, 3)
        self.c5 = conv(channels, channels, 1)
        self.esa = ESA(esa_channels, channels)
        self.act = nn.LeakyReLU(0.05, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


@ARCH_REGISTRY.register()
class RLFN(nn.Module):
    """Residual Local Feature Network.

    Args:
        in_channels: image channels in (3 for RGB).
        out_channels: image channels out.
        feature_channels: width of the trunk (52 RLFN, 48 RLFN-S, 46 RLFN_ntire).
        mid_channels: width inside each RLFB (equal to ``feature_channels`` except RLFN_ntire: 48).
        num_blocks: number of RLFBs (6, or 4 for RLFN_ntire).
        esa_channels: ESA bottleneck width (16).
        upscale: 2, 3 or 4.
        img_range: pixel range the weights were trained on. The official checkpoints
            use 255: inputs in [0, 1] are multiplied by it and outputs divided by it
            inside ``forward``, so callers always work in [0, 1].

    Shapes: (N, 3, H, W) in [0, 1] -> (N, 3, H * upscale, W * upscale), unclamped.
    Inputs smaller than 15 px per side are reflect-padded for ESA and cropped back.
    """

    LIMITS = {  # checked by esr.limits before any model is allocated
        "in_channels": (1, 4), "out_channels": (1, 4), "feature_channels": (1, 1024), "mid_channels": (1, 1024),
        "num_blocks": (1, 64), "esa_channels": (1, 1024), "upscale": (1, 8), "img_range": (1e-3, 65535.0),
    }

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        feature_channels: int = 52,
        mid_channels: int = 52,
        num_blocks: int = 6,
        esa_channels: int = 16,
        upscale: int = 4,
        img_range: float = 255.0,
    ) -> None:
        super().__init__()
        self.upscale = upscale
        self.img_range = img_range
        self.hyperparams = dict(
            in_channels=in_channels, out_channels=out_channels, feature_channels=feature_channels,
            mid_channels=mid_channels, num_blocks=num_blocks, esa_channels=esa_channels,
            upscale=upscale, img_range=img_range,
        )
        self.conv_1 = conv(in_channels, feature_channels, 3)
        for index in range(1, num_blocks + 1):
            self.add_module(f"block_{index}", RLFB(feature_channels, mid_channels, esa_channels))
        self.num_blocks = num_blocks
        self.conv_2 = conv(feature_channels, feature_channels, 3)
        self.upsampler = nn.Sequential(
            conv(feature_channels, out_channels * upscale**2, 3), nn.PixelShuffle(upscale)
        )
        self.descriptor = ModelDescriptor(
            name="RLFN", arch="RLFN", scale=upscale, in_channels=in_channels, out_channels=out_channels,
            min_size=ESA_MIN_SIZE, pads_inside=True, hyperparams=dict(self.hyperparams),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x, _, _ = pad_to_fit(x, min_size=ESA_MIN_SIZE)
        shallow = self.conv_1(x * self.img_range)
        out = shallow
        for index in range(1, self.num_blocks + 1):
            out = getattr(self, f"block_{index}")(out)
        out = self.upsampler(self.conv_2(out) + shallow) / self.img_range
        return crop_to(out, height * self.upscale, width * self.upscale)


@DETECTOR_REGISTRY.register(name="RLFN")
def detect_rlfn(state_dict: dict) -> tuple[str, dict] | None:
    """Read RLFN hyperparameters from an official-layout state dict, or None if it is not RLFN."""
    if "conv_1.weight" not in state_dict or "block_1.esa.conv1.weight" not in state_dict:
        return None
    feature_channels, in_channels = state_dict["conv_1.weight"].shape[:2]
    num_blocks = 0
    while f"block_{num_blocks + 1}.c1_r.weight" in state_dict:
        num_blocks += 1
    up_out = state_dict["upsampler.0.weight"].shape[0]
    out_channels = in_channels
    scale = round((up_out / out_channels) ** 0.5)
    if out_channels * scale * scale != up_out:
        return None
    return "RLFN", dict(
        in_channels=int(in_channels), out_channels=int(out_channels),
        feature_channels=int(feature_channels),
        mid_channels=int(state_dict["block_1.c1_r.weight"].shape[0]),
        num_blocks=num_blocks,
        esa_channels=int(state_dict["block_1.esa.conv1.weight"].shape[0]),
        upscale=scale,
    )
