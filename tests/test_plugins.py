"""Deploy passes: contracts hold (exact passes within 1e-5 in fp32), lossy ones report their error."""
from __future__ import annotations

import math

import pytest
import torch

from esr import plugins
from esr.archs.ditn_arch import ChannelLayerNorm, TanhAffine
from esr.archs.presets import build_model
from esr.plugins.modules import SafeChannelLayerNorm, channel_attention, fused_channel_attention
from test_ditn import randomise_

EXACT_TOL = 1e-5
PRESETS = ["rlfn", "ditn", "ditn_real"]
EXACT_PASSES = [name for name, step in plugins.PASS_REGISTRY.items() if step.contract == "exact"]


pytestmark = pytest.mark.usefixtures("one_thread")


def image_range_model(preset: str, seed: int = 0) -> torch.nn.Module:
    """DITN ``preset`` x4 with every parameter random (temperature, SDA scale and norm affines too),
    the last conv scaled so outputs have image-like magnitude (std ~0.5): 1e-5 is then a
    meaningful fp32 tolerance for an image in [0, 1]."""
    model = randomise_(build_model(preset, 4), seed)
    with torch.no_grad():
        model.upsample[0].weight.mul_(0.25)
        model.upsample[0].bias.mul_(0.25)
    return model.eval()


@pytest.fixture(scope="module")
def models(shared) -> dict[str, torch.nn.Module]:
    """Official RLFN x4 weights (RLFN works on [0, 255] features: random weights blow up there),
    random image-range DITN / DITN-Real."""
    from esr.loading import load_model

    official = shared / "weights" / "rlfn" / "rlfn_x4.pth"
    if not official.is_file():
        pytest.skip(f"official RLFN weights not found at {official}")
    ditns = {preset: image_range_model(preset) for preset in PRESETS if preset != "rlfn"}
    return {"rlfn": load_model(str(official)), **ditns}


def max_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", EXACT_PASSES)
def test_exact_pass_keeps_output(models, preset: str, name: str) -> None:
    model = models[preset]
    x = torch.rand(1, 3, 29, 45, generator=torch.Generator().manual_seed(1))
    deployed, [report] = plugins.apply_measured(model, [name], x)
    assert report.contract == "exact"
    assert max_diff(deployed, model, x) <= EXACT_TOL
    assert report.max_abs_error is not None and report.max_abs_error <= EXACT_TOL
    assert report.psnr_db is not None and report.psnr_db > 90


@pytest.mark.parametrize("preset", PRESETS)
def test_default_recipe_is_exact_and_rewrites(models, preset: str) -> None:
    model = models[preset]
    recipe = plugins.default_recipe(model)
    assert recipe and all(plugins.PASS_REGISTRY.get(name).contract == "exact" for name in recipe)
    x = torch.rand(2, 3, 24, 33, generator=torch.Generator().manual_seed(2))
    deployed, reports = plugins.apply_measured(model, recipe, x)
    assert max_diff(deployed, model, x) <= EXACT_TOL
    expected_idle = {"layernorm_exact"} if preset == "ditn_real" else set()
    assert {r.name for r in reports if r.sites == 0} == expected_idle
    # the original is untouched, the rewritten copy has no 1x1 norm affines left
    assert any(isinstance(m, (TanhAffine, ChannelLayerNorm)) for m in model.modules()) == preset.startswith("ditn")
    assert not any(isinstance(m, (TanhAffine, ChannelLayerNorm)) for m in deployed.modules())


def test_affine_fold_removes_macs(models) -> None:
    from esr.complexity import count_macs

    model = models["ditn_real"]
    deployed = plugins.apply(model, ["affine_fold"])
    # 16 tanh affines (60x60 1x1 convs) fold away: 16 * 60 * 60 MACs per pixel
    assert count_macs(model, 32, 32) - count_macs(deployed, 32, 32) == 16 * 60 * 60 * 32 * 32


def test_layernorm_tanh_is_lossy_and_reports_error(models) -> None:
    model = models["ditn"]
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    deployed, [report] = plugins.apply_measured(model, ["layernorm_tanh"], x)
    assert report.contract == "lossy" and report.sites == 16
    assert report.max_abs_error == pytest.approx(max_diff(deployed, model, x))
    assert report.max_abs_error > 1e-3
    with torch.no_grad():
        mse = float(((deployed(x).clamp(0, 1) - model(x).clamp(0, 1)) ** 2).mean())
    assert report.psnr_db == pytest.approx(-10 * math.log10(mse), abs=1e-6)
    assert report.psnr_db < 100  # a real cost, reported in dB
    assert sum(isinstance(m, TanhAffine) for m in deployed.modules()) == 16


def test_safe_layernorm_survives_fp16_where_plain_overflows() -> None:
    torch.manual_seed(4)
    plain = ChannelLayerNorm(60)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
    safe = plugins.ditn.safe_from(plain)
    x = torch.randn(2, 60, 5, 7) * 1000  # deviations >> 256: their squares overflow fp16
    reference = plain(x.double().float())
    assert max_diff(safe, plain, x) <= EXACT_TOL
    with torch.no_grad():
        half_plain = plain.half()(x.half()).float()
        half_safe = safe.half()(x.half()).float()
    assert not torch.isfinite(half_plain).all() or (half_plain - reference).abs().max() > 0.1
    assert torch.isfinite(half_safe).all()
    assert (half_safe - reference).abs().max() <= 2e-2


def test_safe_layernorm_is_exact_on_tiny_deviations() -> None:
    norm = SafeChannelLayerNorm(8, 1e-5)
    plain = ChannelLayerNorm(8)
    x = torch.randn(1, 8, 4, 4) * 1e-8  # below the 1e-6 peak clamp
    assert max_diff(norm, plain, x) <= EXACT_TOL


def test_fused_attention_matches_reference() -> None:
    generator = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(7, 12, 64, generator=generator) for _ in range(3))
    temperature = torch.tensor([[[1.7]]])
    expected = channel_attention(q, k, v, temperature)
    assert (fused_channel_attention(q, k, v, temperature) - expected).abs().max() <= EXACT_TOL


def test_resolve_recipe(models) -> None:
    model = models["ditn_real"]
    assert plugins.resolve_recipe(model, "none") == []
    assert plugins.resolve_recipe(model, "default") == plugins.RECIPES["DITN"]
    assert plugins.resolve_recipe(model, "qkv_fuse, affine_fold") == ["qkv_fuse", "affine_fold"]
    with pytest.raises(KeyError, match="qkv_fuse"):
        plugins.resolve_recipe(model, "no_such_pass")
