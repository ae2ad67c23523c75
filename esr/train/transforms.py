"""Warm-start transforms: turn a finished stage's model into the next stage's starting point.

``ditn_layernorm_to_tanh``: the deploy path of DITN. Every :class:`ChannelLayerNorm` in a
``conv1``/``conv2`` slot becomes a :class:`TanhAffine` (``W @ tanh(x) + B``) whose W, B are
the least-squares fit of the LayerNorm's output from ``tanh`` of its input, measured on a
calibration batch. Slots are converted one at a time in forward order, each fitted on the
activations of the partly converted model, so later fits absorb earlier errors. The swap
is not exact; the model is then fine-tuned.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from esr.archs.ditn_arch import DITN, ChannelLayerNorm, TanhAffine
from esr.registry import Registry

WARM_START_TRANSFORMS = Registry("warm-start transform")
"""name -> ``fn(model, calibration) -> model``; ``calibration`` is (N, 3, h, w) LR inputs in [0, 1]."""

MAX_FIT_PIXELS = 32768
RIDGE = 1e-4


def fit_tanh_affine(inputs: torch.Tensor, targets: torch.Tensor) -> TanhAffine:
    """The :class:`TanhAffine` minimising ``|W tanh(x) + B - y|^2`` (small ridge) over pixels.

    Args:
        inputs, targets: (N, C, H, W) activations before / after the layer to imitate.
    """
    channels = inputs.shape[1]
    x = inputs.permute(0, 2, 3, 1).reshape(-1, channels).double()
    y = targets.permute(0, 2, 3, 1).reshape(-1, channels).double()
    if x.shape[0] > MAX_FIT_PIXELS:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_FIT_PIXELS]
        x, y = x[keep], y[keep]
    design = torch.cat([torch.tanh(x), torch.ones_like(x[:, :1])], dim=1)
    gram = design.T @ design
    gram += RIDGE * gram.diagonal().mean() * torch.eye(channels + 1, dtype=gram.dtype)
    solution = torch.linalg.solve(gram, design.T @ y)  # (C + 1, C)
    layer = TanhAffine(channels)
    with torch.no_grad():
        layer.weight.copy_(solution[:channels].T.reshape(channels, channels, 1, 1).float())
        layer.bias.copy_(solution[channels].float())
    return layer


@torch.no_grad()
def capture_io(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of ``layer`` while ``model`` runs on ``batch``."""
    seen: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen["in"], seen["out"] = args[0].detach(), output.detach()

    handle = layer.register_forward_hook(hook)
    try:
        model(batch)
    finally:
        handle.remove()
    return seen["in"], seen["out"]


@WARM_START_TRANSFORMS.register(name="ditn_layernorm_to_tanh")
def ditn_layernorm_to_tanh(model: DITN, calibration: torch.Tensor) -> DITN:
    """A ``norm="tanh"`` DITN fitted to imitate the LayerNorm DITN ``model`` (left unchanged).

    Args:
        model: a DITN with ``norm="layernorm"``.
        calibration: (N, 3, h, w) LR images in [0, 1] the fit is measured on.

    Returns:
        An eval-mode DITN (tanh form, DITN-Real state-dict layout), all other weights copied.
    """
    if not isinstance(model, DITN) or model.hyperparams["norm"] != "layernorm":
        raise ValueError("ditn_layernorm_to_tanh needs a DITN with norm='layernorm'")
    work = copy.deepcopy(model).eval()
    slots = [(name, module) for name, module in work.named_modules() if isinstance(module, ChannelLayerNorm)]
    for name, norm in slots:
        parent_name, _, attr = name.rpartition(".")
        parent = work.get_submodule(parent_name)
        inputs, _ = capture_io(work, norm, calibration)
        setattr(parent, attr, fit_tanh_affine(inputs, norm(inputs)))
    converted = DITN(**{**model.hyperparams, "norm": "tanh"})
    converted.load_state_dict(work.state_dict(), strict=True)
    return converted.eval()
