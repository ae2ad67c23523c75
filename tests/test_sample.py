"""The shipped sample image: present, the documented size, licensed, and declared as package data."""
from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np

from esr.sample import SAMPLE_LICENSE, SAMPLE_PATH, sample_batch, sample_rgb


def test_sample_image_shape_license_and_packaging():
    rgb = sample_rgb()
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    assert 40 < rgb.mean() < 215 and rgb.std() > 20  # a real picture, not a flat or empty file
    batch = sample_batch()
    assert batch.shape == (1, 3, 128, 128) and batch.dtype == np.float32 and 0 <= batch.min() and batch.max() <= 1
    assert np.allclose(batch[0].transpose(1, 2, 0) * 255, rgb, atol=1e-3)
    assert "CC0" in SAMPLE_LICENSE.read_text()
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    package_data = setup["options.package_data"]["esr"]
    assert f"data/*{SAMPLE_PATH.suffix}" in package_data and "data/LICENSE-*" in package_data
