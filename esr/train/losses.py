"""RLFN's contrastive loss with a frozen, randomly initialised shallow feature extractor.

``L = w * L1(SR, HR) + lambda * L1(phi(SR), phi(HR)) / (L1(phi(SR), phi(Neg)) + eps)``

phi is ``conv3x3 (3 -> c) -> tanh -> conv3x3 (c -> c)``, weights drawn from a seeded
generator (kaiming-uniform, biases zero) and never trained, so two runs with the same
seed use the same phi. The paper leaves phi's width and the negative uncertain: we use
``c = 16`` (cheap on CPU; the paper's point is that shallow random features work) and the
bicubic upsampling of the LR input as the negative by default (``neg`` picks another
``F.interpolate`` mode). Both are options.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NEGATIVE_MODES: dict[str, dict] = {
    "bicubic": dict(mode="bicubic", align_corners=False),
    "bilinear": dict(mode="bilinear", align_corners=False),
    "nearest": dict(mode="nearest"),
}
"""``neg`` option -> ``F.interpolate`` arguments that turn the LR input into the negative."""


def random_feature_extractor(channels: int = 16, seed: int = 0) -> nn.Sequential:
    """Frozen ``conv3x3 -> tanh -> conv3x3`` with seeded kaiming-uniform weights and zero biases.

    Shapes: (N, 3, H, W) -> (N, channels, H, W).
    """
    generator = torch.Generator().manual_seed(seed)
    phi = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.Tanh(), nn.Conv2d(channels, channels, 3, padding=1))
    for conv in (phi[0], phi[2]):
        nn.init.kaiming_uniform_(conv.weight, nonlinearity="linear", generator=generator)
        nn.init.zeros_(conv.bias)
    return phi.requires_grad_(False).eval()


class ContrastiveLoss(nn.Module):
    """L1 plus the RLFN contrastive term (registered in BasicSR's ``LOSS_REGISTRY``).

    Args:
        loss_weight: w, the weight of the pixel L1 term.
        contrast_weight: lambda, the weight of the feature ratio.
        neg: how the negative is made from the LR input (a key of :data:`NEGATIVE_MODES`).
        feature_channels: width of phi.
        seed: seed of phi's random weights.
        eps: added to the denominator.

    ``forward(sr, hr, lq)``: sr, hr (N, 3, sH, sW) and lq (N, 3, H, W), float in [0, 1];
    returns a scalar tensor. phi(HR) and phi(Neg) are computed without gradients; phi's
    weights never receive any.
    """

    def __init__(
        self, loss_weight: float = 1.0, contrast_weight: float = 0.1, neg: str = "bicubic",
        feature_channels: int = 16, seed: int = 0, eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if neg not in NEGATIVE_MODES:
            raise ValueError(f"neg must be one of {sorted(NEGATIVE_MODES)}, got {neg!r}")
        self.loss_weight = loss_weight
        self.contrast_weight = contrast_weight
        self.neg = neg
        self.eps = eps
        self.phi = random_feature_extractor(feature_channels, seed)

    def train(self, mode: bool = True) -> "ContrastiveLoss":
        super().train(mode)
        self.phi.eval()  # phi is fixed whatever the loss's mode
        return self

    def negative(self, lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The negative image: ``lq`` (N, 3, H, W) resized to ``size`` (sH, sW)."""
        return F.interpolate(lq, size=size, **NEGATIVE_MODES[self.neg])

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        pixel = F.l1_loss(sr, hr)
        with torch.no_grad():
            feat_hr = self.phi(hr)
            feat_neg = self.phi(self.negative(lq, tuple(hr.shape[-2:])))
        feat_sr = self.phi(sr)
        ratio = F.l1_loss(feat_sr, feat_hr) / (F.l1_loss(feat_sr, feat_neg) + self.eps)
        return self.loss_weight * pixel + self.contrast_weight * ratio
