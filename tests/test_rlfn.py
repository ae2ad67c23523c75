"""RLFN: official checkpoints reproduce published PSNR; any input size; shape detection round trip."""
from __future__ import annotations

import pytest
import torch

from esr.archs.presets import build_model
from esr.evaluate import evaluate
from esr.loading import detect_arch, load_model
from esr.registry import ARCH_REGISTRY


def test_official_rlfn_x4_set5_reproduces_reference(official_weights, shared):
    result = evaluate(load_model("rlfn_x4"), shared / "datasets" / "Set5", 4, progress=False)
    # ../shared/design/reference.md: RLFN x4 Set5 32.24 / 0.8953 (tolerance 0.01 dB, 0.001)
    assert abs(result["psnr_y"] - 32.24) <= 0.01
    assert abs(result["ssim_y"] - 0.8953) <= 0.001
    assert len(result["images"]) == 5


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (7, 9), (15, 15), (37, 53)])
def test_any_input_size(scale, size):
    model = build_model("rlfn_ntire", scale).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(out).all()


def test_small_inputs_are_reflect_padded_and_cropped():
    """A 10x12 input runs as its reflect-padded 15x15 version, and the result is cropped back."""
    torch.manual_seed(0)
    model = build_model("rlfn_s", 2).eval()
    x = torch.rand(1, 3, 10, 12)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 5), mode="reflect")
    with torch.no_grad():
        small = model(x)
        reference = model(padded)[..., :20, :24]
    assert small.shape == (1, 3, 20, 24)
    assert torch.allclose(small, reference, atol=1e-6)


@pytest.mark.parametrize("preset", ["rlfn", "rlfn_s", "rlfn_ntire"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_detector_round_trip(preset, scale):
    model = build_model(preset, scale)
    arch, kwargs = detect_arch(model.state_dict())
    rebuilt = ARCH_REGISTRY.get(arch)(**kwargs)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert kwargs == {k: v for k, v in model.hyperparams.items() if k != "img_range"}
