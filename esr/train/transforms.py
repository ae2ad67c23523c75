"""Warm-start transforms: turn a finished stage's model into the next stage's starting point.

``ditn_layernorm_to_tanh``: the deploy path of DITN. Every LayerNorm norm slot becomes a
:class:`TanhAffine` (``W @ tanh(x) + B``) fitted by :func:`esr.plugins.ditn.layernorm_to_tanh`
(the same conversion as the ``layernorm_tanh`` deploy pass) on a calibration batch; the
result has the DITN-Real state-dict layout and is then fine-tuned.
"""
from __future__ import annotations

import copy

import torch

from esr.archs.ditn_arch import DITN
from esr.plugins.ditn import layernorm_to_tanh
from esr.registry import Registry

WARM_START_TRANSFORMS = Registry("warm-start transform")
"""name -> ``fn(model, calibration) -> model``; ``calibration`` is (N, 3, h, w) LR inputs in [0, 1]."""


@WARM_START_TRANSFORMS.register(name="ditn_layernorm_to_tanh")
def ditn_layernorm_to_tanh(model: DITN, calibration: torch.Tensor) -> DITN:
    """A ``norm="tanh"`` DITN fitted to imitate the LayerNorm DITN ``model`` (left unchanged).

    Args:
        model: a DITN with ``norm="layernorm"``.
        calibration: (N, 3, h, w) LR images in [0, 1] the fit is measured on.

    Returns:
        An eval-mode DITN (tanh form, DITN-Real state-dict layout), all other weights copied.
    """
    if not isinstance(model, DITN) or model.hyperparams["norm"] != "layernorm":
        raise ValueError("ditn_layernorm_to_tanh needs a DITN with norm='layernorm'")
    work = copy.deepcopy(model).eval()
    layernorm_to_tanh(work, calibration)
    converted = DITN(**{**model.hyperparams, "norm": "tanh"})
    converted.load_state_dict(work.state_dict(), strict=True)
    return converted.eval()
