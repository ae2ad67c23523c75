"""esr: deployment-oriented efficient super-resolution (RLFN, DITN).

``esr.load_model(name_or_path)`` returns a trained eval-mode model;
``esr.build_model(name, scale)`` a fresh one. Both map RGB float NCHW in [0, 1] to
the upscaled image in [0, 1]. They are imported on first use (PEP 562), so
``import esr`` and ``esr --help`` do not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY_ATTRS = {"load_model": "esr.loading", "build_model": "esr.archs.presets"}
__all__ = ["__version__", *_LAZY_ATTRS]


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module 'esr' has no attribute {name!r}")
