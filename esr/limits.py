"""Hyperparameters checked before a model is allocated: one place for every way a model gets built.

An arch declares its bounds next to its constructor, as a class attribute
``LIMITS = {"feature_channels": (1, 1024), ...}``: inclusive ``(low, high)`` per numeric keyword
(integer bounds: the value must be an int; float bounds: any finite number). Then, for every arch,
the parameter count is estimated by building the model on PyTorch's ``meta`` device (shapes only,
no memory) and compared with :data:`MAX_PARAMS`. A constructor that computes on tensor values
cannot run on ``meta``; such an arch is checked by its ``LIMITS`` alone (make its constructor skip
value computations on meta tensors to get the estimate too).

Checked by :func:`build_arch` (``esr.build_model``, esr checkpoints' ``esr_arch`` metadata, what a
state-dict detector reads from tensor shapes, ``esr train``'s exported networks) and by the
training options schema (``network_g``), so a checkpoint whose metadata says
``feature_channels: 200000`` is one line, not a 160 GB allocation.
"""
from __future__ import annotations

import difflib
import inspect
import math
import os
from typing import Any, Mapping

import torch
import torch.nn as nn

from esr.errors import EXIT_USAGE, EsrError
from esr.registry import ARCH_REGISTRY

MAX_PARAMS = 50_000_000
"""Default cap on a model's parameters (200 MB in fp32; esr's archs have under 1 M). ``ESR_MAX_PARAMS`` overrides."""


def max_params() -> int:
    """The parameter cap: ``$ESR_MAX_PARAMS`` if set (0: no cap), else :data:`MAX_PARAMS`."""
    text = os.environ.get("ESR_MAX_PARAMS", "").strip()
    if not text:
        return MAX_PARAMS
    try:
        value = int(text)
    except ValueError:
        raise EsrError(f"ESR_MAX_PARAMS={text!r}: must be a whole number (0: no cap)") from None
    return value if value > 0 else 0


def _number_problem(key: str, value: Any, low: float, high: float) -> str | None:
    integer = isinstance(low, int) and isinstance(high, int)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        return f"{key} must be {kind} in [{low}, {high}], not {value!r}"
    if not math.isfinite(value) or not low <= value <= high:
        return f"{key} = {value} is outside [{low}, {high}]"
    return None


def _keyword_problem(cls: type, kwargs: Mapping[str, Any]) -> str | None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    known = [name for name in list(params)[1:] if params[name].kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if not isinstance(key, str) or key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(known)}"
            return f"unknown keyword {key!r} ({hint})"
    missing = [name for name in known if params[name].default is inspect.Parameter.empty and name not in kwargs]
    return f"missing keyword {missing[0]!r}" if missing else None


def count_params_on_meta(cls: type, kwargs: Mapping[str, Any]) -> int | None:
    """Parameters of ``cls(**kwargs)`` built on the meta device (no memory), or None if the
    constructor cannot run there (it computes on tensor values)."""
    try:
        with torch.device("meta"):
            model = cls(**kwargs)
    except NotImplementedError:
        return None
    return sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else None


def hyperparam_problem(arch: str, kwargs: Mapping[str, Any]) -> str | None:
    """What is wrong with building ``arch(**kwargs)`` (one short phrase), or None if it may be built.

    Checks, in order: the arch is registered, every keyword is a constructor argument, the
    ``LIMITS`` of the arch, the constructor's own validation (run on the meta device) and the
    parameter cap (:func:`max_params`).
    """
    if not isinstance(arch, str) or arch not in ARCH_REGISTRY:
        near = difflib.get_close_matches(str(arch), list(ARCH_REGISTRY), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(sorted(ARCH_REGISTRY))}"
        return f"unknown arch {arch!r} ({hint})"
    cls = ARCH_REGISTRY.get(arch)
    if not isinstance(kwargs, Mapping):
        return f"{arch} keywords must be a mapping, not {type(kwargs).__name__}"
    problem = _keyword_problem(cls, kwargs)
    if problem:
        return f"{arch}: {problem}"
    for key, (low, high) in getattr(cls, "LIMITS", {}).items():
        if key in kwargs:
            problem = _number_problem(key, kwargs[key], low, high)
            if problem:
                return f"{arch}: {problem}"
    try:
        params = count_params_on_meta(cls, kwargs)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"{arch}: invalid hyperparameters ({text})"
    cap = max_params()
    if params is not None and cap and params > cap:
        return (f"{arch} with these hyperparameters has {params / 1e6:.1f} M parameters, over the limit of "
                f"{cap / 1e6:g} M (set ESR_MAX_PARAMS to raise it)")
    return None


def check_hyperparams(arch: str, kwargs: Mapping[str, Any], source: str) -> None:
    """:func:`hyperparam_problem` as an :class:`EsrError` (exit 2): ``SOURCE: problem``."""
    problem = hyperparam_problem(arch, kwargs)
    if problem:
        raise EsrError(f"{source}: {problem}", EXIT_USAGE)


def build_arch(arch: str, kwargs: Mapping[str, Any], source: str) -> nn.Module:
    """``arch(**kwargs)`` after :func:`check_hyperparams` (the only way esr constructs a registered arch)."""
    check_hyperparams(arch, kwargs, source)
    return ARCH_REGISTRY.get(arch)(**kwargs)
