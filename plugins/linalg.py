"""Weight algebra shared by the folding passes (done in float64, stored back in the layer's dtype)."""
from __future__ import annotations

import torch
import torch.nn as nn


def matrix_of(layer: nn.Conv2d | nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (out, in), b (out,)) of a Linear or ungrouped 1x1 Conv2d, in float64 (b = 0 without bias)."""
    if isinstance(layer, nn.Conv2d) and (layer.kernel_size != (1, 1) or layer.groups != 1):
        raise ValueError(f"not a pointwise conv: {layer}")
    weight = layer.weight.detach().double().reshape(layer.weight.shape[0], -1)
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    return weight, bias


def pointwise_conv(weight: torch.Tensor, bias: torch.Tensor, like: nn.Module) -> nn.Conv2d:
    """A 1x1 Conv2d with bias holding ``weight`` (out, in) and ``bias`` (out,), on ``like``'s dtype/device."""
    ref = next(like.parameters())
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=True).to(ref.device, ref.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
        conv.bias.copy_(bias)
    return conv


def compose_after(layer: nn.Conv2d | nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """``layer`` applied after the affine map ``x -> weight @ x + bias``, as one layer of ``layer``'s kind.

    weight (C, C') and bias (C,) in float64; the result always has a bias.
    """
    outer, outer_bias = matrix_of(layer)
    new_weight, new_bias = outer @ weight, outer @ bias + outer_bias
    if isinstance(layer, nn.Linear):
        ref = layer.weight
        linear = nn.Linear(new_weight.shape[1], new_weight.shape[0]).to(ref.device, ref.dtype)
        with torch.no_grad():
            linear.weight.copy_(new_weight)
            linear.bias.copy_(new_bias)
        return linear
    return pointwise_conv(new_weight, new_bias, layer)
