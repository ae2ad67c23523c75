"""esr: deployment-oriented efficient super-resolution (RLFN, DITN, SPAN and any spandrel model).

``esr.upscale(image)`` upscales a numpy array or PIL image and returns the same kind;
``esr.Upscaler`` is the tiling engine behind it and ``esr upscale``.

``esr.load_model(name_or_path)`` returns a trained eval-mode model carrying ``.descriptor``
(:class:`esr.descriptor.ModelDescriptor`); ``esr.build_model(name, scale)`` a fresh one;
``esr.open_model(spec)`` any model (checkpoint, ONNX file, engine) as a
:class:`esr.loading.LoadedModel` for :func:`esr.backends.create_backend`. Models map RGB float
NCHW in [0, 1] to the upscaled image in [0, 1]. They are imported on first use (PEP 562), so
``import esr`` and ``esr --help`` do not pay for importing torch.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

_LAZY_ATTRS = {"load_model": "esr.loading", "open_model": "esr.loading", "build_model": "esr.archs.presets",
               "upscale": "esr.api", "Upscaler": "esr.upscaler", "create_backend": "esr.backends"}
__all__ = ["__version__", *_LAZY_ATTRS]

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_IN_SOURCE_CHECKOUT = (not (Path(__file__).parent / "plugins").is_dir() and (_SOURCE_ROOT / "setup.cfg").is_file()
                       and all((_SOURCE_ROOT / name / "__init__.py").is_file() for name in ("export", "plugins")))
if _IN_SOURCE_CHECKOUT:
    # A source checkout: top-level export/ and plugins/ are installed as esr.export / esr.plugins
    # (setup.cfg package_dir); importing from the working tree finds them beside esr/.
    __path__.append(str(_SOURCE_ROOT))  # noqa: F821  (the package's own __path__)


def __dir__() -> list[str]:
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    raise AttributeError(f"module 'esr' has no attribute {name!r}")
