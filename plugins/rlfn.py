"""Deploy passes for RLFN (fold the [0, 255] input/output scaling into the first and last conv) and its recipe."""
from __future__ import annotations

import torch
import torch.nn as nn

from esr.archs.rlfn_arch import RLFN
from esr.plugins.core import deploy_pass, register_recipe


@deploy_pass("conv_fold", "exact")
def conv_fold(model: nn.Module) -> int:
    """Fold RLFN's ``x * img_range`` into ``conv_1`` and ``/ img_range`` into the upsampler conv.

    ``conv_1(x * r) == conv_1'(x)`` with the weight times r (bias kept); the output
    division commutes with PixelShuffle, so it scales the upsampler conv's weight and
    bias. Afterwards ``img_range`` is 1 and two full-size elementwise ops are gone.
    """
    sites = 0
    for net in [m for m in model.modules() if isinstance(m, RLFN)]:
        scale = float(net.img_range)
        if scale == 1.0:
            continue
        with torch.no_grad():
            net.conv_1.weight.mul_(scale)
            net.upsampler[0].weight.div_(scale)
            net.upsampler[0].bias.div_(scale)
        net.img_range = 1.0
        sites += 1
    return sites


register_recipe("RLFN", ["conv_fold"])
