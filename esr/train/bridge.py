"""Copy esr's archs, losses, datasets and model into BasicSR's registries (idempotent).

This is the Real-ESRGAN pattern: esr is a thin project on BasicSR. BasicSR's
``build_network``/``build_loss``/``build_dataset``/``build_model`` then find esr's
classes by the ``type`` names used in the YAML options (``RLFN``, ``DITN``,
``ContrastiveLoss``, ``HROnlyDataset``, ``EvalFolderDataset``, ``ESRModel``).
"""
from __future__ import annotations

import functools
import pickle
from contextlib import contextmanager
from typing import Any, Iterator

from esr.compat import import_basicsr


def _register(registry: Any, name: str, obj: Any) -> None:
    """Register ``obj`` under ``name`` unless that exact object is already there."""
    if name in registry:
        if registry.get(name) is not obj:
            raise KeyError(f"BasicSR {registry._name} already has a different {name!r}")
        return
    registry._do_register(name, obj)


def register_all() -> None:
    """Import BasicSR (with the torchvision alias) and register esr's components; safe to call twice."""
    import_basicsr()
    from basicsr.utils import registry as bsr

    import esr.archs  # noqa: F401  (fills esr.registry.ARCH_REGISTRY)
    from esr.registry import ARCH_REGISTRY
    from esr.train.data import EvalFolderDataset, HROnlyDataset
    from esr.train.losses import ContrastiveLoss
    from esr.train.model import ESRModel

    for name, arch in ARCH_REGISTRY.items():
        _register(bsr.ARCH_REGISTRY, name, arch)
    _register(bsr.LOSS_REGISTRY, "ContrastiveLoss", ContrastiveLoss)
    _register(bsr.DATASET_REGISTRY, "HROnlyDataset", HROnlyDataset)
    _register(bsr.DATASET_REGISTRY, "EvalFolderDataset", EvalFolderDataset)
    _register(bsr.MODEL_REGISTRY, "ESRModel", ESRModel)


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """While active, every ``torch.load`` runs with ``weights_only=True``, BasicSR's own calls included.

    BasicSR 1.4.2 calls ``torch.load(path, map_location=...)`` (``load_network`` for
    ``pretrain_network_g``, its resume, the VGG weights of the perceptual loss) and so
    relies on torch's default, which allowed any pickle before torch 2.6 and can be
    flipped by ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; an explicit ``True`` wins over both.
    A call that asks for full unpickling is refused.
    """
    import torch

    original = torch.load

    @functools.wraps(original)
    def load(*args: Any, weights_only: bool | None = None, **kwargs: Any) -> Any:
        if weights_only is False:
            raise pickle.UnpicklingError("torch.load of arbitrary pickles is refused while esr trains")
        return original(*args, weights_only=True, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
