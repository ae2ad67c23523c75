"""Pure-PyTorch SR architectures. Importing this package registers them in ``esr.registry``.

Each arch sets ``self.descriptor`` (:class:`esr.descriptor.ModelDescriptor`, ``trained=False``)
in its constructor; loaders replace it with one that also says where the weights came from.
"""
from esr.archs import ditn_arch, rlfn_arch, span_arch  # noqa: F401  (registration side effect)
from esr.archs.presets import build_model

__all__ = ["build_model"]
