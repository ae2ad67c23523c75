"""The benchmark protocol shared by ``esr bench``, ``esr analyze --calibrate`` and scripts/.

Protocol (``../shared/design/reference.md``): ``warmup`` untimed calls, then ``runs`` timed
calls; report median, p90, mean and min in milliseconds together with the machine, the
library versions, the input shape, dtype and backend. On CUDA each call is timed with CUDA
events after a synchronisation; host<->device copies are timed separately.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Timing:
    """Milliseconds of ``runs`` timed calls after ``warmup`` untimed ones."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    times_ms: list[float]

    @classmethod
    def from_times(cls, times_ms: list[float], warmup: int) -> "Timing":
        return cls(
            median_ms=statistics.median(times_ms), p90_ms=float(np.percentile(times_ms, 90)),
            mean_ms=statistics.fmean(times_ms), min_ms=min(times_ms), runs=len(times_ms), warmup=warmup,
            times_ms=list(times_ms),
        )


def time_runs(fn: Callable[[], object], runs: int = 10, warmup: int = 2, device: str = "cpu") -> Timing:
    """Time ``fn()`` by the protocol; with ``device="cuda"`` each call is bracketed by CUDA events."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        import torch

        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(runs):
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return Timing.from_times(times, warmup)


def installed_version(*packages: str) -> str | None:
    """The version of the first of ``packages`` that is installed (package metadata, no import), else None."""
    from importlib.metadata import PackageNotFoundError, version

    for package in packages:
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def optional_versions() -> dict[str, str | None]:
    """Installed versions of the optional runtimes and libraries (None: not installed), without importing them."""
    from importlib import metadata

    versions = {}
    for name in ("openvino", "tensorrt", "spandrel", "av", "ray", "basicsr", "isal", "opencv-python"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    """CPU model, logical cores, the CPU's native units per precision (AMX, AVX512-BF16, VNNI...: flags from
    ``/proc/cpuinfo``), OS, GPU name (``None`` without CUDA) and library versions."""
    import onnxruntime
    import torch

    from esr import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    from esr.capabilities import cpu_summary

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "cpu_units": cpu_summary(),
        "torch_threads": torch.get_num_threads(), "os": platform.platform(), "gpu": gpu, "load_avg": load,
        "versions": {"python": platform.python_version(), "esr": __version__, "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                     "cuda": torch.version.cuda if gpu else None, **optional_versions()},
    }


def save_result(record: dict, folder: str | os.PathLike, stem: str) -> Path:
    """Write ``record`` as ``FOLDER/STEM_YYYYmmdd-HHMMSS.json``, or to ``folder`` itself when it names a
    ``.json`` file (temp file + rename); the path written."""
    import json

    from esr.fileio import write_bytes_atomically

    path = Path(folder)
    if path.suffix != ".json":
        path = path / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    return write_bytes_atomically(path, json.dumps(record, indent=1, default=str).encode())


def copy_timing(shape: tuple[int, ...], scale: int, runs: int, warmup: int) -> Timing:
    """CUDA-event time of the host->device copy of an input of ``shape`` plus the device->host copy of its output."""
    import torch

    x = torch.rand(shape).pin_memory()
    y = torch.empty(shape[0], shape[1], shape[2] * scale, shape[3] * scale, device="cuda")

    def copies() -> None:
        x.to("cuda", non_blocking=True)
        y.cpu()

    return time_runs(copies, runs, warmup, device="cuda")


def bench_backend(backend, shape: tuple[int, int, int, int], runs: int = 10, warmup: int = 2) -> dict:
    """Time ``backend`` (an :mod:`esr.backends` backend, the object ``esr upscale`` runs) on a random
    input of ``shape`` (N, C, H, W) in [0, 1].

    The timed call includes the backend's padding/cropping and moving the input to the device and
    the result back; on CUDA the copies alone are reported as ``copy_ms``. ``precision`` is what the
    backend computes in (an INT8 QDQ graph: int8). Returns one JSON-able record.
    """
    import torch

    x = torch.rand(shape)
    timing = time_runs(lambda: backend(x), runs, warmup, device=backend.device)
    record = {
        "backend": getattr(backend, "label", backend.name), "device": backend.device, "precision": backend.precision,
        "recipe": list(backend.descriptor.recipe), "trained": backend.descriptor.trained,
        "shape": list(shape), "dtype": "float32", **asdict(timing),
    }
    if backend.device == "cuda":
        record["copy_ms"] = copy_timing(shape, backend.descriptor.scale, runs, warmup).median_ms
    return record


PROBES = (("onnxruntime", "fp32"), ("openvino", "bf16"))
"""What :func:`host_probe` times: the reference and the path auto picks on a machine with AMX."""


def host_probe(model: str | None, threads: int, runs: int = 5) -> dict[str, float | None]:
    """Median ms of one 1x3x256x256 call of ``model`` (None: the default) on each of :data:`PROBES` (None where
    this machine cannot run it): taken at the start and the end of a script's run, beside ``bench_precision.py``'s
    figures for the same call, they show how busy the (shared) host was while the run measured."""
    import torch

    from esr.backends import create_backend
    from esr.errors import EsrError
    from esr.loading import open_model
    from esr.zoo import DEFAULT_MODEL

    loaded = open_model(model or DEFAULT_MODEL)
    x = torch.rand(1, 3, 256, 256)
    probe: dict[str, float | None] = {}
    for name, precision in PROBES:
        try:
            backend = create_backend(name, loaded, "cpu", precision, threads)
        except EsrError:
            probe[f"{name}_{precision}_ms"] = None
            continue
        probe[f"{name}_{precision}_ms"] = time_runs(lambda: backend(x), runs=runs, warmup=1).median_ms
    print("host probe (ms per 256x256 call):", ", ".join(f"{k} {v:.0f}" for k, v in probe.items() if v), flush=True)
    return probe
