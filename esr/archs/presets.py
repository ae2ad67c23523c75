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
    # official SPAN release (hongyuanyu/SPAN, Apache-2.0): spanx2_ch48 / spanx3_ch48 / spanx4_ch48.pth
    "span": ("SPAN", dict(feature_channels=48)),
    # NTIRE 2024 ESR winning entry (Amazingren/NTIRE2024_ESR, models/team38_SPAN.py, SPAN30 with
    # feature_channels=28; weights model_zoo/team38_span_ch28_slim.pth, eval_conv-only layout): 0.151 M params
    "span_ntire": ("SPAN", dict(feature_channels=28)),
}
"""preset name -> (registered arch name, constructor kwargs)."""


def build_model(name: str, scale: int = 4, **overrides: Any) -> nn.Module:
    """A freshly initialised (untrained) model.

    Args:
        name: a preset (``rlfn``, ``rlfn_s``, ``rlfn_ntire``, ``ditn``, ``ditn_real``, ``span``,
            ``span_ntire``) or a registered arch name (``RLFN``, ``DITN``, ``SPAN``) with its default kwargs.
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
