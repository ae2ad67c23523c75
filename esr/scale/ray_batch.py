"""``esr upscale --ray [ADDRESS]``: the planned files on a Ray cluster, one loaded model per actor.

The backend is chosen once, as one process would choose it (:func:`resolve_backend`: ``--backend auto``
measures, or reads its cache, with the process's own threads and timing tile), in the driver for CPU actors
or in one Ray task on a GPU for GPU actors; every actor then runs that backend and precision, so actors
never disagree with each other or with a single process over a measurement of their own.

Ray Data reads the plan (one row per file: input, output, media kind), and ``map_batches`` sends rows to a pool
of :class:`UpscaleActor` (``num_gpus=1`` each on a cluster with GPUs, else CPU actors sharing the
cluster's CPUs as torch threads). Each actor runs :func:`esr.upscale_batch.upscale_file`, the same
per-file step as one process: the output is claimed (:mod:`esr.claims`; a claim of another live run
means skip), skipped if written unless ``--overwrite``, written to a temp file beside it and renamed,
and released. A failed file comes back as a row with its ``error: PATH: reason`` line; the driver
prints it and counts it (exit 1), like one process does. Ray Data restarts an actor that dies and
retries its rows; the dead actor's claims are stale (its process is gone) and are taken over, and an
output it had finished is complete (atomic) and skipped, so nothing is written twice.

Inputs, outputs and the model must be reachable under the same paths from every node (local
files on one machine, or a shared filesystem). Ray is an optional extra: ``pip install 'esr[ray]'``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from esr.errors import EsrError

if TYPE_CHECKING:
    from esr.upscale_batch import BatchOptions, Counts, Task

FAILED, NO_MODEL = "failed", "no model"
"""Row statuses besides :mod:`esr.upscale_batch`'s DONE, SKIPPED and BUSY."""


def import_ray() -> Any:
    """``ray`` with Ray Data, or EsrError (exit 2) with the install command."""
    try:
        import ray
        import ray.data  # noqa: F401  (needs ray[data]: pandas, pyarrow)
    except ImportError as err:
        raise EsrError(f"--ray needs Ray Data (pip install 'esr[ray]'): {err}") from None
    return ray


class UpscaleActor:
    """One Ray actor: loads the model once, then upscales the rows it is given, one file at a time.

    A subclass made by :func:`actor_class` carries the batch ``options`` and its share of CPU
    ``threads`` (for torch or onnxruntime, unless ``--threads`` is given) as class attributes (constructor arguments would go through Ray's object store). A model that
    does not load does not kill the actor (Ray would report a traceback): every row then comes back
    with status ``no model`` and the one-line reason, which the driver raises as a usage error.
    """

    options: BatchOptions
    threads: int

    def __init__(self) -> None:
        from esr.upscale_batch import build_upscaler

        self.upscaler, self.load_error = None, ""
        try:  # --threads, if given, wins over the actor's share of the CPUs
            self.upscaler = build_upscaler(replace(self.options, threads=self.options.threads or self.threads))
        except EsrError as err:
            self.load_error = str(err)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """Rows ``{src, dest, replace, kind}`` (a :class:`esr.upscale_batch.Task`) -> ``{src, status, lines}``:
        status done/skipped/busy/failed/no model, ``lines`` the ``error:``/``warning:`` lines, newline-separated."""
        from esr.upscale_batch import Task

        statuses, lines = [], []
        for src, dest, replace, kind in zip(batch["src"], batch["dest"], batch["replace"], batch["kind"]):
            if self.upscaler is None:
                statuses.append(NO_MODEL)
                lines.append(self.load_error)
                continue
            status, said = self.upscale_one(Task(Path(src), Path(dest), bool(replace), str(kind)))
            statuses.append(status)
            lines.append("\n".join(said))
        return {"src": list(batch["src"]), "status": statuses, "lines": lines}

    def upscale_one(self, task: Task) -> tuple[str, list[str]]:
        """:func:`esr.upscale_batch.upscale_file` on one row; its status and its lines (warnings as one process shows them)."""
        from esr.upscale_batch import failure_line, upscale_file

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore" if self.options.quiet else "always")
            try:
                status, failure = upscale_file(task, self.upscaler, self.options), []
            except Exception as err:  # one file's failure is reported by the driver; the batch goes on
                status, failure = FAILED, [failure_line(task.src, err)]
        return status, [f"warning: {w.message}" for w in caught] + failure


def resolve_backend(options: BatchOptions, tile_hw: tuple[int, int] | None) -> tuple[BatchOptions, dict]:
    """``options`` with ``--backend``, ``--precision`` and ``--device`` made concrete, chosen exactly as one process
    would (:func:`esr.upscale_batch.build_upscaler` with the batch's timing tile ``tile_hw``), and what was
    chosen (:func:`esr.upscale_batch.describe_backend`). Loads the model: a bad ``--model`` raises EsrError."""
    from esr.upscale_batch import build_upscaler, describe_backend

    backend = build_upscaler(options, tile_hw).backend
    runs = getattr(backend, "chosen", backend)  # auto's choice, or the backend itself
    concrete = replace(options, backend=runs.name, precision=backend.precision, device=backend.device)
    return concrete, describe_backend(backend)


def resolve_on_cluster(ray: Any, options: BatchOptions, tile_hw: tuple[int, int] | None,
                       resources: dict[str, float]) -> tuple[BatchOptions, dict]:
    """:func:`resolve_backend` where the actors will run: here for CPU actors, in one Ray task holding an actor's
    GPU share for GPU actors (the driver may have no GPU). An EsrError there is raised here as itself."""
    if "num_gpus" not in resources:
        return resolve_backend(options, tile_hw)
    try:
        return ray.get(ray.remote(resolve_backend).options(**resources).remote(options, tile_hw))
    except ray.exceptions.RayTaskError as err:
        if isinstance(getattr(err, "cause", None), EsrError):
            raise err.cause from None
        raise


def actor_class(options: BatchOptions, threads: int) -> type[UpscaleActor]:
    """:class:`UpscaleActor` bound to ``options`` and ``threads`` (torch CPU threads per actor)."""
    return type("UpscaleActor", (UpscaleActor,), {"options": options, "threads": threads})


def connect(ray: Any, address: str) -> bool:
    """Join (or start) the Ray cluster, quietly; True if this call started Ray (and must shut it down)."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # failures reach the user as esr's own lines
    if ray.is_initialized():
        return False
    # A local Ray's C++ core logs notes to stderr at its level (RAY_BACKEND_LOG_LEVEL, set it to see them)
    # and says so once, during ray.init; joining a cluster keeps Ray's messages (a wrong address is retried
    # for a minute or more before Ray gives up)
    quiet_core = not address and "RAY_BACKEND_LOG_LEVEL" not in os.environ
    if quiet_core:
        os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    try:
        with stderr_to_devnull(quiet_core):
            ray.init(address=address or None, include_dashboard=False, logging_level=logging.CRITICAL,
                     log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise EsrError(f"--ray {address}: cannot start or join Ray ({str(err).strip().splitlines()[0]})") from None
    return True


@contextlib.contextmanager
def stderr_to_devnull(active: bool = True) -> Iterator[None]:
    """Send file descriptor 2 (C/C++ code's stderr) to /dev/null while the block runs."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def actor_plan(ray: Any, options: BatchOptions) -> tuple[int, dict[str, float], int]:
    """``(actors, resources per actor, torch threads per actor)`` from the cluster's resources.

    GPUs in the cluster (and ``--device`` not cpu): one actor per GPU, each ``num_gpus=1``
    (``--ray-actors`` more than GPUs: they share them, ``num_gpus`` = GPUs / actors). Otherwise CPU actors, one per CPU by default, each given an equal
    share of the cluster's CPUs as torch threads.
    """
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if options.device == "cuda" and not gpus:
        raise EsrError("--device cuda: the Ray cluster has no GPU")
    if gpus and options.device != "cpu":
        actors = options.ray_actors or gpus
        return actors, {"num_gpus": min(1.0, gpus / actors)}, max(1, cpus // actors)
    actors = options.ray_actors or cpus
    share = max(1, cpus // actors)
    return actors, {"num_cpus": share}, share


def run_on_ray(tasks: list[Task], options: BatchOptions, counts: Counts, say: Callable[[str], None],
               tile_hw: tuple[int, int] | None = None, ran: dict | None = None) -> None:
    """Upscale ``tasks`` on Ray actors; count each file done/skipped/failed and ``say`` each failure line.

    ``tile_hw``: the timing tile ``--backend auto`` uses (:func:`esr.upscale_batch.timing_tile_hw` of the
    batch); ``ran``: filled with what the actors run (:func:`esr.upscale_batch.describe_backend`).

    Progress: a tqdm bar of the files returned by the actors, as in one process (off with ``--quiet``).
    """
    ray = import_ray()  # also with nothing to do: --ray without Ray is a usage error
    from tqdm import tqdm

    from esr.upscale_batch import count_outcome
    if not tasks:
        return
    from ray.data import ActorPoolStrategy, DataContext

    started = connect(ray, options.ray or "")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")  # Ray's notes about its own settings
            actors, resources, threads = actor_plan(ray, options)
            options, chosen = resolve_on_cluster(ray, options, tile_hw, resources)
            if ran is not None:
                ran.update(chosen)
            context = DataContext.get_current()
            context.enable_progress_bars = False  # Ray's bars draw through its log channel; esr's bar is below
            context.print_on_execution_start = False
            # 16 blocks per actor balance the load; a retried block skips the files it had finished
            rows = ray.data.from_items([{"src": str(t.src), "dest": str(t.dest), "replace": t.replace, "kind": t.kind}
                                        for t in tasks],
                                       override_num_blocks=min(len(tasks), 16 * actors))
            results = rows.map_batches(actor_class(options, threads), batch_size=1,
                                       compute=ActorPoolStrategy(size=min(actors, len(tasks))), **resources)
            for row in tqdm(results.iter_rows(), total=len(tasks), unit="img", disable=options.quiet,
                            dynamic_ncols=True):
                if row["status"] == NO_MODEL:
                    raise EsrError(row["lines"])
                for line in filter(None, row["lines"].split("\n")):
                    say(line)
                if row["status"] == FAILED:
                    counts.failed += 1
                else:
                    count_outcome(counts, row["status"])
    except ray.exceptions.RayError as err:
        raise EsrError(f"Ray: {str(err).strip().splitlines()[0]}") from None
    finally:
        if started:
            ray.shutdown()
