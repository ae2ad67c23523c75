"""The top-level Python API: ``esr.upscale`` and the README's example, on every kind of input."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import esr

REPO = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)\n```", section, flags=re.S).group(1)


def test_top_level_names():
    public = [name for name in dir(esr) if not name.startswith("_")]
    assert {"load_model", "build_model", "Upscaler", "upscale", "open_model"} <= set(public)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_readme_example_runs_on_files(tmp_path, monkeypatch, mode):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 17, 4), dtype=np.uint8)).convert(mode).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    exec(readme_example(), {})
    with Image.open(tmp_path / "photo_x4.png") as out:
        assert out.mode == mode and out.size == (68, 48)


@pytest.mark.parametrize("shape,dtype", [((12, 17, 3), np.uint8), ((12, 17, 4), np.uint8), ((12, 17), np.uint8),
                                         ((12, 17, 3), np.float32), ((12, 17, 3), np.uint16)])
def test_readme_call_on_arrays_returns_the_same_kind(shape, dtype):
    rng = np.random.default_rng(1)
    image = rng.random(shape).astype(dtype) if dtype == np.float32 else \
        rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    image.flags.writeable = False
    call = next(line for line in readme_example().splitlines() if "esr.upscale(image)" in line)
    namespace = {"esr": esr, "image": image}
    exec(call.split("#")[0].strip(), namespace)
    big = namespace["big"]
    assert isinstance(big, np.ndarray) and big.dtype == dtype and big.shape == (48, 68, *shape[2:])
    if dtype == np.float32:
        assert 0.0 <= big.min() and big.max() <= 1.0


def test_rgba_alpha_and_float_match_the_integer_path():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    opaque = np.dstack([rgb, np.full((10, 14), 255, np.uint8)])
    out = esr.upscale(opaque)
    assert (out[..., 3] == 255).all()
    np.testing.assert_array_equal(out[..., :3], esr.upscale(rgb))
    as_float = esr.upscale(rgb.astype(np.float32) / 255)
    assert np.abs(as_float * 255 - esr.upscale(rgb)).max() <= 0.51


def test_wrong_inputs_are_refused():
    with pytest.raises(TypeError, match="numpy array or a PIL image"):
        esr.upscale([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="expected"):
        esr.upscale(np.zeros((4, 4, 5), np.uint8))
