"""Named architecture presets (variants differ only in constructor kwargs) and ``build_model``."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from esr.registry import ARCH_REGISTRY

ARCH_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "rlfn": ("RLFN", dict(feature_channels=52, mid_channels=52, num_blocks=6, esa_channels=16)),
    "rlfn_s": ("RLFN", dict(feature_channels=48, mid_channels=48, num_blocks=6, esa_channels=16)),
    "rlfn_ntire": ("RLFN", dict(feature_channels=46, mid_channels=48, num_blocks=4, esa_channels=16)),
    "ditn": ("DITN", dict(norm="layernorm")),
    "ditn_real": ("DITN", dict(norm="tanh")),
}
"""preset name -> (registered arch name, constructor kwargs)."""


def build_model(name: str, scale: int = 4, **overrides: Any) -> nn.Module:
    """A freshly initialised (untrained) model.

    Args:
        name: a preset (``rlfn``, ``rlfn_s``, ``rlfn_ntire``, ``ditn``, ``ditn_real``) or a
            registered arch name (``RLFN``, ``DITN``) with its default kwargs.
        scale: upscale factor, 2, 3 or 4.
        overrides: constructor kwargs that replace the preset's.
    """
    if name in ARCH_PRESETS:
        arch, kwargs = ARCH_PRESETS[name]
    elif name in ARCH_REGISTRY:
        arch, kwargs = name, {}
    else:
        known = ", ".join(sorted(ARCH_PRESETS) + list(ARCH_REGISTRY))
        raise KeyError(f"unknown model preset {name!r} (known: {known})")
    return ARCH_REGISTRY.get(arch)(**{**kwargs, "upscale": scale, **overrides})
