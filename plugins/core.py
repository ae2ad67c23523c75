"""The deploy-pass and recipe registries, and :func:`apply`.

A pass is a function ``(model) -> int`` that rewrites an ``nn.Module`` in place and
returns how many sites it changed; a pass registered with ``calibrated=True`` is called
``(model, calibration)`` with a batch of inputs (N, 3, h, w) in [0, 1] it may fit to.
Each arch's pass module registers its passes and its default recipe
(:func:`register_recipe`) next to them. Each pass declares a contract:

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

from esr.descriptor import ModelDescriptor
from esr.metrics import fidelity_psnr
from esr.registry import Registry

Contract = Literal["exact", "lossy"]


@dataclass(frozen=True)
class DeployPass:
    """A registered rewrite: ``run(model)`` (``run(model, calibration)`` when ``calibrated``) edits
    ``model`` in place and returns the number of sites."""

    name: str
    contract: Contract
    run: Callable[..., int]
    summary: str
    calibrated: bool = False


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

RECIPES = Registry("deploy recipe")
"""arch name (``descriptor.arch``) -> its default deploy recipe (a list of exact passes), registered
by the arch's pass module with :func:`register_recipe`."""

CALIBRATION_SEED = 0


def deploy_pass(name: str, contract: Contract, calibrated: bool = False) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorator registering ``fn(model) -> sites`` (``fn(model, calibration)`` if ``calibrated``) as the pass ``name``."""

    def register(fn: Callable[..., int]) -> Callable[..., int]:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        PASS_REGISTRY.register(DeployPass(name, contract, fn, summary, calibrated), name=name)
        return fn

    return register


def register_recipe(arch: str, passes: list[str]) -> None:
    """Declare ``passes`` (registered names, all exact) as the default recipe of ``arch``."""
    for name in passes:
        if PASS_REGISTRY.get(name).contract != "exact":
            raise ValueError(f"default recipe of {arch}: {name} is not an exact pass")
    RECIPES.register(list(passes), name=arch)


def _arch_of(model: nn.Module | ModelDescriptor) -> str:
    return model.arch if isinstance(model, ModelDescriptor) else model.descriptor.arch


def default_recipe(model: nn.Module | ModelDescriptor) -> list[str]:
    """The default pass list for a model's arch (``model`` or its descriptor; empty for an arch without one)."""
    arch = _arch_of(model)
    return list(RECIPES.get(arch)) if arch in RECIPES else []


def resolve_recipe(model: nn.Module | ModelDescriptor, recipe: str | list[str]) -> list[str]:
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


def default_calibration(channels: int = 3) -> torch.Tensor:
    """A fixed batch of smooth synthetic images (2, C, 64, 64) in [0, 1] for calibrated passes given no data."""
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    coarse = torch.rand(2, channels, 8, 8, generator=generator)
    fine = torch.rand(2, channels, 64, 64, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bicubic", align_corners=False)
    return (0.9 * smooth + 0.1 * fine).clamp(0, 1)


def apply_measured(
    model: nn.Module, names: list[str], sample: torch.Tensor | None = None,
    calibration: torch.Tensor | None = None,
) -> tuple[nn.Module, list[PassReport]]:
    """Run the passes ``names`` in order on a deep copy of ``model``.

    Args:
        model: an eval-mode esr model (left untouched).
        names: registered pass names.
        sample: optional input (N, 3, H, W) in [0, 1]; when given, each pass's max abs
            change of the model output and its PSNR (vs the output before that pass) are measured.
        calibration: inputs calibrated passes fit to (default: ``sample``, else
            :func:`default_calibration`).

    Returns:
        (rewritten eval-mode copy, one :class:`PassReport` per pass).
    """
    model = copy.deepcopy(model).eval()
    reports = []
    with torch.no_grad():
        before = model(sample) if sample is not None else None
        for name in names:
            step = PASS_REGISTRY.get(name)
            if step.calibrated:
                data = calibration if calibration is not None else sample
                sites = step.run(model, data if data is not None else default_calibration(model.descriptor.in_channels))
            else:
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
