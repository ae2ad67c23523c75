"""Parameter and multiply-accumulate counts of a model at a given input size."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Parameters of the model as deployed: all of them, minus those its modules declare training-only.

    A module whose training form has extra layers that eval mode replaces (SPAN's Conv3XC branches,
    folded into one 3x3 conv) lists them in ``training_only_parameters()``; for every other model this
    is the plain parameter count.
    """
    training_only = {id(p): p for module in model.modules() if hasattr(module, "training_only_parameters")
                     for p in module.training_only_parameters()}
    return sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in training_only.values())


@torch.no_grad()
def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """MACs of one forward pass on a (1, C, height, width) input (C: the descriptor's in_channels, else 3).

    Counted by PyTorch's FlopCounterMode over the aten ops that run (convolutions,
    matmuls, linear layers; elementwise ops are not counted, as in fvcore/thop);
    MACs = FLOPs / 2.
    """
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter:
        channels = model.descriptor.in_channels if hasattr(model, "descriptor") else 3
        model(torch.zeros(1, channels, height, width, device=device))
    return counter.get_total_flops() // 2
