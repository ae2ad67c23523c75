"""Pure-PyTorch SR architectures. Importing this package registers them in ``esr.registry``."""
from esr.archs import ditn_arch, rlfn_arch, span_arch  # noqa: F401  (registration side effect)
from esr.archs.descriptor import SRDescriptor
from esr.archs.presets import ARCH_PRESETS, build_model

__all__ = ["ARCH_PRESETS", "SRDescriptor", "build_model"]
