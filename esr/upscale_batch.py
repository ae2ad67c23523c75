"""The batch behind ``esr upscale``: find inputs, plan outputs, run the decode -> model -> encode pipeline.

Decoding and encoding run in ``jobs`` worker threads while the main thread runs the
model; at most ``jobs + 1`` decoded images wait for the model and at most ``jobs + 1``
results wait to be written, so memory stays bounded. A bad input prints one
``error: PATH: reason`` line and the batch goes on; existing outputs are skipped unless
``overwrite``; Ctrl-C lets writes in flight finish (each is atomic) and stops.

One file's work is :func:`upscale_file` (check output -> read -> upscale -> write safely); the
threaded pipeline runs the same steps (:func:`read_input`, :func:`write_output`) overlapped, and Ray
actors (:mod:`esr.scale.ray_batch`) call :func:`upscale_file` itself, so the rules on outputs live
in those two steps. ``--shard I/N`` (:mod:`esr.scale.shard`) keeps this process's part of the plan.
"""
from __future__ import annotations

import glob
import sys
import tempfile
import warnings
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from esr.errors import EXIT_FAILED, EXIT_OK, EsrError
from esr.image_io import READ_SUFFIXES, Image, output_suffix, read_image, write_image
from esr.scale.shard import Shard

if TYPE_CHECKING:
    from esr.upscaler import Upscaler


@dataclass(frozen=True)
class BatchOptions:
    """The ``esr upscale`` arguments (see its ``--help``)."""

    inputs: list[str]
    outdir: str | Path
    model: str | None = None
    backend: str | None = None
    device: str | None = None
    fp16: bool = False
    tile: int = 0
    tile_pad: int = 16
    outscale: float | None = None
    ext: str = "png"
    quality: int = 95
    suffix: str = ""
    recursive: bool = False
    overwrite: bool = False
    jobs: int = 2
    quiet: bool = False
    shard: Shard | None = None  # this process's shard of the outputs (None: all)
    ray: str | None = None  # None: no Ray; "": ray.init()'s default cluster; else its address
    ray_actors: int = 0  # 0: one per GPU, else one per CPU, of the Ray cluster


@dataclass(frozen=True)
class Task:
    src: Path
    dest: Path


@dataclass
class Plan:
    """Inputs sorted into work to do, outputs that already exist, and per-input errors."""

    todo: list[Task] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _folder_images(folder: Path, recursive: bool, outdir: Path) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found
        if p.is_file() and p.suffix.lower() in READ_SUFFIXES and not p.name.startswith(".")
        and outdir not in p.resolve().parents
    )


def expand_inputs(inputs: list[str], recursive: bool, outdir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(file, folder of its output relative to OUTDIR)`` for every input image, and error lines.

    Folders give their images (``recursive``: the whole tree, mirrored); globs give the files they match.
    Files under OUTDIR are never inputs of a folder scan.
    """
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += [(p, p.parent.relative_to(path)) for p in _folder_images(path, recursive, outdir)]
        elif path.is_file():
            found.append((path, Path()))
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=recursive) if Path(m).is_file())
            found += [(m, Path()) for m in matches]
            if not matches:
                errors.append(f"{item}: no files match")
        else:
            errors.append(f"{item}: no such file or directory")
    return found, errors


def plan_batch(options: BatchOptions) -> Plan:
    """Map every input to its output path; skip existing outputs unless ``overwrite``."""
    outdir = Path(options.outdir).resolve()
    found, errors = expand_inputs(options.inputs, options.recursive, outdir)
    plan = Plan(errors=errors)
    claimed: dict[Path, Path] = {}
    for src, rel in found:
        dest = outdir / rel / f"{src.stem}{options.suffix}{output_suffix(options.ext, src)}"
        if dest in claimed:
            if claimed[dest] != src.resolve():
                plan.errors.append(f"{src}: output {dest} is already produced from {claimed[dest]} (use --suffix)")
            continue
        claimed[dest] = src.resolve()
        if dest == src.resolve():
            plan.errors.append(f"{src}: output would replace the input (use another -o or a --suffix)")
        elif dest.exists() and not options.overwrite:
            plan.skipped.append(Task(src, dest))
        else:
            plan.todo.append(Task(src, dest))
    return plan


def select_shard(plan: Plan, shard: Shard | None, outdir: Path) -> Plan:
    """The part of ``plan`` that ``shard`` owns (by relative output path); listing errors go to shard 0 only."""
    if shard is None:
        return plan
    outdir = outdir.resolve()

    def mine(tasks: list[Task]) -> list[Task]:
        return [task for task in tasks if shard.owns(task.dest.relative_to(outdir).as_posix())]

    return Plan(todo=mine(plan.todo), skipped=mine(plan.skipped), errors=plan.errors if shard.index == 0 else [])


def check_writable(outdir: Path) -> None:
    """Create ``outdir`` and a probe file in it; EsrError (exit 2) if that fails."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outdir):
            pass
    except OSError as err:
        raise EsrError(f"{outdir}: output folder is not writable ({err.strerror or err})") from None


class InlineExecutor(Executor):
    """Runs each submitted call at once in the calling thread (``--jobs 0``: no pipeline)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # delivered through the future, like a thread pool would
            future.set_exception(err)
        return future


def build_upscaler(options: BatchOptions) -> Upscaler:
    """The :class:`esr.upscaler.Upscaler` for ``options`` (loads the model)."""
    import torch

    from esr.backends import create_backend, default_backend_for
    from esr.upscaler import Upscaler
    from esr.zoo import DEFAULT_MODEL

    model = options.model or DEFAULT_MODEL
    backend_name = options.backend or default_backend_for(model)
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    backend = create_backend(backend_name, model, device=device, fp16=options.fp16)
    return Upscaler(backend, tile=options.tile, tile_pad=options.tile_pad, outscale=options.outscale)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def failure_line(path: Path, err: Exception) -> str:
    """The one ``error: PATH: reason`` line for a file that failed (EsrError messages name their file)."""
    return f"error: {err}" if isinstance(err, EsrError) else f"error: {path}: {_reason(err)}"


def output_done(task: Task, options: BatchOptions) -> bool:
    """True if ``task``'s output exists and may not be replaced: written by an earlier, a concurrent
    (another shard) or an interrupted-and-retried run; every writer is atomic, so it is complete."""
    return not options.overwrite and task.dest.exists()


def read_input(task: Task, options: BatchOptions) -> Image | None:
    """First step of a file: its decoded input, or None if its output is done meanwhile (skip it)."""
    return None if output_done(task, options) else read_image(task.src)


def write_output(result: Image, task: Task, options: BatchOptions) -> bool:
    """Last step of a file: write ``result`` (temp file + rename); False if the output appeared meanwhile."""
    if output_done(task, options):
        return False
    write_image(result, task.dest, options.quality, options.overwrite)
    return True


def upscale_file(task: Task, upscaler: Upscaler, options: BatchOptions,
                 progress: Callable[[float], None] | None = None) -> bool:
    """One file, start to end: read -> upscale -> write safely. True: written; False: skipped (output done).

    Raises on failure (the caller reports it with :func:`failure_line`). Running it twice for one task
    (a retried Ray task, overlapping shards) writes at most once unless ``overwrite``.
    """
    image = read_input(task, options)
    return image is not None and write_output(upscaler.upscale_image(image, progress=progress), task, options)


@dataclass
class Counts:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # outputs that appeared after planning


def run_pipeline(tasks: list[Task], upscaler: Upscaler, options: BatchOptions, counts: Counts,
                 say: Callable[[str], None]) -> None:
    """Decode (workers) -> upscale (this thread) -> encode + atomic write (workers), bounded queues.

    Failures are reported with ``say("error: PATH: reason")`` and counted; Ctrl-C lets the
    writes in flight finish (each is atomic) before it propagates.
    """
    from tqdm import tqdm

    pool: Executor = ThreadPoolExecutor(options.jobs, "esr-io") if options.jobs else InlineExecutor()
    depth = options.jobs + 1
    reads: deque[tuple[Task, Future]] = deque()
    writes: deque[tuple[Task, Future]] = deque()
    pending = iter(tasks)
    bar = tqdm(total=len(tasks), unit="img", disable=options.quiet or not tasks, dynamic_ncols=True)

    def prefetch() -> None:
        while len(reads) < depth and (task := next(pending, None)) is not None:
            reads.append((task, pool.submit(read_input, task, options)))

    def finish_write() -> None:
        task, future = writes.popleft()
        try:
            if future.result():
                counts.done += 1
            else:
                counts.skipped += 1
        except Exception as err:  # any failure of one file is reported and the batch goes on
            counts.failed += 1
            say(failure_line(task.dest, err))

    try:
        prefetch()
        while reads:
            task, future = reads.popleft()
            prefetch()
            progressed = [0.0]

            def advance(fraction: float) -> None:
                progressed[0] += fraction
                bar.update(fraction)

            try:
                image = future.result()
                if image is None:
                    counts.skipped += 1
                    bar.update(1.0)
                    continue
                result = upscaler.upscale_image(image, progress=advance)
            except Exception as err:  # one file's failure (decode, model, NaN, memory) must not stop the batch
                counts.failed += 1
                say(failure_line(task.src, err))
                bar.update(1.0 - progressed[0])
                continue
            writes.append((task, pool.submit(write_output, result, task, options)))
            del result
            while len(writes) >= depth:
                finish_write()
        while writes:
            finish_write()
    except KeyboardInterrupt:
        for _, future in reads:
            future.cancel()
        while writes:  # let atomic writes in flight finish (and count them); nothing partial is left
            finish_write()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def run_batch(options: BatchOptions, log: Callable[[str], None] | None = None) -> int:
    """Run ``esr upscale``: returns the exit code (0 all done, 1 some failed); prints errors and the summary.

    ``log`` receives the ``error:``/``warning:`` lines (default: stderr, above the progress bar).
    """
    from tqdm import tqdm

    def say(line: str) -> None:
        (log or (lambda text: tqdm.write(text, file=sys.stderr)))(line)

    plan = select_shard(plan_batch(options), options.shard, Path(options.outdir))
    check_writable(Path(options.outdir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if options.quiet else "default")
        warnings.showwarning = lambda message, *_, **__: say(f"warning: {message}")
        if options.ray is None:  # the model is loaded here also when all outputs exist: a bad --model is reported
            execute = partial(run_pipeline, upscaler=build_upscaler(options))
        else:  # each Ray actor loads it
            from esr.scale.ray_batch import run_on_ray as execute
        counts = Counts(failed=len(plan.errors))
        for line in plan.errors:
            say(f"error: {line}")
        try:
            execute(plan.todo, options=options, counts=counts, say=say)
        finally:
            skipped = len(plan.skipped) + counts.skipped
            print(f"{counts.done} upscaled, {skipped} skipped, {counts.failed} failed", flush=True)
    return EXIT_FAILED if counts.failed else EXIT_OK
