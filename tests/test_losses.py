"""Contrastive loss: value against a NumPy reference on hand-made tensors, gradient, phi frozen and seeded."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from esr.train.losses import ContrastiveLoss, random_feature_extractor


def conv3x3_numpy(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Naive zero-padded 3x3 convolution (cross-correlation): (C, H, W) -> (O, H, W), float64."""
    _, height, width = image.shape
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((weight.shape[0], height, width))
    for o in range(weight.shape[0]):
        for y in range(height):
            for x in range(width):
                out[o, y, x] = np.sum(padded[:, y:y + 3, x:x + 3] * weight[o]) + bias[o]
    return out


def phi_numpy(loss: ContrastiveLoss, image: np.ndarray) -> np.ndarray:
    first, second = loss.phi[0], loss.phi[2]
    hidden = np.tanh(conv3x3_numpy(image, first.weight.double().numpy(), first.bias.double().numpy()))
    return conv3x3_numpy(hidden, second.weight.double().numpy(), second.bias.double().numpy())


def hand_made() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sr, hr (1, 3, 8, 8) and a constant lq (1, 3, 4, 4) whose bicubic x2 upsampling is the same constant."""
    ramp = torch.arange(64, dtype=torch.float32).reshape(8, 8) / 63.0
    hr = torch.stack([ramp, ramp.T, 1 - ramp])[None]
    sr = (hr + 0.1 * torch.sin(torch.arange(192, dtype=torch.float32)).reshape(1, 3, 8, 8)).clamp(0, 1)
    lq = torch.full((1, 3, 4, 4), 0.5)
    return sr, hr, lq


def test_value_matches_numpy_reference() -> None:
    loss = ContrastiveLoss(loss_weight=0.7, contrast_weight=0.3, feature_channels=4, seed=3, eps=1e-6)
    sr, hr, lq = hand_made()
    neg = np.full((3, 8, 8), 0.5)  # bicubic upsampling of a constant is that constant
    assert np.allclose(loss.negative(lq, (8, 8))[0].numpy(), neg, atol=1e-6)
    sr_np, hr_np = sr[0].double().numpy(), hr[0].double().numpy()
    f_sr, f_hr, f_neg = (phi_numpy(loss, x) for x in (sr_np, hr_np, neg))
    expected = 0.7 * np.abs(sr_np - hr_np).mean() + 0.3 * np.abs(f_sr - f_hr).mean() / (np.abs(f_sr - f_neg).mean() + 1e-6)
    assert float(loss(sr, hr, lq)) == pytest.approx(expected, rel=1e-5)


def test_zero_at_perfect_reconstruction_and_grows_towards_the_negative() -> None:
    loss = ContrastiveLoss(contrast_weight=1.0, feature_channels=8)
    _, hr, lq = hand_made()
    neg = loss.negative(lq, (8, 8))
    assert float(loss(hr, hr, lq)) == pytest.approx(0.0, abs=1e-7)
    near_hr = float(loss(0.9 * hr + 0.1 * neg, hr, lq))
    near_neg = float(loss(0.1 * hr + 0.9 * neg, hr, lq))
    assert 0 < near_hr < near_neg


def test_gradient_matches_finite_differences_and_phi_stays_frozen() -> None:
    loss = ContrastiveLoss(contrast_weight=0.5, feature_channels=4, seed=1).double()
    sr, hr, lq = (t.double() for t in hand_made())
    sr = sr[..., :4, :4].clone().requires_grad_(True)
    hr, lq = hr[..., :4, :4], lq[..., :2, :2]
    assert torch.autograd.gradcheck(lambda x: loss(x, hr, lq), (sr,), eps=1e-6, atol=1e-5)
    loss(sr, hr, lq).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.phi.parameters())


def test_phi_is_seeded_frozen_and_stays_in_eval_mode() -> None:
    a, b, c = random_feature_extractor(8, seed=5), random_feature_extractor(8, seed=5), random_feature_extractor(8, seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)
    assert not any(p.requires_grad for p in a.parameters())
    loss = ContrastiveLoss().train()
    assert loss.training and not loss.phi.training


def test_negative_modes_and_bad_option() -> None:
    lq = torch.rand(2, 3, 5, 6)
    loss = ContrastiveLoss(neg="nearest")
    assert torch.equal(loss.negative(lq, (10, 12)), F.interpolate(lq, scale_factor=2, mode="nearest"))
    with pytest.raises(ValueError, match="neg must be one of"):
        ContrastiveLoss(neg="vgg")
