"""The metric protocol: bicubic baseline figures, MATLAB-bicubic LR generation, `esr eval --json`."""
from __future__ import annotations

import json

import cv2
import numpy as np

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
