"""Checkpoints of architectures esr does not implement, loaded by spandrel (MIT; ``pip install spandrel``).

:func:`spandrel_loader` is registered in :data:`esr.loading.CHECKPOINT_LOADERS` after esr's own
detectors (RLFN, DITN, SPAN), so those keep esr's implementations and deploy passes. spandrel
reads hyperparameters from tensor shapes; esr hands it the state dict it has already read with
``torch.load(weights_only=True)`` or ``safetensors`` (spandrel never opens the file). The
non-commercial ``spandrel_extra_arches`` is used only when the user has installed it.

A loaded model is a :class:`SpandrelModel`: the spandrel network plus its call convention,
taking float NCHW in [0, 1] to the upscaled image in [0, 1] (unclamped) like esr's archs, padding
any input to the network's size requirements itself and cropping the result. Its
:class:`esr.descriptor.ModelDescriptor` comes from spandrel's descriptor: arch ``spandrel:ID``
(recipes are keyed by arch, so spandrel's DITN never gets esr's DITN passes), scale,
channels, size requirements (minimum, multiple-of, square), tiling advice, purpose.
Inpainting (needs a mask) and face restoration (aligned 512x512 face crops) models are refused.
"""
from __future__ import annotations

import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from esr.archs.padding import crop_to
from esr.descriptor import ModelDescriptor
from esr.errors import EsrError, first_line

EXTRA_ARCHES = "spandrel_extra_arches"
"""spandrel's companion package of non-commercial architectures: used only if installed."""

ARCH_PREFIX = "spandrel:"
"""Descriptor ``arch`` of a spandrel-loaded model: ``spandrel:ESRGAN``, ``spandrel:SwinIR``, ..."""

TILING = {"SUPPORTED": "supported", "DISCOURAGED": "discouraged", "INTERNAL": "internal"}
"""spandrel ``ModelTiling`` member name -> esr descriptor ``tiling``."""

REFUSED_PURPOSES = {
    "Inpainting": "an inpainting model (it needs a mask; esr runs image-to-image models)",
    "FaceSR": "a face restoration model (it works on aligned 512x512 face crops; esr has no face detection)",
}


@lru_cache(maxsize=1)
def arch_registry() -> Any:
    """spandrel's architecture registry, plus ``spandrel_extra_arches`` when that package is installed
    (added to a copy: spandrel's global registry is left as it is)."""
    import spandrel

    if importlib.util.find_spec(EXTRA_ARCHES) is None:
        return spandrel.MAIN_REGISTRY
    extra = importlib.import_module(EXTRA_ARCHES)
    registry = spandrel.MAIN_REGISTRY.copy()
    extra.install(registry, ignore_duplicates=True)
    return registry


def detect(state_dict: dict[str, torch.Tensor]) -> Any | None:
    """The spandrel ``Architecture`` that claims ``state_dict`` (spandrel's detection order), or None."""
    for support in arch_registry().architectures("detection"):
        if support.detect(state_dict):
            return support.architecture
    return None


def padded_input(x: torch.Tensor, descriptor: ModelDescriptor) -> torch.Tensor:
    """A new tensor: ``x`` (N, C, H, W) padded at the bottom/right to ``descriptor``'s size requirements
    (sides >= ``min_size``, multiples of ``size_multiple``, equal when ``square``) as spandrel pads:
    reflect as far as the side allows, the rest replicate (so outputs equal spandrel's own call).

    The amounts are Python ints, also while tracing: a static export gets constant shapes (some
    archs' ops export only with constant sizes, e.g. SAFMN's adaptive pooling); a dynamic export
    pads in the graph before this (:class:`esr.export.onnx_export.PadCrop`), so here it adds nothing.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    target_h, target_w = max(height, descriptor.min_size), max(width, descriptor.min_size)
    target_h += -target_h % descriptor.size_multiple
    target_w += -target_w % descriptor.size_multiple
    if descriptor.square:
        target_h = target_w = max(target_h, target_w)
    pad_h, pad_w = target_h - height, target_w - width
    if not (pad_h or pad_w):
        return x.clone()  # some archs scale their input in place (spandrel's RCAN: x *= rgb_range)
    reflect_h, reflect_w = min(pad_h, height - 1), min(pad_w, width - 1)
    x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
    return F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")


class SpandrelModel(nn.Module):
    """A network loaded by spandrel, with esr's model interface.

    Shapes: (N, in_channels, H, W) float in [0, 1] -> (N, out_channels, H * scale, W * scale),
    unclamped. Any H, W >= 1: the input is padded to the size requirements in ``descriptor``
    and the output cropped back.

    Args:
        net: the spandrel network (``ImageModelDescriptor.model``), eval mode.
        call: how spandrel calls it: ``call(net, x) -> y`` (some archs add a noise-level plane or
            return a tuple).
        descriptor: the model's esr descriptor (see :func:`describe`).
    """

    def __init__(self, net: nn.Module, call: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 descriptor: ModelDescriptor) -> None:
        super().__init__()
        self.net = net
        self.call = call
        self.descriptor = descriptor
        self.hyperparams = dict(descriptor.hyperparams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out = self.call(self.net, padded_input(x, self.descriptor))
        return crop_to(out, height * self.descriptor.scale, width * self.descriptor.scale)


def describe(loaded: Any, name: str) -> ModelDescriptor:
    """esr's descriptor of a spandrel ``ImageModelDescriptor`` (license unknown: a state dict does not say)."""
    arch = loaded.architecture
    size = loaded.size_requirements
    return ModelDescriptor(
        name=name, arch=ARCH_PREFIX + str(arch.id), scale=int(loaded.scale),
        in_channels=int(loaded.input_channels), out_channels=int(loaded.output_channels),
        min_size=max(1, int(size.minimum)), size_multiple=int(size.multiple_of), square=bool(size.square),
        pads_inside=True, tiling=TILING[loaded.tiling.name],
        purpose="Restoration" if loaded.scale == 1 else "SR",
        source=f"spandrel {arch.name}", hyperparams={"tags": list(loaded.tags)},
    )


def load_state_dict(state_dict: dict[str, torch.Tensor], source: str) -> SpandrelModel | None:
    """A :class:`SpandrelModel` if spandrel recognises ``state_dict``, else None.

    Raises:
        EsrError: naming ``source``: spandrel recognises the architecture but the weights do not
            load, or it is an inpainting / face restoration model.
    """
    import spandrel

    arch = detect(state_dict)
    if arch is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes from the arch code about torch APIs, not about the weights
            loaded = arch.load(state_dict)
    except Exception as err:  # spandrel raises assertion, key, shape and value errors for odd weights
        raise EsrError(f"{source}: spandrel detected {arch.name}, but the weights do not load "
                       f"({first_line(err)})") from None
    if not isinstance(loaded, spandrel.ImageModelDescriptor) or loaded.purpose in REFUSED_PURPOSES:
        purpose = getattr(loaded, "purpose", "Inpainting")
        raise EsrError(f"{source}: {arch.name} is {REFUSED_PURPOSES.get(purpose, f'a {purpose} model')}")
    call = getattr(loaded, "_call_fn", None) or (lambda net, x: net(x))
    return SpandrelModel(loaded.model.eval(), call, describe(loaded, Path(source).stem)).eval()


def spandrel_loader(state_dict: dict[str, torch.Tensor], path: Path) -> nn.Module | None:
    """:data:`esr.loading.CHECKPOINT_LOADERS` entry: the model if spandrel knows the state dict, else None."""
    return load_state_dict(state_dict, str(path))
