"""The model zoo: named, checksummed weights as data (url, sha256, license, origin)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable (or embedded) set of weights.

    ``preset`` names an entry of :data:`esr.archs.presets.ARCH_PRESETS`.
    """

    name: str
    preset: str
    scale: int
    url: str
    sha256: str
    license: str
    source: str

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


_RLFN_REPO = "https://github.com/bytedance/RLFN/raw/main/model_zoo"
_RLFN_SOURCE = "official RLFN release (Kong et al., CVPRW 2022), bytedance/RLFN"

ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry("rlfn_x2", "rlfn", 2, f"{_RLFN_REPO}/rlfn_x2.pth",
                 "eafe5d5feeb122022453595c06d79160facdc157ae88deb02a44c50f5eba2d41",
                 "Apache-2.0", _RLFN_SOURCE),
        ZooEntry("rlfn_x4", "rlfn", 4, f"{_RLFN_REPO}/rlfn_x4.pth",
                 "8c7edb57dfc89048bafba29d591d4c27d4099964b4a9e22df23d6dc257a637c0",
                 "Apache-2.0", _RLFN_SOURCE),
        ZooEntry("rlfn_s_x2", "rlfn_s", 2, f"{_RLFN_REPO}/rlfn_s_x2.pth",
                 "f5175f499f869c1b884c2552a1bcd6abd07ab352e3d8c8c9abe31b1deb60fe45",
                 "Apache-2.0", _RLFN_SOURCE),
        ZooEntry("rlfn_s_x4", "rlfn_s", 4, f"{_RLFN_REPO}/rlfn_s_x4.pth",
                 "f769c5a88433786b2db0c2b24da6ca6c92a24c62344b9354a390f8a74388e89d",
                 "Apache-2.0", _RLFN_SOURCE),
        ZooEntry("rlfn_ntire_x4", "rlfn_ntire", 4,
                 "https://github.com/ofsoundof/NTIRE2022_ESR/raw/main/model_zoo/team04_rlfn.pth",
                 "3c9be7b9d7a4bece9b68c83a56a1ffb38010f76413d5f215be6b4be842e18fb2",
                 "Apache-2.0", "RLFN_ntire, NTIRE 2022 ESR challenge release"),
    ]
}

DEFAULT_MODEL = "rlfn_s_x4"
"""Embedded as package data (esr/weights/), so the default works offline on a fresh install."""
