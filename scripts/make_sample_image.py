"""Write esr/data/sample_lr.png: the package's real-image sample (CC0; see esr/data/LICENSE-sample.txt).

A crop of scikit-image's "chelsea" photograph (CC0, Stefan van der Walt), downscaled 2x by area
averaging so that it looks like a low-resolution SR input (fur, whiskers, eyes, a blurred
background). Used by ``--backend auto`` to check each candidate's output against fp32.

Usage: python scripts/make_sample_image.py  (needs scikit-image, which esr does not depend on)
"""
from __future__ import annotations

from pathlib import Path

import cv2

OUT = Path(__file__).resolve().parent.parent / "esr" / "data" / "sample_lr.png"


def main() -> None:
    from skimage.data import chelsea

    rgb = chelsea()  # (300, 451, 3) uint8
    small = cv2.resize(rgb, (226, 150), interpolation=cv2.INTER_AREA)
    crop = small[14:142, 56:184]
    cv2.imwrite(str(OUT), crop[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {OUT} ({crop.shape[1]}x{crop.shape[0]})")


if __name__ == "__main__":
    main()
