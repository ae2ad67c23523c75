"""Calibration data (LR crops from a folder) and activation statistics gathered with ONNX Runtime."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx

from esr.backends.sessions import ort_session
from esr.errors import EsrError
from esr.quantize.ranges import TensorStats

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def load_crops(folder: str | Path, count: int, size: int | tuple[int, int] = 96, downscale: int = 1,
               seed: int = 0) -> list[np.ndarray]:
    """``count`` random ``size`` crops (a side, or (height, width)): float32 RGB (1, 3, h, w) in [0, 1].

    Images are cycled in name order (one crop per image per cycle); with ``downscale`` > 1 each
    image is first shrunk by MATLAB-compatible bicubic (never below 1 pixel), so an HR folder
    yields LR-like crops. Undecodable files are skipped with a warning; an image smaller than
    ``size`` is mirror-padded to it (every crop has exactly ``size``: a static-shape graph takes
    nothing else, and a dynamic one has a minimum input size).
    """
    import cv2

    from esr.export.images import fit
    from esr.metrics import matlab_bicubic_downscale, mod_crop

    height, width = (size, size) if isinstance(size, int) else size

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise EsrError(f"{folder}: no calibration images found")
    rng = np.random.default_rng(seed)
    images = []
    for path in files[:count]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"warning: {path}: cannot decode image, skipped")
            continue
        if downscale > 1 and min(image.shape[:2]) >= downscale:
            image = matlab_bicubic_downscale(mod_crop(image, downscale), downscale)
        images.append(np.ascontiguousarray(image[..., ::-1]))
    if not images:
        raise EsrError(f"{folder}: none of the calibration images could be decoded")
    crops = []
    for index in range(count):
        image = images[index % len(images)]
        h, w = image.shape[:2]
        top = int(rng.integers(0, max(h - height, 0) + 1))
        left = int(rng.integers(0, max(w - width, 0) + 1))
        crop = image[top:top + height, left:left + width].astype(np.float32) / 255.0
        crop = np.ascontiguousarray(crop.transpose(2, 0, 1))[None]
        crops.append(fit(crop, height, width))
    return crops


def collect_stats(model: onnx.ModelProto, tensors: list[str], crops: list[np.ndarray], sample_size: int = 4096,
                  progress: bool = True, seed: int = 0, threads: int = 0) -> dict[str, TensorStats]:
    """Run ``model`` on every crop with ``tensors`` exposed as outputs; per tensor min/max and a value sample."""
    from tqdm import tqdm

    probe = copy.deepcopy(model)
    existing = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    runner = ort_session(probe, threads=threads, optimize=False)
    input_name = runner.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    stats = {name: TensorStats() for name in tensors}
    for crop in tqdm(crops, desc="calibrate", disable=None if progress else True, leave=False):
        try:
            values = runner.run(tensors, {input_name: crop})
        except Exception as err:  # noqa: BLE001  (onnxruntime's own exception types)
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EsrError(f"quantize: the model fails on a {'x'.join(map(str, crop.shape))} calibration crop "
                           f"({reason})") from None
        for name, value in zip(tensors, values):
            stats[name].update(value, sample_size, rng)
    return stats
