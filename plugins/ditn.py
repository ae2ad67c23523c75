"""Deploy passes for DITN / DITN-Real (norm forms, q/k/v and attention fusion, affine folding) and its recipe.

The LayerNorm -> Tanh conversion (:func:`layernorm_to_tanh`) is the one esr has: the lossy
``layernorm_tanh`` pass and the training warm start (:mod:`esr.train.transforms`) both call it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from esr.archs.ditn_arch import FeedForward, ISA, ITL, SAL, SDA, ChannelLayerNorm, TanhAffine
from esr.plugins.core import deploy_pass, register_recipe
from esr.plugins.linalg import compose_after, matrix_of, pointwise_conv
from esr.plugins.modules import DeployISA, DeploySDA, SafeChannelLayerNorm


def norm_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(layer, slot) for the ``conv1``/``conv2`` norm slots of every ITL and SAL."""
    return [(layer, slot) for layer in model.modules() if isinstance(layer, (ITL, SAL)) for slot in ("conv1", "conv2")]


def safe_from(norm: ChannelLayerNorm) -> SafeChannelLayerNorm:
    """:class:`SafeChannelLayerNorm` carrying ``norm``'s eps, weight and bias."""
    safe = SafeChannelLayerNorm(norm.weight.numel(), norm.eps).to(norm.weight.device, norm.weight.dtype)
    with torch.no_grad():
        safe.weight.copy_(norm.weight)
        safe.bias.copy_(norm.bias)
    return safe


@deploy_pass("layernorm_exact", "exact")
def layernorm_exact(model: nn.Module) -> int:
    """Channel LayerNorm -> fp16-safe ReduceMean/ReduceMax form over axis 1 (no permutes, no LayerNormalization)."""
    sites = 0
    for layer, slot in norm_layers(model):
        norm = getattr(layer, slot)
        if isinstance(norm, ChannelLayerNorm):
            setattr(layer, slot, safe_from(norm))
            sites += 1
    return sites


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
    layer = TanhAffine(channels).to(inputs.device)
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


def layernorm_to_tanh(model: nn.Module, calibration: torch.Tensor) -> int:
    """Replace every LayerNorm norm slot by the :class:`TanhAffine` that best imitates it (in place).

    ``W``, ``B`` of each ``W @ tanh(x) + B`` are the least-squares fit of the LayerNorm's output
    from ``tanh`` of its input, measured on ``calibration`` (N, 3, h, w) in [0, 1]. Slots are
    converted one at a time in forward order, each fitted on the activations of the partly
    converted model, so later fits absorb earlier errors. Not exact: the model needs fine-tuning.
    Returns the number of slots converted.
    """
    sites = 0
    for layer, slot in norm_layers(model):
        norm = getattr(layer, slot)
        if isinstance(norm, (ChannelLayerNorm, SafeChannelLayerNorm)):
            inputs, outputs = capture_io(model, norm, calibration)
            setattr(layer, slot, fit_tanh_affine(inputs, outputs))
            sites += 1
    return sites


@deploy_pass("layernorm_tanh", "lossy", calibrated=True)
def layernorm_tanh(model: nn.Module, calibration: torch.Tensor) -> int:
    """Channel LayerNorm -> Tanh + 1x1 affine fitted on calibration inputs (DITN-Real form; needs fine-tuning)."""
    return layernorm_to_tanh(model, calibration)


def isa_sites(model: nn.Module) -> list[tuple[nn.Module, ISA | DeployISA]]:
    return [(layer, layer.attn) for layer in model.modules() if isinstance(layer, ITL)]


def to_deploy_isa(attn: ISA | DeployISA, fused: bool) -> DeployISA:
    """The channel-major :class:`DeployISA` equivalent of ``attn`` (Linear qkv -> 1x1 conv)."""
    if isinstance(attn, DeployISA):
        return DeployISA(attn.qkv, attn.project_out, attn.temperature, fused)
    weight, bias = matrix_of(attn.qkv)
    return DeployISA(pointwise_conv(weight, bias, attn.qkv), attn.project_out, attn.temperature, fused)


@deploy_pass("qkv_fuse", "exact")
def qkv_fuse(model: nn.Module) -> int:
    """q/k/v projection as one 1x1 conv on the NCHW patches (one GEMM, no token transposes)."""
    sites = 0
    for layer, attn in isa_sites(model):
        if isinstance(attn, ISA):
            layer.attn = to_deploy_isa(attn, fused=False)
            sites += 1
    return sites


@deploy_pass("attention_fuse", "exact")
def attention_fuse(model: nn.Module) -> int:
    """ISA's L2-norm + matmul + softmax + matmul as one fused function (norms applied to the logits)."""
    sites = 0
    for layer, attn in isa_sites(model):
        if not (isinstance(attn, DeployISA) and attn.fused):
            layer.attn = to_deploy_isa(attn, fused=True)
            sites += 1
    return sites


def norm_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor, nn.Module] | None:
    """(W (C, C), B (C,), what remains) of a norm slot's trailing affine, or None if it has none."""
    if isinstance(norm, TanhAffine):
        weight, bias = matrix_of(norm)
        return weight, bias, nn.Tanh()
    if isinstance(norm, (ChannelLayerNorm, SafeChannelLayerNorm)) and norm.weight is not None:
        channels = norm.weight.numel()
        bare = SafeChannelLayerNorm(channels, norm.eps, affine=False)
        return torch.diag(norm.weight.detach().double()), norm.bias.detach().double(), bare
    return None


def fold_into_consumer(consumer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Fold ``x -> weight @ x + bias`` into the first projection of ``consumer`` (in place)."""
    if isinstance(consumer, (ISA, DeployISA)):
        consumer.qkv = compose_after(consumer.qkv, weight, bias)
    elif isinstance(consumer, FeedForward):
        consumer.project_in = compose_after(consumer.project_in, weight, bias)
    elif isinstance(consumer, SDA):
        consumer.proj_first[0] = compose_after(consumer.proj_first[0], weight, bias)
    elif isinstance(consumer, DeploySDA):
        consumer.proj_first = compose_after(consumer.proj_first, weight, bias)
    else:
        raise TypeError(f"cannot fold an affine into {type(consumer).__name__}")


def fold_sda_scale(sda: SDA) -> DeploySDA:
    """:class:`DeploySDA` with ``sda.scale`` (1, C, 1, 1) multiplied into ``proj_last``."""
    weight, bias = matrix_of(sda.proj_last[0])
    scale = sda.scale.detach().double().reshape(-1, 1)
    last = pointwise_conv(weight * scale, bias * scale[:, 0], sda.proj_last[0])
    return DeploySDA(sda.proj_first[0], sda.DConvs, last)


@deploy_pass("affine_fold", "exact")
def affine_fold(model: nn.Module) -> int:
    """Fold each norm slot's affine (Tanh's 1x1, LayerNorm's weight/bias) into the next projection,
    and SDA's output scale into ``proj_last``."""
    sites = 0
    for layer in [m for m in model.modules() if isinstance(m, SAL)]:
        if isinstance(layer.SDA, SDA):
            layer.SDA = fold_sda_scale(layer.SDA)
            sites += 1
    for layer, slot in norm_layers(model):
        affine = norm_affine(getattr(layer, slot))
        if affine is None:
            continue
        weight, bias, remainder = affine
        consumer = (layer.attn if isinstance(layer, ITL) else layer.SDA) if slot == "conv1" else layer.ffn
        fold_into_consumer(consumer, weight, bias)
        setattr(layer, slot, remainder.to(weight.new_empty(0).device))
        sites += 1
    return sites


register_recipe("DITN", ["layernorm_exact", "qkv_fuse", "attention_fuse", "affine_fold"])
