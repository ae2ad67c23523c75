"""Deploy pass for SPAN: fold every Conv3XC's training branches into its single 3x3 conv."""
from __future__ import annotations

import torch.nn as nn

from esr.archs.span_arch import SPAN, Conv3XC
from esr.plugins.core import deploy_pass, register_recipe


@deploy_pass("conv3xc_fold", "exact")
def conv3xc_fold(model: nn.Module) -> int:
    """Fold each Conv3XC's 1x1 -> 3x3 -> 1x1 branch and 1x1 skip into ``eval_conv`` and drop the branches.

    The fold is computed in float64 from the branch weights (whatever ``eval_conv`` held before),
    so the result equals the training-form output up to fp32 round-off. Afterwards the model has
    the slim layout (``eval_conv`` only, as the NTIRE 2024 SPAN release) and its parameter count
    is the inference count; the exported graph has one Conv per Conv3XC either way.
    """
    sites = 0
    for net in [m for m in model.modules() if isinstance(m, SPAN)]:
        blocks = [m for m in net.modules() if isinstance(m, Conv3XC) and m.has_branches]
        for block in blocks:
            block.drop_branches()
        net.hyperparams["branches"] = False  # an esr checkpoint of the result reloads in this form
        net.descriptor = net.descriptor.replace(hyperparams={**net.descriptor.hyperparams, "branches": False})
        sites += len(blocks)
    return sites


register_recipe("SPAN", ["conv3xc_fold"])
