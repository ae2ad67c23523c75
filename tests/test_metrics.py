"""The metric protocol: bicubic baseline figures, MATLAB-bicubic LR generation, `esr eval --json`."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from esr.cli import main
from esr.evaluate import find_pairs, read_bgr_uint8
from esr.metrics import matlab_bicubic_downscale, mod_crop, psnr_ssim_y


def test_bicubic_baseline_set5_x4(shared):
    """MATLAB-bicubic upscaling of the shared LR gives the published 28.42 dB (reference.md)."""
    from esr.compat import import_basicsr

    import_basicsr()
    from basicsr.utils.matlab_functions import imresize

    scores = []
    for pair in find_pairs(shared / "datasets" / "Set5", 4):
        hr = mod_crop(read_bgr_uint8(pair.hr_path), 4)
        lr = read_bgr_uint8(pair.lr_path).astype(np.float64) / 255.0
        up = np.clip(np.round(imresize(lr, 4) * 255.0), 0, 255).astype(np.uint8)
        scores.append(psnr_ssim_y(up, hr, crop_border=4)[0])
    # we get 28.4305; the literature quotes 28.42 or 28.43 depending on where the LR is rounded
    assert abs(np.mean(scores) - 28.42) <= 0.02


def test_generated_lr_matches_shared_lr(shared):
    for pair in find_pairs(shared / "datasets" / "Set5", 4):
        hr = mod_crop(read_bgr_uint8(pair.hr_path), 4)
        made = matlab_bicubic_downscale(hr, 4)
        given = read_bgr_uint8(pair.lr_path)
        assert made.shape == given.shape
        diff = np.abs(made.astype(int) - given.astype(int))
        # off-by-one rounding on ~10% of pixels (the shared copies were rounded differently), never more
        assert diff.max() <= 2 and (diff > 0).mean() < 0.12


def test_eval_json_on_hr_only_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for index in range(2):
        smooth = cv2.GaussianBlur(rng.integers(0, 256, (50, 46, 3), dtype=np.uint8), (7, 7), 2)
        cv2.imwrite(str(tmp_path / f"img{index}.png"), smooth)
    assert main(["eval", "--data", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scale"] == 4 and len(result["images"]) == 2
    assert set(result) >= {"model", "dataset", "scale", "psnr_y", "ssim_y", "images"}
    assert 10 < result["psnr_y"] < 80


def test_fidelity_psnr_y_is_the_protocols_y_psnr():
    """BasicSR's Y-PSNR (the protocol's metric, peak 255 on uint8) is the independent reference."""
    from esr.compat import import_basicsr
    from esr.metrics import fidelity_psnr, fidelity_psnr_y

    import_basicsr()
    from basicsr.metrics import calculate_psnr

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (48, 40, 3)).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-4, 5, hr.shape), 0, 255).astype(np.uint8)
    expected = calculate_psnr(sr[..., ::-1], hr[..., ::-1], crop_border=0, input_order="HWC", test_y_channel=True)
    as_float = [np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255 for image in (hr, sr)]
    assert fidelity_psnr_y([as_float[0]], [as_float[1]]) == pytest.approx(expected, abs=0.01)
    assert fidelity_psnr_y([as_float[0]], [as_float[0]]) == float("inf")
    gray = [a[:, :1] for a in as_float]  # not RGB: every channel counts, as fidelity_psnr
    assert fidelity_psnr_y([gray[0]], [gray[1]]) == fidelity_psnr([gray[0]], [gray[1]])
