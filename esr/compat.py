"""The one place esr imports BasicSR.

BasicSR 1.4.2 (PyPI) imports ``torchvision.transforms.functional_tensor``, which
current torchvision no longer has; its functions live in
``torchvision.transforms.functional``. The alias below must run before BasicSR is
imported, so every BasicSR use in esr goes through :func:`import_basicsr`.
"""
from __future__ import annotations

import sys
from types import ModuleType


def import_basicsr() -> ModuleType:
    """Import and return ``basicsr`` with the torchvision alias in place."""
    import torchvision.transforms.functional as tv_functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", tv_functional)
    import basicsr

    return basicsr
