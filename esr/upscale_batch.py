"""The batch behind ``esr upscale``: find inputs, plan outputs, run the decode -> model -> encode pipeline.

Decoding and encoding run in ``jobs`` worker threads while the main thread runs the
model; at most ``jobs + 1`` decoded images wait for the model and at most ``jobs + 1``
results wait to be written, so memory stays bounded. A bad input prints one
``error: PATH: reason`` line and the batch goes on; existing outputs are skipped unless
``overwrite`` (an empty, 0-byte output counts as missing); no output ever replaces an input;
Ctrl-C and SIGTERM let writes in flight finish (each is atomic) and stop; a claim or temp file is made in
a step they cannot cut in two (:mod:`esr.interrupts`), so none is left behind.

OUTDIR may be an input folder (``esr upscale dir -o dir --suffix _x4``): a file that a folder
scan or glob finds is not an input when it is an output of this run (the planned output of
another input) or of an earlier one (it sits in its own output folder and its stem ends with
the non-empty ``--suffix``), so reruns never upscale outputs again (``a_x4_x4.png``).

Several runs on one OUTDIR share the work through per-output claim files
(:mod:`esr.claims`): a run skips what another finished or is writing, and a run starts
by removing the temp files and claims that killed runs left behind.

Videos and animations (see :mod:`esr.media_kinds`) are upscaled after the images, one
file at a time, each by its kind's runner with its own frame pipeline, under the same
claims and output policy.

One file's work is :func:`upscale_file`: :func:`begin_file` (claim the output, or skip it),
:func:`process_file` (read -> upscale -> write atomically, or the kind's runner),
:func:`end_file` (release the claim). The threaded image pipeline runs the same steps
overlapped (:func:`write_output` is its write), videos and animations go through
:func:`process_file`, and Ray actors (:mod:`esr.scale.ray_batch`) call :func:`upscale_file`.
``--shard I/N`` (:mod:`esr.scale.shard`) keeps this process's part of the plan (:func:`select_shard`).
"""
from __future__ import annotations

import glob
import json
import sys
import tempfile
import threading
import warnings
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from esr import claims
from esr.errors import EXIT_FAILED, EXIT_OK, EsrError, error_line, one_line
from esr.fileio import file_id, same_file
from esr.image_io import DEFAULT_MAX_PIXELS, Image, read_image, write_image
from esr.interrupts import interrupts_deferred
from esr.media_kinds import IMAGE, KINDS, collected_suffixes, kind_of
from esr.pools import lower_priority
from esr.scale.shard import Shard
from esr.video.options import VideoOptions

if TYPE_CHECKING:
    from esr.upscaler import Upscaler


@dataclass(frozen=True)
class BatchOptions:
    """The ``esr upscale`` arguments (see its ``--help``)."""

    inputs: list[str]
    outdir: str | Path
    model: str | None = None
    backend: str = "auto"
    device: str | None = None
    precision: str | None = "auto"
    min_fidelity_db: float | None = None
    threads: int = 0
    tile: int = 0
    tile_pad: int = 16
    tile_streams: int = 1
    outscale: float | None = None
    ext: str = "png"
    quality: int = 95
    suffix: str = ""
    recursive: bool = False
    overwrite: bool = False
    jobs: int = 2
    quiet: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    video: VideoOptions = field(default_factory=VideoOptions)
    shard: Shard | None = None  # this process's shard of the outputs (None: all)
    ray: str | None = None  # None: no Ray; "": ray.init()'s default cluster; else its address
    ray_actors: int = 0  # 0: one per GPU, else one per CPU, of the Ray cluster
    json: bool = False  # the summary as one JSON object on stdout (auto's choice in it, not printed)


@dataclass(frozen=True)
class Task:
    src: Path
    dest: Path
    replace: bool = False  # dest exists but is empty (0 bytes): it is written again
    kind: str = IMAGE.name  # the media kind (esr.media_kinds) that upscales it


@dataclass
class Plan:
    """Inputs sorted into work to do, outputs that already exist, and per-input errors."""

    todo: list[Task] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _folder_images(folder: Path, recursive: bool, outdir: Path) -> list[Path]:
    """Images, videos and animations in ``folder`` (hidden files excluded); an OUTDIR nested inside it is not scanned."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    nested = folder.resolve() in outdir.parents
    suffixes = collected_suffixes()
    return sorted(
        p for p in found
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        and not (nested and outdir in p.resolve().parents)
    )


@dataclass(frozen=True)
class Found:
    """An input file, the folder of its output relative to OUTDIR, and whether a scan (folder, glob) found it."""

    path: Path
    rel: Path
    scanned: bool


def expand_inputs(inputs: list[str], recursive: bool, outdir: Path) -> tuple[list[Found], list[str]]:
    """Every input image, and error lines (a missing path, a glob or folder without images).

    Folders give their images (``recursive``: the whole tree, mirrored); globs give the files they match.
    """
    found: list[Found] = []
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = _folder_images(path, recursive, outdir)
            found += [Found(p, p.parent.relative_to(path), True) for p in images]
            if not images:
                errors.append(f"{item}: no images in this folder (looked for {', '.join(collected_suffixes())})")
        elif path.is_file():
            found.append(Found(path, Path(), False))
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=recursive) if Path(m).is_file())
            found += [Found(m, Path(), True) for m in matches]
            if not matches:
                errors.append(f"{item}: no files match")
        else:
            errors.append(f"{item}: no such file or directory")
    return found, errors


def is_earlier_output(item: Found, dest: Path, suffix: str) -> bool:
    """A scanned file in its own output folder whose stem ends with the run's non-empty suffix."""
    return (item.scanned and bool(suffix) and item.path.stem.endswith(suffix)
            and same_file(item.path.parent, dest.parent))


def plan_batch(options: BatchOptions) -> Plan:
    """Map every input to its output path; skip existing outputs unless ``overwrite``; never replace an input.

    A scanned file that is an output of this run (the planned output of another input) is not an
    input; with a suffix (:func:`is_earlier_output`) it is known to be esr's and may be rewritten
    with ``overwrite``; without one it may also be the user's own file, so it stays protected.
    """
    outdir = Path(options.outdir).resolve()
    found, errors = expand_inputs(options.inputs, options.recursive, outdir)
    plan = Plan(errors=errors)
    kinds = [kind_of(item.path) for item in found]
    dests = [outdir / item.rel / f"{item.path.stem}{options.suffix}{kind.output_suffix(item.path, options)}"
             for item, kind in zip(found, kinds)]
    producers: dict[Path, set[Path]] = {}
    for item, dest in zip(found, dests):
        producers.setdefault(dest, set()).add(item.path.resolve())

    def output_of_another(item: Found) -> bool:
        return bool(producers.get(item.path.resolve(), set()) - {item.path.resolve()})

    earlier = [is_earlier_output(item, dest, options.suffix) for item, dest in zip(found, dests)]
    inputs = [(item, dest, kind.name) for item, dest, kind, ours in zip(found, dests, kinds, earlier)
              if not (ours or (item.scanned and output_of_another(item)))]
    protected = {file_id(item.path) for item, ours in zip(found, earlier) if not ours}
    claimed: dict[Path, Path] = {}
    for item, dest, kind in inputs:
        src = item.path
        if dest in claimed:
            if claimed[dest] != src.resolve():
                plan.errors.append(f"{src}: output {dest} is already produced from {claimed[dest]} (use --suffix)")
            continue
        claimed[dest] = src.resolve()
        written = dest.exists() and dest.stat().st_size > 0
        if dest == src.resolve():
            plan.errors.append(f"{src}: output would replace the input (use another -o or a --suffix)")
        elif dest.is_dir():
            plan.errors.append(f"{src}: output {dest} is a folder")
        elif written and not options.overwrite:
            plan.skipped.append(Task(src, dest, kind=kind))
        elif dest.exists() and file_id(dest) in protected:
            plan.errors.append(f"{src}: output {dest} would replace another input (use another -o or a --suffix)")
        else:
            plan.todo.append(Task(src, dest, replace=dest.exists(), kind=kind))
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


SMALL_TIMING_SIDES = (128, 256)
"""Timing tiles ``--backend auto`` uses instead of the default tile when a batch's images are that small."""
SIZE_PROBES = 8
"""Images whose header :func:`timing_tile_hw` reads (the first of the batch)."""


def timing_tile_hw(tasks: list[Task], options: BatchOptions) -> tuple[int, int] | None:
    """The input ``--backend auto`` should time for this batch; None: the default tile.

    When there is no ``--tile`` and the first :data:`SIZE_PROBES` images (a batch of images only: a
    video's frames may be large) all fit a side of :data:`SMALL_TIMING_SIDES`, the smallest such square:
    these images run whole, so the default 362 px tile would time the wrong shape at up to 8x the cost.
    Headers only (Pillow); an unreadable one keeps the default.
    """
    if options.tile or not tasks or any(task.kind != IMAGE.name for task in tasks):
        return None
    from PIL import Image as PILImage

    longest = 0
    for task in tasks[:SIZE_PROBES]:
        try:
            with PILImage.open(task.src) as handle:
                longest = max(longest, *handle.size)
        except (OSError, ValueError, PILImage.DecompressionBombError):
            return None
    side = next((side for side in SMALL_TIMING_SIDES if longest <= side), None)
    return None if side is None else (side, side)


def build_upscaler(options: BatchOptions, tile_hw: tuple[int, int] | None = None) -> Upscaler:
    """The :class:`esr.upscaler.Upscaler` for ``options`` (loads the model); ``tile_hw``: what ``--backend auto``
    times (default: the ``--tile`` with its padding, else :data:`esr.backends.auto_backend.DEFAULT_TILE_HW`)."""
    from esr.backends import default_backend_for, default_device
    from esr.backends.auto_backend import DEFAULT_TILE_HW, make_backend
    from esr.loading import open_model
    from esr.upscaler import Upscaler
    from esr.zoo import DEFAULT_MODEL

    loaded = open_model(options.model or DEFAULT_MODEL)
    backend_name = options.backend or default_backend_for(loaded)
    device = options.device or default_device(backend_name)
    tile_hw = tile_hw or ((options.tile + 2 * options.tile_pad,) * 2 if options.tile else DEFAULT_TILE_HW)
    backend = make_backend(backend_name, loaded, device, options.precision, options.threads,
                           options.min_fidelity_db, tile_hw, options.quiet or options.json)
    return Upscaler(backend, tile=options.tile, tile_pad=options.tile_pad, outscale=options.outscale,
                    tile_streams=options.tile_streams)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@dataclass
class Counts:
    done: int = 0
    skipped: int = 0
    busy: int = 0  # of the skipped: being written by another run
    failed: int = 0

    def summary(self) -> str:
        busy = f" ({self.busy} being written by another run)" if self.busy else ""
        return f"{self.done} upscaled, {self.skipped} skipped{busy}, {self.failed} failed"

    def to_json(self) -> dict:
        """The summary as ``{"upscaled", "skipped", "busy", "failed"}`` (busy: of the skipped)."""
        return {"upscaled": self.done, "skipped": self.skipped, "busy": self.busy, "failed": self.failed}


def describe_backend(backend: object) -> dict:
    """What runs, as ``esr upscale --json`` reports it: ``{"backend", "precision", "device", "auto"}`` (``auto``:
    the decision line of ``--backend auto``, else None)."""
    decision = getattr(backend, "decision", None)
    return {"backend": getattr(backend, "label", getattr(backend, "name", None)),
            "precision": getattr(backend, "precision", None), "device": getattr(backend, "device", None),
            "auto": None if decision is None else decision.line()}


def json_summary(counts: Counts, options: BatchOptions, ran: dict | None) -> dict:
    """``esr upscale --json``'s object: the counts, OUTDIR, the model and what ran (:func:`describe_backend`;
    None values when nothing was loaded)."""
    from esr.zoo import DEFAULT_MODEL

    return {**counts.to_json(), "outdir": str(options.outdir), "model": str(options.model or DEFAULT_MODEL),
            **(ran or describe_backend(None))}


def _written(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def failure_line(path: Path, err: Exception) -> str:
    """The one ``error: PATH: reason`` line for a file that failed (EsrError messages name their file)."""
    message = str(err) if isinstance(err, EsrError) else _reason(err)
    return error_line(message if message.startswith(str(path)) else f"{path}: {message}")


def report_failure(err: Exception, path: Path, counts: Counts, say: Callable[[str], None]) -> None:
    """Count a failed file and say one ``error: PATH: reason`` line."""
    counts.failed += 1
    say(failure_line(path, err))


DONE, SKIPPED, BUSY = "done", "skipped", "busy"
"""What became of a file that did not fail: written; skipped (its output is written); skipped, being
written by another run."""


def begin_file(task: Task, options: BatchOptions) -> str | None:
    """Claim ``task``'s output (:mod:`esr.claims`) before its input is read: None to go ahead (the claim
    is held until :func:`end_file`), else SKIPPED (written after this run's plan: by another run, or
    before a retry) or BUSY (another live run holds it). OSError if the claim cannot be made."""
    if not claims.try_claim(task.dest):
        return BUSY
    if options.overwrite or task.replace or not _written(task.dest):
        return None
    claims.release(task.dest)
    return SKIPPED


def end_file(task: Task) -> None:
    """Release the claim :func:`begin_file` took (after the write, or after a failure)."""
    claims.release(task.dest)


@contextmanager
def file_claim(task: Task, options: BatchOptions) -> Iterator[str | None]:
    """:func:`begin_file` -> :func:`end_file` around the block: yields None (go ahead, the claim held) or SKIPPED /
    BUSY. The claim is released however the block ends, Ctrl-C and SIGTERM included, also one that arrives while
    it is being made (:func:`esr.interrupts.interrupts_deferred`). OSError if the claim cannot be made."""
    try:
        with interrupts_deferred():
            skip = begin_file(task, options)
        yield skip
    finally:
        end_file(task)  # no-op for a claim that is not this process's (BUSY) or already released (SKIPPED)


def count_outcome(counts: Counts, outcome: str) -> None:
    """Count a file that did not fail: DONE, SKIPPED or BUSY (only the fields it changes are touched: the
    pipeline's writers count ``done`` from their threads)."""
    if outcome == DONE:
        counts.done += 1
        return
    counts.skipped += 1
    counts.busy += outcome == BUSY


def claim_output(task: Task, options: BatchOptions, counts: Counts) -> bool:
    """:func:`begin_file`, counted: True to go ahead; False (counted as skipped) if another run holds the
    output, or wrote it after this run's plan. OSError if the claim cannot be made."""
    skip = begin_file(task, options)
    if skip is not None:
        count_outcome(counts, skip)
    return skip is None


def write_output(result: Image, task: Task, options: BatchOptions) -> Path:
    """Encode and write ``result`` to ``task.dest`` atomically (temp file + rename, the output policy)."""
    return write_image(result, task.dest, options.quality, options.overwrite or task.replace)


WHOLE_FILE_KINDS = {kind.name: kind for kind in KINDS if kind.runner}
"""Media kinds upscaled one whole file at a time by their runner (videos, animations)."""


def process_file(task: Task, upscaler: Upscaler, options: BatchOptions) -> None:
    """The work on one claimed file: an image is read, upscaled and written (:func:`write_output`); a video
    or animation goes to its kind's runner (:mod:`esr.media_kinds`). Raises on failure."""
    if task.kind == IMAGE.name:
        write_output(upscaler.upscale_image(read_image(task.src, options.max_pixels)), task, options)
    else:
        WHOLE_FILE_KINDS[task.kind].load_runner()(task, upscaler, options)


def upscale_file(task: Task, upscaler: Upscaler, options: BatchOptions) -> str:
    """One file, start to end: claim -> :func:`process_file` -> release. DONE, SKIPPED or BUSY; raises on
    failure (reported with :func:`failure_line`), the claim released. Running it twice for one task
    (a retried Ray task, overlapping shards) writes once unless ``overwrite``."""
    with file_claim(task, options) as skip:
        if skip is not None:
            return skip
        process_file(task, upscaler, options)
    return DONE


def show_tiles(bar, done: list[float], fraction: float) -> None:
    """Progress within one image (``fraction`` more of it done; ``done`` holds the running total) as the bar's
    postfix, so that the bar itself counts whole images (``3/5 img``); redrawn at tqdm's own rate."""
    done[0] += fraction
    bar.set_postfix_str(f"image {min(done[0], 1.0):.0%}", refresh=False)
    bar.update(0)


def run_pipeline(tasks: list[Task], upscaler: Upscaler, options: BatchOptions, counts: Counts,
                 say: Callable[[str], None]) -> None:
    """Decode (workers) -> upscale (this thread) -> encode + atomic write (workers), bounded queues.

    Each output is claimed (:mod:`esr.claims`) before its input is read and released when it is
    written or has failed; an output another run holds or has finished meanwhile is skipped.
    Failures are reported with ``say("error: PATH: reason")`` and counted; Ctrl-C (and SIGTERM)
    lets the writes in flight finish (each is atomic) before it propagates; claims are released.
    """
    from tqdm import tqdm

    pool: Executor = (ThreadPoolExecutor(options.jobs, "esr-io", initializer=lower_priority) if options.jobs
                      else InlineExecutor())
    counting = threading.Lock()
    depth = options.jobs + 1
    reads: deque[tuple[Task, Future]] = deque()
    writes: deque[tuple[Task, Future]] = deque()
    held: set[Path] = set()
    pending = iter(tasks)
    bar = tqdm(total=len(tasks), unit="img", disable=True if options.quiet or not tasks else None,
               dynamic_ncols=True)  # None: no bar when stderr is not a terminal (logs stay line by line)

    def fail(err: Exception, path: Path) -> None:
        report_failure(err, path, counts, say)

    def finish(task: Task) -> None:
        end_file(task)
        held.discard(task.dest)

    def start(task: Task) -> bool:
        """Claim ``task``'s output; False (counted, bar advanced) if it is not this run's to write."""
        go = False
        try:
            with interrupts_deferred():  # a claim made is in `held` (released at the end) before Ctrl-C lands
                go = claim_output(task, options, counts)
                if go:
                    held.add(task.dest)
        except OSError as err:
            fail(err, task.dest)
        if not go:
            bar.update(1)
        return go

    def prefetch() -> None:
        while len(reads) < depth and (task := next(pending, None)) is not None:
            if start(task):
                reads.append((task, pool.submit(read_image, task.src, options.max_pixels)))

    def write_counted(result: Image, task: Task) -> None:
        """:func:`write_output`, counted in the writing thread: an interrupt of this thread between a write's
        end and its count (or between its submission and its place in ``writes``) cannot lose it."""
        write_output(result, task, options)
        with counting:
            count_outcome(counts, DONE)

    def finish_write() -> None:
        task, future = writes.popleft()
        try:
            future.result()
        except Exception as err:  # any failure of one file is reported and the batch goes on
            fail(err, task.dest)
        finish(task)

    try:
        prefetch()
        while reads:
            task, future = reads.popleft()
            prefetch()
            try:
                result = upscaler.upscale_image(future.result(), progress=partial(show_tiles, bar, [0.0]))
            except Exception as err:  # one file's failure (decode, model, NaN, memory) must not stop the batch
                fail(err, task.src)
                finish(task)
                bar.set_postfix_str("", refresh=False)
                bar.update(1)
                continue
            bar.set_postfix_str("", refresh=False)
            bar.update(1)
            writes.append((task, pool.submit(write_counted, result, task)))
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
        for dest in list(held):
            claims.release(dest)
        bar.close()


def run_whole_files(tasks: list[Task], upscaler: Upscaler, options: BatchOptions, counts: Counts,
                    say: Callable[[str], None]) -> None:
    """Upscale videos and animations one file at a time by their kind's runner (:mod:`esr.media_kinds`),
    each output claimed like an image's; Ctrl-C (and SIGTERM) propagate after the claim is released."""
    for task in tasks:
        try:
            with file_claim(task, options) as skip:
                if skip is not None:
                    count_outcome(counts, skip)
                    continue
                try:
                    process_file(task, upscaler, options)
                    counts.done += 1
                except Exception as err:  # one file's failure must not stop the batch
                    report_failure(err, task.src, counts, say)
        except OSError as err:  # the claim could not be made (or released)
            report_failure(err, task.dest, counts, say)


def run_local(tasks: list[Task], upscaler: Upscaler, options: BatchOptions, counts: Counts,
              say: Callable[[str], None]) -> None:
    """This process: images through the threaded pipeline, then videos and animations one by one."""
    run_pipeline([t for t in tasks if t.kind == IMAGE.name], upscaler, options, counts, say)
    run_whole_files([t for t in tasks if t.kind != IMAGE.name], upscaler, options, counts, say)


def run_batch(options: BatchOptions, log: Callable[[str], None] | None = None) -> int:
    """Run ``esr upscale``: returns the exit code (0 all done, 1 some failed); prints errors and the summary.

    ``log`` receives the ``error:``/``warning:`` lines, one line each (default: stderr, above the progress bar).
    """
    from tqdm import tqdm

    def say(line: str) -> None:
        (log or (lambda text: tqdm.write(text, file=sys.stderr)))(one_line(line))

    plan = select_shard(plan_batch(options), options.shard, Path(options.outdir))
    check_writable(Path(options.outdir))
    for folder in sorted({task.dest.parent for task in plan.todo + plan.skipped}):
        claims.remove_stale_temps(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if options.quiet else "default")
        warnings.showwarning = lambda message, *_, **__: say(f"warning: {message}")
        tile_hw = timing_tile_hw(plan.todo, options)
        if options.ray is None:  # the model is loaded here also when all outputs exist: a bad --model is reported
            upscaler = build_upscaler(options, tile_hw)
            ran = describe_backend(upscaler.backend)
            execute = partial(run_local, upscaler=upscaler)
        else:  # the backend is chosen once for the whole cluster, then each Ray actor loads it
            from esr.scale.ray_batch import run_on_ray

            ran = {}
            execute = partial(run_on_ray, tile_hw=tile_hw, ran=ran)
        counts = Counts(skipped=len(plan.skipped), failed=len(plan.errors))
        for line in plan.errors:
            say(error_line(line))
        try:
            execute(plan.todo, options=options, counts=counts, say=say)
        finally:
            print(json.dumps(json_summary(counts, options, ran)) if options.json else counts.summary(), flush=True)
    return EXIT_FAILED if counts.failed else EXIT_OK
