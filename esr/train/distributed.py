"""Distributed (DDP) training: process-group start-up for ``esr train --launcher pytorch|slurm``, rank helpers.

``--launcher pytorch`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); ``--launcher slurm`` derives the same from SLURM's (one task per
GPU, started by ``srun``). The backend is NCCL when CUDA is available, gloo otherwise. esr starts the
process group once, before the first stage, and BasicSR's own ``init_dist`` (which assumes CUDA and
NCCL) is replaced by a no-op, so BasicSR sees an initialised group, sets ``opt['dist']``, ``rank`` and
``world_size`` from it and wraps the model in DistributedDataParallel.

Rank 0 decides and writes what the runner shares between stages (stage markers, warm-start files,
the resume state chosen); :func:`run_on_main` hands its result to every rank, so all ranks take the
same path through the stages.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping, TypeVar

import torch
import torch.distributed as dist

from esr.errors import EsrError

LAUNCHERS = ("none", "pytorch", "slurm")
DEFAULT_PORT = 29500
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODELIST")

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job: ``rank`` in ``0..world_size-1``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist: ``gpu[03-04,07],cpu1`` -> ``gpu03`` (zero padding kept).

    Same result as ``scontrol show hostnames NODELIST | head -n1``, without needing ``scontrol``.
    """
    match = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?([^,]*)", nodelist.strip())
    if not match or not (match[1] or match[2]):
        raise EsrError(f"SLURM_NODELIST={nodelist!r}: not a SLURM host list")
    prefix, ranges, suffix = match.groups()
    first = ranges.split(",")[0].split("-")[0] if ranges else ""
    return f"{prefix}{first}{suffix or ''}"


def slurm_environment(env: Mapping[str, str], port: int | None = None) -> dict[str, str]:
    """torch.distributed's variables for one ``srun`` task, from SLURM's (BasicSR's rules).

    ``MASTER_ADDR`` is the first node of ``SLURM_NODELIST`` unless already set; ``MASTER_PORT`` is the
    environment's, else ``port`` (the options' ``dist_params.port``), else 29500.
    """
    missing = [name for name in SLURM_VARS if name not in env]
    if missing:
        raise EsrError(f"--launcher slurm: {', '.join(missing)} not set (start esr train with srun)")
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "LOCAL_RANK": env["SLURM_LOCALID"],
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(env["SLURM_NODELIST"]),
        "MASTER_PORT": env.get("MASTER_PORT") or str(port or DEFAULT_PORT),
    }


def init_distributed(launcher: str, port: int | None = None, timeout_min: float = 30) -> DistInfo:
    """Start the process group for ``launcher`` (``none``: nothing) and return this process's place.

    CUDA: NCCL, and the process uses GPU ``LOCAL_RANK``; CPU: gloo. BasicSR's ``init_dist`` is
    disabled (the group is up), so its ``parse_options`` only reads rank and world size.
    """
    if launcher not in LAUNCHERS:
        raise EsrError(f"--launcher {launcher}: expected one of {', '.join(LAUNCHERS)}")
    if launcher == "none":
        return DistInfo()
    if launcher == "slurm":
        os.environ.update(slurm_environment(os.environ, port))
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise EsrError(f"--launcher {launcher}: {', '.join(missing)} not set "
                       "(start esr train with torchrun, or srun for --launcher slurm)")
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]),
                    "nccl" if torch.cuda.is_available() else "gloo")
    if info.backend == "nccl":
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    dist.init_process_group(info.backend, timeout=timedelta(minutes=timeout_min))
    disable_basicsr_init_dist()
    return info


def disable_basicsr_init_dist() -> None:
    """Make BasicSR's ``init_dist`` (called from ``parse_options``) a no-op: esr started the group."""
    from esr.compat import import_basicsr

    import_basicsr()
    import basicsr.utils.options as bsr_options

    def init_dist(launcher: str, backend: str = "nccl", **kwargs: Any) -> None:
        if not dist.is_initialized():
            raise RuntimeError("esr starts the process group before BasicSR's options are parsed")

    bsr_options.init_dist = init_dist


def shutdown_distributed() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    """This process's place in the job (rank 0 of 1 when no process group is up)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())


def run_on_main(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 only; every rank returns rank 0's result (or raises its error as EsrError).

    The other ranks wait until rank 0 is done, so files ``fn`` writes exist for them afterwards.
    """
    info = current()
    if info.world_size == 1:
        return fn()
    box: list[Any] = [None]
    if info.is_main:
        try:
            box[0] = ("ok", fn())
        except Exception as err:
            box[0] = ("error", f"rank 0: {err}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise EsrError(value)
    return value


def state_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 (first 16 hex digits) over names, dtypes, shapes and values of a state dict (layout-independent)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def gather_digests(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """:func:`state_digest` of every rank's ``state_dict``, in rank order (all ranks must call this)."""
    mine = state_digest(state_dict)
    info = current()
    if info.world_size == 1:
        return [mine]
    digests: list[Any] = [None] * info.world_size
    dist.all_gather_object(digests, mine)
    return digests
