"""esr.plugins: deploy rewrites of esr models, each a registered pass with a contract.

    from esr import plugins
    deployed = plugins.apply(model, plugins.default_recipe(model))
    deployed, reports = plugins.apply_measured(model, ["layernorm_exact", "qkv_fuse"], sample)

Each arch's module declares its passes and its default recipe (``register_recipe``):
``layernorm_exact`` / ``layernorm_tanh`` (lossy, calibrated) / ``qkv_fuse`` / ``attention_fuse``
/ ``affine_fold`` (DITN, :mod:`esr.plugins.ditn`), ``conv_fold`` (RLFN, :mod:`esr.plugins.rlfn`),
``conv3xc_fold`` (SPAN, :mod:`esr.plugins.span`).
A new arch adds its own module here and imports it below. See :mod:`esr.plugins.core`.
"""
from esr.plugins.core import (
    PASS_REGISTRY,
    RECIPES,
    DeployPass,
    PassReport,
    apply,
    apply_measured,
    default_recipe,
    deploy_pass,
    register_recipe,
    resolve_recipe,
)
from esr.plugins import ditn, rlfn, span  # noqa: E402,F401  (register the passes and recipes)

__all__ = [
    "PASS_REGISTRY", "RECIPES", "DeployPass", "PassReport", "apply", "apply_measured", "default_recipe",
    "deploy_pass", "register_recipe", "resolve_recipe",
]
