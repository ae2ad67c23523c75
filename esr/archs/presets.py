"""``build_model``: a fresh (untrained) model from a preset of :data:`esr.zoo.PRESETS` or a registered arch."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from esr.errors import EsrError
from esr.limits import build_arch
from esr.registry import ARCH_REGISTRY
from esr.zoo import PRESETS


def build_model(name: str, scale: int = 4, **overrides: Any) -> nn.Module:
    """A freshly initialised (untrained) model carrying its ``descriptor`` (``trained=False``).

    Args:
        name: a preset of :data:`esr.zoo.PRESETS` (``rlfn_s``, ``ditn_real``, ``span``, ...) or a
            registered arch name (``RLFN``, ``DITN``, ``SPAN``) with its default kwargs.
        scale: upscale factor, 2, 3 or 4.
        overrides: constructor kwargs that replace the preset's.

    Raises:
        EsrError: an unknown name, or hyperparameters outside the arch's limits (:mod:`esr.limits`),
            before anything is allocated.
    """

    if name in PRESETS:
        arch, kwargs = PRESETS[name].arch, PRESETS[name].kwargs
    elif name in ARCH_REGISTRY:
        arch, kwargs = name, {}
    else:
        known = ", ".join(list(PRESETS) + list(ARCH_REGISTRY))
        raise EsrError(f"unknown model preset {name!r} (known: {known})")
    model = build_arch(arch, {**kwargs, "upscale": scale, **overrides}, f"preset {name}")
    model.descriptor = model.descriptor.replace(name=name)
    return model
