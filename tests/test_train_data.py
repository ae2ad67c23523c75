"""HR-only training data (MATLAB-bicubic LR, aligned augmentation) and the DITN LayerNorm -> Tanh transform."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esr.archs.ditn_arch import DITN, ChannelLayerNorm, TanhAffine
from esr.errors import EsrError
from esr.metrics import matlab_bicubic_downscale
from esr.plugins.ditn import fit_tanh_affine
from esr.train.data import HROnlyDataset
from esr.train.transforms import ditn_layernorm_to_tanh


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        smooth = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)
        cv2.imwrite(str(folder / f"im{i}.png"), smooth)


def to_bgr_uint8(chw: torch.Tensor) -> np.ndarray:
    return np.round(chw.permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8)


def test_lr_is_matlab_bicubic_of_the_augmented_hr(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(48, 48)])
    data = HROnlyDataset(dict(dataroot_hr=str(tmp_path / "hr"), scale=4, gt_size=48, use_hflip=True, use_rot=True))
    hr_original = cv2.imread(str(tmp_path / "hr" / "im0.png"))
    variants = set()
    for _ in range(24):
        item = data[0]
        assert item["gt"].shape == (3, 48, 48) and item["lq"].shape == (3, 12, 12)
        assert 0 <= float(item["lq"].min()) and float(item["lq"].max()) <= 1
        gt, lq = to_bgr_uint8(item["gt"]), to_bgr_uint8(item["lq"])
        # bicubic commutes with flips and transposes, so LR of the augmented HR = augmented LR
        assert np.array_equal(matlab_bicubic_downscale(gt, 4), lq)
        variants.add(gt.tobytes())
        assert sorted(gt.reshape(-1, 3).tolist()) == sorted(hr_original.reshape(-1, 3).tolist())
    assert len(variants) > 2  # augmentation happens


def test_random_crops_are_aligned_and_small_images_skipped(tmp_path: Path) -> None:
    write_images(tmp_path / "a", [(40, 40), (64, 80)])
    data = HROnlyDataset(dict(dataroot_hr=[str(tmp_path / "a")], scale=2, gt_size=48, use_hflip=False, use_rot=False))
    assert len(data) == 1  # the 40x40 image is smaller than gt_size
    full_lr = matlab_bicubic_downscale(cv2.imread(str(data.paths[0])), 2)
    for _ in range(5):
        item = data[0]
        gt, lq = to_bgr_uint8(item["gt"]), to_bgr_uint8(item["lq"])
        hr = cv2.imread(str(data.paths[0]))
        tops = [(y, x) for y in range(0, 64 - 48 + 1, 2) for x in range(0, 80 - 48 + 1, 2)
                if np.array_equal(hr[y:y + 48, x:x + 48], gt)]
        assert tops and np.array_equal(full_lr[tops[0][0] // 2:tops[0][0] // 2 + 24, tops[0][1] // 2:tops[0][1] // 2 + 24], lq)


def test_dataset_errors_name_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EsrError, match="empty: no training images"):
        HROnlyDataset(dict(dataroot_hr=str(tmp_path / "empty"), scale=4, gt_size=48, use_hflip=True, use_rot=True))
    with pytest.raises(EsrError, match="not a multiple of scale"):
        HROnlyDataset(dict(dataroot_hr=str(tmp_path / "empty"), scale=4, gt_size=50, use_hflip=True, use_rot=True))


def test_fit_tanh_affine_recovers_a_known_layer() -> None:
    torch.manual_seed(0)
    truth = TanhAffine(6)
    inputs = torch.randn(4, 6, 9, 9)
    with torch.no_grad():
        fitted = fit_tanh_affine(inputs, truth(inputs))
        assert torch.allclose(fitted.weight, truth.weight, atol=1e-3)
        assert torch.allclose(fitted.bias, truth.bias, atol=1e-3)


def test_ditn_layernorm_to_tanh_approximates_and_has_the_real_layout() -> None:
    torch.manual_seed(0)
    kwargs = dict(dim=12, num_itl=1, num_sal=1, upscale=2)
    ln_model = DITN(norm="layernorm", **kwargs).eval()
    with torch.no_grad():  # non-trivial norm affines and SAL scales, as after training
        for module in ln_model.modules():
            if isinstance(module, ChannelLayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for name, param in ln_model.named_parameters():
            if name.endswith("SDA.scale"):
                param.uniform_(0.5, 1.0)
    calibration = torch.rand(4, 3, 16, 16)
    converted = ditn_layernorm_to_tanh(ln_model, calibration)
    real = DITN(norm="tanh", **kwargs)
    assert {k: v.shape for k, v in converted.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    assert converted.hyperparams["norm"] == "tanh" and ln_model.hyperparams["norm"] == "layernorm"
    test = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        reference, swapped = ln_model(test), converted(test)
        naive = DITN(norm="tanh", **kwargs).eval()  # same weights, norm slots left at random init
        naive.load_state_dict({k: v for k, v in converted.state_dict().items() if ".conv" not in k}, strict=False)
        naive_err = (naive(test) - reference).abs().mean()
    fit_err = (swapped - reference).abs().mean()
    assert fit_err < 0.2 * naive_err
    with pytest.raises(ValueError, match="norm='layernorm'"):
        ditn_layernorm_to_tanh(real, calibration)
