"""The model zoo and the arch presets as data (no torch import: ``esr models`` reads only this).

- :data:`PRESETS`: named arch variants (constructor kwargs), built with random weights by
  :func:`esr.archs.presets.build_model`; ``weights`` says where trained weights come from.
- :data:`ZOO`: named, checksummed weights (url, sha256, license, origin) of one preset and scale.

``params`` and ``gmacs`` (multiply-accumulates of one forward pass on a 1x3x256x256 input,
counted by :func:`esr.complexity.count_macs`) are data; ``tests/test_cli_models.py``
recounts them and fails when a table row is stale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MACS_SIZE = 256
"""LR input side at which ``gmacs`` is counted."""


@dataclass(frozen=True)
class Preset:
    """An arch variant: registered arch name + constructor kwargs; params/GMACs of its x4 build."""

    name: str
    arch: str
    kwargs: dict[str, Any]
    params_x4: int
    gmacs_x4: float
    weights: str
    """Where trained weights come from (printed when a command needs them and none are given)."""
    description: str = ""


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable (or embedded) set of weights for ``preset`` at ``scale``."""

    name: str
    preset: str
    scale: int
    url: str
    sha256: str
    license: str
    source: str
    params: int
    gmacs: float

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


_RLFN_WEIGHTS = "the zoo (esr models lists rlfn_x2, rlfn_x4, ...), or esr train options/rlfn_x4.yml"
_DITN_WEIGHTS = ("the official DITN release (pass its checkpoint: --model path/to/DITN_Real_x4.pth), "
                 "or esr train options/{name}_x4.yml")
_SPAN_WEIGHTS = ("the official SPAN release (pass its checkpoint: --model path/to/spanx4_ch48.pth), "
                 "or esr train options/span_x4.yml")

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset("rlfn", "RLFN", dict(feature_channels=52, mid_channels=52, num_blocks=6, esa_channels=16),
               543740, 33.931, _RLFN_WEIGHTS, "RLFN (52 ch, 6 RLFB)"),
        Preset("rlfn_s", "RLFN", dict(feature_channels=48, mid_channels=48, num_blocks=6, esa_channels=16),
               470208, 29.121, _RLFN_WEIGHTS, "RLFN-S (48 ch)"),
        Preset("rlfn_ntire", "RLFN", dict(feature_channels=46, mid_channels=48, num_blocks=4, esa_channels=16),
               317218, 19.658, _RLFN_WEIGHTS, "RLFN_ntire (46/48 ch, 4 RLFB)"),
        Preset("ditn", "DITN", dict(norm="layernorm"), 387472, 26.986,
               _DITN_WEIGHTS.format(name="ditn"), "DITN, channel LayerNorm"),
        Preset("ditn_real", "DITN", dict(norm="tanh"), 444112, 30.761,
               _DITN_WEIGHTS.format(name="ditn_real"), "DITN-Real, tanh norm"),
        # official SPAN release (hongyuanyu/SPAN, Apache-2.0): spanx2_ch48 / spanx3_ch48 / spanx4_ch48.pth
        Preset("span", "SPAN", dict(feature_channels=48), 426288, 27.868,
               _SPAN_WEIGHTS, "SPAN (48 ch, 6 SPAB), official release"),
        # NTIRE 2024 ESR winning entry (Amazingren/NTIRE2024_ESR, models/team38_SPAN.py, 28 channels;
        # weights model_zoo/team38_span_ch28_slim.pth, eval_conv-only layout)
        Preset("span_ntire", "SPAN", dict(feature_channels=28), 150688, 9.834,
               _SPAN_WEIGHTS, "SPAN (28 ch), NTIRE 2024 ESR entry"),
    ]
}
"""preset name -> :class:`Preset`."""

_RLFN_REPO = "https://github.com/bytedance/RLFN/raw/main/model_zoo"
_RLFN_SOURCE = "official RLFN release (Kong et al., CVPRW 2022), bytedance/RLFN"

ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry("rlfn_x2", "rlfn", 2, f"{_RLFN_REPO}/rlfn_x2.pth",
                 "eafe5d5feeb122022453595c06d79160facdc157ae88deb02a44c50f5eba2d41",
                 "Apache-2.0", _RLFN_SOURCE, 526856, 32.827),
        ZooEntry("rlfn_x4", "rlfn", 4, f"{_RLFN_REPO}/rlfn_x4.pth",
                 "8c7edb57dfc89048bafba29d591d4c27d4099964b4a9e22df23d6dc257a637c0",
                 "Apache-2.0", _RLFN_SOURCE, 543740, 33.931),
        ZooEntry("rlfn_s_x2", "rlfn_s", 2, f"{_RLFN_REPO}/rlfn_s_x2.pth",
                 "f5175f499f869c1b884c2552a1bcd6abd07ab352e3d8c8c9abe31b1deb60fe45",
                 "Apache-2.0", _RLFN_SOURCE, 454620, 28.102),
        ZooEntry("rlfn_s_x4", "rlfn_s", 4, f"{_RLFN_REPO}/rlfn_s_x4.pth",
                 "f769c5a88433786b2db0c2b24da6ca6c92a24c62344b9354a390f8a74388e89d",
                 "Apache-2.0", _RLFN_SOURCE, 470208, 29.121),
        ZooEntry("rlfn_ntire_x4", "rlfn_ntire", 4,
                 "https://github.com/ofsoundof/NTIRE2022_ESR/raw/main/model_zoo/team04_rlfn.pth",
                 "3c9be7b9d7a4bece9b68c83a56a1ffb38010f76413d5f215be6b4be842e18fb2",
                 "Apache-2.0", "RLFN_ntire, NTIRE 2022 ESR challenge release", 317218, 19.658),
    ]
}
"""zoo name -> :class:`ZooEntry`."""

DEFAULT_MODEL = "rlfn_s_x4"
"""Embedded as package data (esr/weights/), so the default works offline on a fresh install."""
