"""Hardware profiles: peaks per precision, memory bandwidth, and the fitted latency-model factors.

Datasheet profiles are JSON files in ``esr/analyze/profiles/`` (one per device, with the
source cited). ``local`` is this machine, measured by :mod:`esr.analyze.microbench` and
cached in ``<esr cache>/hw/local.json``; ``esr analyze --calibrate`` adds fitted factors to it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from esr.errors import EsrError
from esr.fileio import write_bytes_atomically

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
LOCAL = "local"


@dataclass
class HardwareProfile:
    """A device for the latency model (SI units: FLOP/s, B/s, s).

    The model of one layer is ``kept[key] * (max(F / peak, B / bandwidth) / efficiency[key] +
    byte_overhead * B / bandwidth + kernel_overhead_s)``: a roofline, divided by a per-op-class
    efficiency, plus a runtime cost per byte (layout conversions the runtime inserts) and a fixed
    cost per kernel, times the fraction of that op class the runtime does not fuse away. F counts a
    dense convolution's channels rounded up to ``channel_block`` (:func:`esr.analyze.roofline.computed_flops`).
    Uncalibrated profiles have every efficiency and kept fraction 1 and no byte overhead: the
    pure roofline plus a kernel overhead.
    """

    name: str
    description: str
    peak_flops: dict[str, float]
    memory_bandwidth: float
    kernel_overhead_s: float
    source: str
    kind: str = "gpu"
    aliases: list[str] = field(default_factory=list)
    notes: str = ""
    efficiency: dict[str, float] = field(default_factory=dict)
    default_efficiency: float = 1.0
    byte_overhead: float = 0.0
    kept_fraction: dict[str, float] = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    channel_block: int = 1  # dense convolutions compute channels in blocks of this many (F counts them padded)

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def peak(self, precision: str) -> float:
        """Peak FLOP/s at ``precision`` (EsrError when the device has none listed)."""
        if precision not in self.peak_flops:
            raise EsrError(f"--hw {self.name}: no {precision} peak in this profile "
                           f"(it lists {', '.join(sorted(self.peak_flops))})")
        return self.peak_flops[precision]

    def efficiency_of(self, key: str) -> float:
        return self.efficiency.get(key, self.default_efficiency)

    def with_factors_from(self, other: "HardwareProfile") -> "HardwareProfile":
        """This device's peaks with ``other``'s fitted efficiencies (not its overheads, which are device-bound)."""
        data = asdict(self)
        data.update(efficiency=dict(other.efficiency), default_efficiency=other.default_efficiency,
                    notes=f"{self.notes} Efficiency factors borrowed from {other.name}.".strip())
        return HardwareProfile(**data)

    def to_json(self) -> dict:
        return asdict(self)


def datasheet_profiles() -> dict[str, HardwareProfile]:
    """Every bundled datasheet profile by name."""
    profiles = {}
    for path in sorted(PROFILE_DIR.glob("*.json")):
        profile = HardwareProfile(**json.loads(path.read_text()))
        profiles[profile.name] = profile
    return profiles


def known_names() -> list[str]:
    return [LOCAL] + sorted(datasheet_profiles())


def local_profile_path() -> Path:
    from esr.loading import cache_dir

    return cache_dir() / "hw" / "local.json"


def machine_key(threads: int) -> str:
    """What a cached local profile is valid for: CPU model and thread count."""
    from esr.bench import cpu_model

    return f"{cpu_model()} / {threads} threads"


def save_local_profile(profile: HardwareProfile, path: Path | None = None) -> Path:
    """Write ``profile`` as the cached ``local`` profile (temp file + rename)."""
    data = (json.dumps(profile.to_json(), indent=1) + "\n").encode()
    return write_bytes_atomically(path or local_profile_path(), data)


def measure_local_profile(threads: int) -> HardwareProfile:
    """A fresh, uncalibrated ``local`` profile from the micro-benchmarks (a few seconds)."""
    from esr.analyze.microbench import run_microbenchmarks

    measured = run_microbenchmarks(threads)
    return HardwareProfile(
        name=LOCAL, description=machine_key(threads), kind="cpu",
        peak_flops={"fp32": measured["gemm_flops"]}, memory_bandwidth=measured["copy_bandwidth"],
        kernel_overhead_s=0.0, measured=measured, channel_block=cpu_channel_block(),
        source="measured on this machine by esr.analyze.microbench (fp32 GEMM, 3x3 conv, memory copy)",
    )


CHANNEL_BLOCKS = (("avx512f", 16), ("avx2", 8), ("avx", 8))
"""CPU flag -> channels per block of onnxruntime's fp32 convolutions (MLAS's NCHWc layout; oneDNN's blocked
layouts use the same sizes), first match wins; other CPUs: 1 (no padding counted)."""


def cpu_channel_block(flags: frozenset[str] | None = None) -> int:
    """The channel block of this CPU (or of ``flags``), from :data:`CHANNEL_BLOCKS`."""
    from esr.capabilities import cpu_flags

    flags = cpu_flags() if flags is None else flags
    return next((block for flag, block in CHANNEL_BLOCKS if flag in flags), 1)


def local_profile(threads: int, refresh: bool = False) -> HardwareProfile:
    """The cached ``local`` profile for ``threads``; measured (and cached) when missing, stale or ``refresh``."""
    path = local_profile_path()
    if path.is_file() and not refresh:
        try:
            profile = HardwareProfile(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            profile = None  # unreadable cache: measure again
        if profile is not None and profile.description == machine_key(threads) and (
                profile.channel_block == cpu_channel_block()):  # a profile cached before blocks were counted: again
            return profile
    profile = measure_local_profile(threads)
    save_local_profile(profile, path)
    return profile


def get_profile(name: str, threads: int = 0) -> HardwareProfile:
    """The profile ``name`` (a file name or alias; ``local`` measures this machine with ``threads``)."""
    if name == LOCAL:
        import torch

        return local_profile(threads or torch.get_num_threads())
    for profile in datasheet_profiles().values():
        if name == profile.name or name in profile.aliases:
            return profile
    raise EsrError(f"--hw {name}: unknown hardware profile (known: {', '.join(known_names())})")
