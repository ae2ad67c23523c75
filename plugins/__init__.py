"""esr.plugins: deploy rewrites of esr models, each a registered pass with a contract.

    from esr import plugins
    deployed = plugins.apply(model, plugins.default_recipe(model))
    deployed, reports = plugins.apply_measured(model, ["layernorm_exact", "qkv_fuse"], sample)

Passes: ``layernorm_exact`` / ``layernorm_tanh`` (lossy) / ``qkv_fuse`` / ``attention_fuse``
/ ``affine_fold`` (DITN), ``conv_fold`` (RLFN), ``conv3xc_fold`` (SPAN). See :mod:`esr.plugins.core`.
"""
from esr.plugins import ditn, rlfn, span  # noqa: F401  (register the passes)
from esr.plugins.core import (
    PASS_REGISTRY,
    RECIPES,
    DeployPass,
    PassReport,
    apply,
    apply_measured,
    default_recipe,
    resolve_recipe,
)

__all__ = [
    "PASS_REGISTRY", "RECIPES", "DeployPass", "PassReport", "apply", "apply_measured", "default_recipe",
    "resolve_recipe",
]
