"""DITN: parity with spandrel's DITN_Real, the LayerNorm form, the detector and ChannelLayerNorm."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from esr.archs.ditn_arch import DITN, ChannelLayerNorm, TanhAffine, detect_ditn
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Draw every parameter from a normal distribution (including ISA.temperature and
    SDA.scale, which start at 1 and 0), with std 1/sqrt(fan_in) for weights so the
    activations stay O(1) and an absolute tolerance is meaningful."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            std = param[0].numel() ** -0.5 if param.ndim > 1 else 0.5
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


def expected_param_count(
    in_channels: int = 3, out_channels: int = 3, dim: int = 60, num_ufone: int = 1, num_itl: int = 4,
    num_sal: int = 4, ffn_expansion: float = 2, bias: bool = False, upscale: int = 4, norm: str = "tanh",
) -> int:
    """Parameter count from the layer shapes of the DITN description."""

    def conv(cin: int, cout: int, kernel: int, groups: int = 1, has_bias: bool = True) -> int:
        return cout * (cin // groups) * kernel * kernel + (cout if has_bias else 0)

    hidden = int(dim * ffn_expansion)
    norm_params = conv(dim, dim, 1) if norm == "tanh" else 2 * dim  # 1x1 conv, or LN weight + bias
    ffn = (conv(dim, 2 * hidden, 1, has_bias=bias)
           + conv(2 * hidden, 2 * hidden, 3, groups=2 * hidden, has_bias=bias)
           + conv(hidden, dim, 1, has_bias=bias))
    isa = 1 + (dim * 3 * dim + 3 * dim) + conv(dim, dim, 1, has_bias=bias)  # temperature, qkv, project_out
    sda = (dim + conv(dim, 2 * dim, 1)  # scale, proj_first
           + conv(dim, dim, 5, groups=dim) + conv(dim, dim, 7, groups=dim) + conv(dim, dim, 1)  # DConvs
           + conv(dim, dim, 1))  # proj_last
    itl = isa + ffn + 2 * norm_params
    sal = sda + ffn + 2 * norm_params
    return (conv(in_channels, dim, 3) + num_ufone * (num_itl * itl + num_sal * sal)
            + conv(dim, dim, 3) + conv(dim, out_channels * upscale**2, 3))


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tanh_form_matches_spandrel(scale: int) -> None:
    spandrel_ditn = pytest.importorskip("spandrel.architectures.DITN")
    reference = randomise_(spandrel_ditn.DITN(upscale=scale), seed=scale).eval()
    ours = DITN(upscale=scale, norm="tanh").eval()
    ref_state = reference.state_dict()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref_state.items()]
    ours.load_state_dict(ref_state, strict=True)
    torch.manual_seed(scale)
    for shape in [(1, 3, 64, 64), (1, 3, 37, 53)]:
        x = torch.rand(shape)
        with torch.no_grad():
            expected, actual = reference(x), ours(x)
        assert actual.shape == (1, 3, shape[2] * scale, shape[3] * scale) == expected.shape
        assert expected.std() > 0.1  # random weights give a non-trivial output
        assert (actual - expected).abs().max().item() <= 1e-5


def test_spandrel_loads_our_tanh_state_dict() -> None:
    spandrel = pytest.importorskip("spandrel")
    loaded = spandrel.ModelLoader().load_from_state_dict(DITN(upscale=3, norm="tanh").state_dict())
    assert loaded.architecture.id == "DITN" and loaded.scale == 3


def test_default_is_ditn_real_x4_size() -> None:
    model = DITN()
    assert count(model) == expected_param_count() == 444_112  # 0.444 M in the paper
    print(f"DITN-Real x4 parameters: {count(model)}")


def test_layernorm_form_forward_backward_odd_sizes() -> None:
    torch.manual_seed(0)
    model = DITN(upscale=4, norm="layernorm")
    expected = expected_param_count(upscale=4, norm="layernorm")
    print(f"DITN LayerNorm x4 parameters: {count(model)} (formula: {expected})")
    assert count(model) == expected
    assert all(isinstance(m, ChannelLayerNorm) for n, m in model.named_modules() if n.endswith(("conv1", "conv2")))
    assert not any(isinstance(m, TanhAffine) for m in model.modules())
    for shape in [(1, 3, 37, 53), (2, 3, 21, 30)]:
        model.zero_grad(set_to_none=True)
        x = torch.rand(shape)
        out = model(x)
        assert out.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        for name, param in model.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_tiny_input_and_other_patch_size() -> None:
    model = DITN(dim=16, num_itl=1, num_sal=1, patch_size=4, upscale=2).eval()
    assert model.descriptor.size_multiple == 4
    with torch.no_grad():
        assert model(torch.rand(1, 3, 3, 5)).shape == (1, 3, 6, 10)  # smaller than a patch
        assert model(torch.rand(1, 3, 9, 6)).shape == (1, 3, 18, 12)


def test_descriptor_and_registry() -> None:
    model = DITN(upscale=3, norm="layernorm")
    desc = model.descriptor
    assert (desc.arch, desc.scale, desc.size_multiple, desc.in_channels, desc.out_channels) == ("DITN", 3, 8, 3, 3)
    assert desc.hyperparams == model.hyperparams and desc.hyperparams["norm"] == "layernorm"
    assert ARCH_REGISTRY.get("DITN") is DITN
    assert DETECTOR_REGISTRY.get("DITN") is detect_ditn
    with pytest.raises(ValueError):
        DITN(norm="batchnorm")


@pytest.mark.parametrize("kwargs", [
    dict(upscale=4, norm="tanh"),
    dict(upscale=2, norm="layernorm"),
    dict(upscale=3, norm="tanh", dim=24, num_ufone=2, num_itl=2, num_sal=3, bias=True),
    dict(upscale=4, norm="layernorm", dim=20, num_itl=1, num_sal=2, ffn_expansion=1.5),
    dict(upscale=2, norm="layernorm", dim=48, num_itl=1, num_sal=0, ffn_expansion=2.66),  # hidden 127
    dict(upscale=3, norm="tanh", dim=16, num_itl=0, num_sal=1, in_channels=1, out_channels=1),
])
def test_detector_round_trip(kwargs: dict) -> None:
    torch.manual_seed(0)
    model = randomise_(DITN(**kwargs))
    state = model.state_dict()
    detected = detect_ditn(state)
    assert detected is not None
    name, found = detected
    assert name == "DITN" and found["patch_size"] == 8
    rebuilt = ARCH_REGISTRY.get(name)(**found)
    rebuilt.load_state_dict(state, strict=True)
    assert count(rebuilt) == count(model) == expected_param_count(
        **{k: v for k, v in model.hyperparams.items() if k != "patch_size"})
    for key, value in model.hyperparams.items():
        if key == "ffn_expansion":  # only the hidden width is stored
            assert int(found["dim"] * found[key]) == int(model.hyperparams["dim"] * value)
        else:
            assert found[key] == value, key
    x = torch.rand(1, found["in_channels"], 16, 24)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_detector_rejects_other_state_dicts() -> None:
    from esr.archs.rlfn_arch import RLFN

    assert detect_ditn({}) is None
    assert detect_ditn(RLFN().state_dict()) is None
    state = DITN(dim=16, num_itl=1, num_sal=1).state_dict()
    assert detect_ditn({k: v for k, v in state.items() if not k.startswith("UFONE.")}) is None


@pytest.mark.parametrize("shape", [(2, 60, 7, 9), (1, 5, 1, 1)])
def test_channel_layernorm_matches_layer_norm(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    channels = shape[1]
    norm = ChannelLayerNorm(channels)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(shape) * 3 + 1
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (channels,), norm.weight, norm.bias, eps=1e-5)
    assert norm.eps == 1e-5
    assert (norm(x) - expected.permute(0, 3, 1, 2)).abs().max().item() <= 1e-5
