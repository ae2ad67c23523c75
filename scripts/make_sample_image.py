"""Write esr/data/sample_lr.png: the package's real-image sample (CC0; see esr/data/LICENSE-sample.txt).

The centre 128x128 of scikit-image's "coffee" photograph (CC0, Rachel Michetti) downscaled 2x by
area averaging, so that it looks like a low-resolution SR input: a cup, a saucer and a spoon
with specular highlights, on wood grain. Used by ``--backend auto`` to check each candidate's
output against fp32. Chosen among 24 crops of four CC0/public-domain images because its
output PSNR vs fp32 predicts Set5's best: for RLFN x4 and RLFN-S x4, INT8 (all layers) and
OpenVINO bf16 errors measured within 0.5 dB of their Set5 values (a cat crop read INT8 error
2-3.4 dB better than Set5 does).

Usage: python scripts/make_sample_image.py  (needs scikit-image, which esr does not depend on)
"""
from __future__ import annotations

from pathlib import Path

import cv2

OUT = Path(__file__).resolve().parent.parent / "esr" / "data" / "sample_lr.png"


def main() -> None:
    from skimage.data import coffee

    rgb = coffee()  # (400, 600, 3) uint8
    small = cv2.resize(rgb, (300, 200), interpolation=cv2.INTER_AREA)
    crop = small[36:164, 86:214]
    cv2.imwrite(str(OUT), crop[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {OUT} ({crop.shape[1]}x{crop.shape[0]})")


if __name__ == "__main__":
    main()
