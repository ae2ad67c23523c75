"""Parameter and multiply-accumulate counts of a model at a given input size."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


PROBE_SIDE = 16
"""Side of the zero image :func:`count_params` runs to see which layers take part."""


@torch.no_grad()
def count_params(model: nn.Module) -> int:
    """Parameters that an eval-mode forward pass reads: the weights of the deployed model.

    Layers that only run in training are not counted (SPAN's Conv3XC branches, which eval mode
    replaces with their folded 3x3 conv); for models without such layers this is every parameter.
    Found by running a small zero image (side 16, grown to the descriptor's size rules) through
    ``model`` in eval mode and summing the own parameters of every module whose forward ran;
    the model's train/eval mode is restored afterwards.
    """
    descriptor = getattr(model, "descriptor", None)
    channels = descriptor.in_channels if descriptor else 3
    side = max(PROBE_SIDE, descriptor.min_size if descriptor else 1)
    side += (-side) % (descriptor.size_multiple if descriptor else 1)
    called: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda module, _args: called.append(module)) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, channels, side, side, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    used = {id(p): p for module in called for p in module.parameters(recurse=False)}
    return sum(p.numel() for p in used.values())


@torch.no_grad()
def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """MACs of one forward pass on a (1, 3, height, width) input.

    Counted by PyTorch's FlopCounterMode over the aten ops that run (convolutions,
    matmuls, linear layers; elementwise ops are not counted, as in fvcore/thop);
    MACs = FLOPs / 2.
    """
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, 3, height, width, device=device))
    return counter.get_total_flops() // 2
