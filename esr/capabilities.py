"""What this machine and its libraries can compute in each precision.

esr never falls back silently: a precision that a device or runtime cannot run is refused
with one line naming what is missing (:class:`esr.errors.EsrError`, exit code 2).

CPU features come from the ``flags`` (x86) or ``Features`` (Arm) lines of ``/proc/cpuinfo``,
else from ``lscpu``:

- native bf16: ``amx_bf16`` (Intel AMX tiles) or ``avx512_bf16`` (x86), ``bf16`` (Arm);
  without them bf16 is emulated and slower than fp32, so it is refused;
- int8 dot products: ``amx_int8``, ``avx512_vnni``, ``avx_vnni`` (x86), ``asimddp`` (Arm);
  INT8 runs without them too, only more slowly (reported, not refused);
- fp16 arithmetic on CPU: ``avx512_fp16`` / ``amx_fp16`` (x86), ``asimdhp`` (Arm).
"""
from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

from esr.errors import EsrError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
"""Every precision esr names, in the order tables list them."""

CPU_FEATURE_FLAGS: dict[str, tuple[str, ...]] = {
    "bf16": ("amx_bf16", "avx512_bf16", "bf16"),
    "int8": ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp"),
    "fp16": ("avx512_fp16", "amx_fp16", "asimdhp"),
}
"""Precision -> CPU flags, any one of which gives native arithmetic in that precision."""

FEATURE_NAMES = {"bf16": "AMX-BF16 or AVX512-BF16 (Arm: BF16)", "int8": "AMX-INT8, AVX512-VNNI or AVX-VNNI",
                 "fp16": "AVX512-FP16 or AMX-FP16 (Arm: FP16 arithmetic)"}


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The CPU flags listed in ``/proc/cpuinfo`` text (``flags`` on x86, ``Features`` on Arm), lower case."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's flags (empty when neither ``/proc/cpuinfo`` nor ``lscpu`` tells)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = parse_cpu_flags(handle.read())
        if flags:
            return flags
    except OSError:
        pass
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
            return parse_cpu_flags(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return frozenset()


def native_units(precision: str, flags: frozenset[str] | None = None) -> list[str]:
    """The flags of ``flags`` (default: this CPU's) that give native ``precision`` arithmetic."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in CPU_FEATURE_FLAGS.get(precision, ()) if flag in flags]


def cpu_summary(flags: frozenset[str] | None = None) -> dict[str, list[str]]:
    """``{"bf16": [...], "int8": [...], "fp16": [...]}``: the native units per precision (JSON for reports)."""
    return {precision: native_units(precision, flags) for precision in CPU_FEATURE_FLAGS}


def require_native_cpu(precision: str, who: str, flags: frozenset[str] | None = None) -> None:
    """EsrError (exit 2) naming the missing CPU feature when ``precision`` has no native units here."""
    if not native_units(precision, flags):
        from esr.bench import cpu_model

        raise EsrError(f"{who}: {precision} on cpu needs {FEATURE_NAMES[precision]}; "
                       f"this CPU ({cpu_model()}) has none")


def unit_name(flag: str) -> str:
    """``amx_bf16`` -> ``AMX-BF16`` (how CPU makers print a feature)."""
    return flag.upper().replace("_", "-")


def cpu_alternatives(precision: str, flags: frozenset[str] | None = None) -> str:
    """What to ask for instead of ``precision`` on this CPU (default: this machine's flags), from its native
    units: ``on this CPU use --backend openvino --precision fp16 (AVX512-FP16), --precision bf16 (AMX-BF16)
    or fp32``. fp16 is offered through OpenVINO only (the one backend with CPU fp16 kernels)."""
    choices = []
    if native_units("fp16", flags):
        choices.append(f"--backend openvino --precision fp16 ({unit_name(native_units('fp16', flags)[0])})")
    if precision != "bf16" and native_units("bf16", flags):
        choices.append(f"--precision bf16 ({unit_name(native_units('bf16', flags)[0])})")
    return f"on this CPU use {', '.join(choices)} or fp32" if choices else "on this CPU use fp32"


def torch_cpu_capability() -> str:
    """torch's own view of the CPU's vector ISA (``AVX512``, ``AVX2``, ``DEFAULT``, ...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def check_precision_name(precision: str) -> None:
    """EsrError for a precision esr does not know."""
    if precision not in PRECISIONS:
        raise EsrError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
