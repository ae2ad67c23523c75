"""Training and validation datasets registered in BasicSR's ``DATASET_REGISTRY``.

* :class:`HROnlyDataset`: folders of HR images only; the LR of each image is made once
  (lazily, then cached in memory) with MATLAB-compatible bicubic
  (:func:`esr.metrics.matlab_bicubic_downscale` of the mod-cropped HR, the protocol used to
  make DIV2K's ``LR_bicubic``), then aligned random crops, flips and 90-degree rotations.
* :class:`EvalFolderDataset`: a benchmark folder scored by :func:`esr.evaluate.evaluate`
  (the code of ``esr eval``); :class:`esr.train.model.ESRModel` reads its ``data_dir``.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from esr.compat import import_basicsr
from esr.errors import EsrError
from esr.evaluate import IMAGE_SUFFIXES, find_pairs, read_bgr_uint8
from esr.metrics import matlab_bicubic_downscale, mod_crop

import_basicsr()
from basicsr.data.transforms import paired_random_crop  # noqa: E402

log = logging.getLogger("basicsr.esr")


def list_images(folders: str | list[str]) -> list[Path]:
    """Sorted image files of one folder or a list of folders; EsrError if a folder has none."""
    files: list[Path] = []
    for folder in [folders] if isinstance(folders, str) else folders:
        found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if Path(folder).is_dir() else []
        if not found:
            raise EsrError(f"{folder}: no training images found")
        files += found
    return files


def augment(image: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    """(H, W, C) flipped left-right, up-down and/or transposed (the 8 dihedral variants); a view."""
    image = image[:, ::-1] if hflip else image
    image = image[::-1] if vflip else image
    return image.transpose(1, 0, 2) if transpose else image


def to_chw_rgb(bgr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) BGR -> float32 (3, H, W) RGB in [0, 1] (a new tensor)."""
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))).float().div_(255.0)


class HROnlyDataset(Dataset):
    """Random (LR, HR) patch pairs from HR images, LR made by MATLAB bicubic.

    Options (BasicSR dataset dict): ``dataroot_hr`` (folder or list of folders; not
    ``dataroot_gt``, which BasicSR requires to be one string), ``scale``,
    ``gt_size`` (HR patch side, a multiple of ``scale``), ``use_hflip``, ``use_rot``.

    Items: ``{"lq": (3, gt_size/s, gt_size/s), "gt": (3, gt_size, gt_size), "lq_path",
    "gt_path"}``, RGB float32 in [0, 1]. HR images are read at start (those smaller than
    ``gt_size`` are skipped with a warning); each LR is made on first use and kept.
    """

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()
        self.scale = int(opt["scale"])
        self.gt_size = int(opt["gt_size"])
        if self.gt_size % self.scale:
            raise EsrError(f"gt_size {self.gt_size} is not a multiple of scale {self.scale}")
        self.use_hflip = bool(opt["use_hflip"])
        self.use_rot = bool(opt["use_rot"])
        self.paths, self._hr = [], []
        files = list_images(opt["dataroot_hr"])
        for path in files:
            hr = mod_crop(read_bgr_uint8(path), self.scale)
            if min(hr.shape[:2]) >= self.gt_size:
                self.paths.append(path)
                self._hr.append(hr)
        skipped = len(files) - len(self.paths)
        if not self.paths:
            raise EsrError(f"{opt['dataroot_hr']}: no training image is at least {self.gt_size} px on both sides")
        if skipped:
            log.warning("HROnlyDataset: %d image(s) smaller than gt_size %d skipped", skipped, self.gt_size)
        self._lr: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HR, LR) uint8 BGR of image ``index``: HR mod-cropped, LR its MATLAB-bicubic downscale."""
        if index not in self._lr:
            self._lr[index] = matlab_bicubic_downscale(self._hr[index], self.scale)
        return self._hr[index], self._lr[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        hr, lr = self.pair(index)
        path = str(self.paths[index])
        gt, lq = paired_random_crop(hr, lr, self.gt_size, self.scale, path)
        flips = (self.use_hflip and random.random() < 0.5, self.use_rot and random.random() < 0.5,
                 self.use_rot and random.random() < 0.5)
        return {"lq": to_chw_rgb(augment(lq, *flips)), "gt": to_chw_rgb(augment(gt, *flips)), "lq_path": path, "gt_path": path}


class EvalFolderDataset(Dataset):
    """A benchmark folder for validation (``HR/`` + ``LR_bicubic/X{s}/``, or HR images only).

    Options: ``dataroot`` (the folder), ``scale``, ``name`` (for the log; default the folder name). Items are the image names; the scoring
    itself is :func:`esr.evaluate.evaluate` on ``data_dir``, the code ``esr eval`` runs.
    """

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()
        self.data_dir = Path(opt["dataroot"])
        self.name = str(opt.get("name") or self.data_dir.name)
        self.scale = int(opt["scale"])
        self.names = [pair.name for pair in find_pairs(self.data_dir, self.scale)]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"name": self.names[index], "index": torch.tensor(index)}
