"""The deploy-pass registry and :func:`apply`.

A pass is a function ``(model) -> int`` that rewrites an ``nn.Module`` in place and
returns how many sites it changed. Each pass declares a contract:

* ``exact``: the output is unchanged up to fp32 round-off (tests hold it to 1e-5).
* ``lossy``: the function changes; the model needs fine-tuning and :func:`apply_measured`
  reports the output error it introduced (max abs change and PSNR against the output before).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn as nn

from esr.metrics import fidelity_psnr
from esr.registry import Registry

Contract = Literal["exact", "lossy"]


@dataclass(frozen=True)
class DeployPass:
    """A registered rewrite: ``run(model)`` edits ``model`` in place and returns the number of sites."""

    name: str
    contract: Contract
    run: Callable[[nn.Module], int]
    summary: str


@dataclass(frozen=True)
class PassReport:
    """What one pass did: sites rewritten, and (None when unmeasured) the max abs change of the
    model output it caused and the PSNR (dB, outputs clipped to [0, 1]) of the output after the
    pass against the output before it: its PSNR cost as fidelity, inf when bit-identical."""

    name: str
    contract: Contract
    sites: int
    max_abs_error: float | None
    psnr_db: float | None = None


PASS_REGISTRY = Registry("deploy pass")
"""pass name -> :class:`DeployPass`."""

RECIPES: dict[str, list[str]] = {
    "RLFN": ["conv_fold"],
    "DITN": ["layernorm_exact", "qkv_fuse", "attention_fuse", "affine_fold"],
    "SPAN": ["conv3xc_fold"],
}
"""arch name (``model.descriptor.arch``) -> its default deploy recipe (all passes exact)."""


def deploy_pass(name: str, contract: Contract) -> Callable[[Callable[[nn.Module], int]], Callable[[nn.Module], int]]:
    """Decorator registering ``fn(model) -> sites`` as the pass ``name`` with ``contract``."""

    def register(fn: Callable[[nn.Module], int]) -> Callable[[nn.Module], int]:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        PASS_REGISTRY.register(DeployPass(name, contract, fn, summary), name=name)
        return fn

    return register


def default_recipe(model: nn.Module) -> list[str]:
    """The default pass list for ``model``'s arch (empty for an arch without one)."""
    return list(RECIPES.get(model.descriptor.arch, []))


def resolve_recipe(model: nn.Module, recipe: str | list[str]) -> list[str]:
    """``"default"``, ``"none"``, a comma-separated string or a list -> validated pass names."""
    if isinstance(recipe, str):
        if recipe == "default":
            return default_recipe(model)
        if recipe in ("none", ""):
            return []
        recipe = [name.strip() for name in recipe.split(",") if name.strip()]
    for name in recipe:
        PASS_REGISTRY.get(name)  # raises KeyError naming the known passes
    return list(recipe)


def apply_measured(
    model: nn.Module, names: list[str], sample: torch.Tensor | None = None
) -> tuple[nn.Module, list[PassReport]]:
    """Run the passes ``names`` in order on a deep copy of ``model``.

    Args:
        model: an eval-mode esr model (left untouched).
        names: registered pass names.
        sample: optional input (N, 3, H, W) in [0, 1]; when given, each pass's max abs
            change of the model output and its PSNR (vs the output before that pass) are measured.

    Returns:
        (rewritten eval-mode copy, one :class:`PassReport` per pass).
    """
    model = copy.deepcopy(model).eval()
    reports = []
    with torch.no_grad():
        before = model(sample) if sample is not None else None
        for name in names:
            step = PASS_REGISTRY.get(name)
            sites = step.run(model)
            error = psnr = None
            if sample is not None:
                after = model(sample)
                error = (after - before).abs().max().item()
                psnr = fidelity_psnr([before], [after])
                before = after
            reports.append(PassReport(name, step.contract, sites, error, psnr))
    return model, reports


def apply(model: nn.Module, names: list[str]) -> nn.Module:
    """``model`` rewritten by the passes ``names`` (a deep copy; the original is unchanged)."""
    return apply_measured(model, names)[0]
