"""``--backend auto``: measure the installed backend x precision candidates once, pick the fastest faithful one.

On first use of a (model, machine, library versions, tile shape) :func:`auto_select`:

1. builds every candidate (a backend x precision this machine and its libraries can run; one
   that cannot be built is recorded with its one-line reason);
2. runs each on the package's real-image sample (:mod:`esr.sample`) and scores its output
   against the reference's (onnxruntime fp32 on the same graph): ``fidelity_db``, the PSNR
   (peak 1) of the output's BT.601 Y channel vs fp32 (:func:`esr.metrics.fidelity_psnr_y`: the
   colour space of the Y-PSNR protocol the floor serves);
3. times the candidates whose fidelity reaches the floor, plus the reference, on a tile-sized
   input: ``warmup`` untimed calls each, then ``runs`` rounds in which every candidate runs
   once (interleaved, so a load change on a shared machine hits all alike); median ms. A
   candidate whose fastest run is over :data:`STOP_RATIO` times the fastest candidate's stops
   being timed after its first timed run (it cannot win; its median is of the runs it made);
4. :func:`choose` keeps candidates with ``fidelity_db >= min_fidelity_db`` that are not slower
   than the reference, and picks the fastest.

The measurements (not the choice) are cached as JSON in ``<esr cache>/auto/``, in a file
named by a hash of the key: model fingerprint, tile shape, device, threads, the candidate
list, CPU model, native CPU units, core count and the versions of esr, torch, onnxruntime and
OpenVINO. Any change of those measures again; a new ``--min-fidelity-db`` re-chooses from the
cached measurements without measuring.

Fidelity floor (``DEFAULT_MIN_FIDELITY_DB`` = 55.5 dB Y-PSNR on the sample image): chosen so that
the Set5 x4 Y-PSNR drop stays within 0.02 dB. An error that does not correlate with the model's
own adds its MSE, ``drop = 10 log10(1 + mse_err_y / mse_model_y)``; Set5 x4 at 32.2 dB has
``mse_model_y = 6.0e-4``, so a 0.02 dB budget is a Y error of 55.6 dB on Set5. Scoring in Y
removes the RGB -> Y factor (0.33-0.74) that made an RGB floor uncertain by 3.5 dB. Measured
(scripts/fidelity_floor.py: real errors of OpenVINO bf16 with and without its image-conv split,
OpenVINO f16, torch bf16 and onnxruntime all-INT8 on RLFN-S x4 and RLFN x4, and DITN-Real x4's
added to RLFN-S's output, each scaled by 0.125-8x): the highest sample fidelity of a point beyond
0.02 dB was 55.40 dB (-0.021 dB), every point at >= 55.5 dB dropped at most 0.0196 dB, and one point
within the budget lies below the floor (4 for the RGB floor this replaces). The sample's fidelity
tracks Set5's to -0.6..+1.2 dB for these errors. Details in ``docs/precision.md``.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence

import numpy as np

from esr.errors import EsrError
from esr.fileio import write_bytes_atomically
from esr.metrics import fidelity_psnr_y

DEFAULT_MIN_FIDELITY_DB = 55.5
"""Y-PSNR vs fp32 (dB, on the sample image) a candidate needs (derivation in the module docstring)."""
INT8_AGREEMENT_DB = 42.0
"""Floor when the reference itself runs an INT8 graph (an ``esr quantize`` model): candidates are then
other runtimes of the same graph, and two correct INT8 runtimes round differently. Measured on the
sample image in Y (RLFN x4 / RLFN-S x4, all-INT8 and mixed graphs): OpenVINO vs onnxruntime agreed
to 45.7-51.5 dB (Set5 Y-PSNR within 0.02 dB of each other); a wrong execution (OpenVINO's
dynamic-shape INT8, 2.4 dB lost on Set5) agreed to 32.1-39.5 dB."""
EXACT_DB = 999.0
"""Fidelity stored for an output equal to the reference's (JSON has no infinity)."""
CACHE_FORMAT = 2
"""Bumped when the cached JSON layout or the meaning of its figures changes (older files are measured again).
2: ``fidelity_db`` is the Y-PSNR vs the reference (1: RGB PSNR); timing may stop early (``times_ms`` shorter)."""
STOP_RATIO = 2.0
"""A candidate whose fastest timed run is over this many times the fastest candidate's is not timed again."""

Runner = Callable[[np.ndarray], np.ndarray]
"""A built candidate: (N, 3, h, w) float32 in [0, 1] -> (N, 3, h*s, w*s) float32."""


@dataclass(frozen=True, order=True)
class Candidate:
    """One way to run a model: a backend at a precision on a device."""

    backend: str
    precision: str
    device: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + ("" if self.device == "cpu" else f" ({self.device})")


REFERENCE = Candidate("onnxruntime", "fp32")
"""What every candidate is scored and timed against."""


def default_floor(reference: Candidate) -> float:
    """The fidelity floor against ``reference``: :data:`INT8_AGREEMENT_DB` for an INT8 graph, else the fp32 one."""
    return INT8_AGREEMENT_DB if reference.precision == "int8" else DEFAULT_MIN_FIDELITY_DB


@dataclass
class Trial:
    """What measuring one candidate gave: its median time and fidelity, or why it could not run."""

    candidate: Candidate
    median_ms: float | None = None
    fidelity_db: float | None = None
    error: str | None = None
    times_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["fidelity_db"] = None if self.fidelity_db is None else min(self.fidelity_db, EXACT_DB)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Trial":
        return cls(**{**data, "candidate": Candidate(**data["candidate"])})


@dataclass
class Decision:
    """The chosen candidate, how it compares with the reference, and the table it was chosen from."""

    chosen: Candidate
    reference: Candidate
    median_ms: float
    fidelity_db: float
    reference_ms: float | None
    min_fidelity_db: float
    trials: list[Trial]
    cached: bool = False
    measure_s: float | None = None

    @property
    def speedup(self) -> float | None:
        """Reference median / chosen median (None when the reference could not run)."""
        return None if not self.reference_ms else self.reference_ms / self.median_ms

    def line(self) -> str:
        """``auto: openvino bf16, 4.5x over onnxruntime fp32, Y-PSNR 60.4 dB vs fp32``."""
        speed = (f"{self.speedup:.1f}x over {self.reference.label}" if self.speedup
                 else f"{self.median_ms:.0f} ms a tile")
        versus = "fp32" if self.reference.precision == "fp32" else self.reference.label
        fidelity = "exact" if self.fidelity_db >= EXACT_DB else f"Y-PSNR {self.fidelity_db:.1f} dB vs {versus}"
        origin = " (cached)" if self.cached else f" (measured in {self.measure_s:.1f} s)" if self.measure_s else ""
        return f"auto: {self.chosen.label}, {speed}, {fidelity}{origin}"

    def table(self) -> list[str]:
        """One line per candidate: median ms, ratio to the reference, fidelity, and the verdict."""
        lines = [f"{'candidate':<24}{'median ms':>10}{'vs ref':>8}{'Y dB vs ref':>12}  verdict"]
        for trial in sorted(self.trials, key=lambda t: (t.median_ms is None, t.median_ms or 0.0)):
            ratio = (f"{self.reference_ms / trial.median_ms:.2f}x" if self.reference_ms and trial.median_ms else "-")
            ms = f"{trial.median_ms:.1f}" if trial.median_ms is not None else "-"
            fid = "-" if trial.fidelity_db is None else "exact" if trial.fidelity_db >= EXACT_DB else f"{trial.fidelity_db:.1f}"
            lines.append(f"{trial.candidate.label:<24}{ms:>10}{ratio:>8}{fid:>12}  {self.verdict(trial)}")
        return lines

    def verdict(self, trial: Trial) -> str:
        if trial.candidate == self.chosen:
            return "chosen"
        if trial.error:
            return f"cannot run: {trial.error}"
        if trial.fidelity_db is not None and trial.fidelity_db < self.min_fidelity_db:
            return f"below {self.min_fidelity_db:g} dB"
        if trial.median_ms is not None and self.reference_ms and trial.median_ms > self.reference_ms:
            return "slower than the reference"
        return "slower"


def choose(trials: Sequence[Trial], min_fidelity_db: float = DEFAULT_MIN_FIDELITY_DB,
           reference: Candidate = REFERENCE, choosable: Collection[Candidate] | None = None) -> Decision:
    """The fastest trial that ran, reaches ``min_fidelity_db`` and is not slower than ``reference``.

    ``choosable``: the candidates that may be chosen (default: every trial). When the reference is not among
    them (a precision the user named, say fp16, against the fp32 reference) the speed condition is dropped:
    the fastest faithful one of them runs. EsrError (exit 2) naming each candidate's problem when none qualifies.
    """
    allowed = [t for t in trials if choosable is None or t.candidate in choosable]
    ref = next((t for t in trials if t.candidate == reference and t.error is None and t.median_ms), None)
    bar = ref if choosable is None or reference in choosable else None
    eligible = [t for t in allowed if t.error is None and t.median_ms is not None and t.fidelity_db is not None
                and t.fidelity_db >= min_fidelity_db and (bar is None or t.median_ms <= bar.median_ms)]
    if not eligible:
        if allowed and all(t.error for t in allowed):
            raise EsrError(none_runs(allowed))
        reasons = "; ".join(f"{t.candidate.label}: {t.error or 'below the fidelity floor'}" for t in allowed)
        raise EsrError(f"auto: no backend can run this model at >= {min_fidelity_db:g} dB Y-PSNR vs fp32 "
                       f"({reasons or 'none installed'})")
    best = min(eligible, key=lambda t: t.median_ms)
    return Decision(chosen=best.candidate, reference=reference, median_ms=best.median_ms, fidelity_db=best.fidelity_db,
                    reference_ms=ref.median_ms if ref else None, min_fidelity_db=min_fidelity_db, trials=list(trials))


def none_runs(trials: Sequence[Trial]) -> str:
    """The one line for candidates none of which could run: each backend's reason, then (on a CPU, for one
    precision) what this CPU offers instead, e.g. ``auto: no installed backend computes fp16 on cpu here
    (torch: fp16 needs CUDA (--device cuda); ...); on this CPU use --precision bf16 (AMX-BF16) or fp32``."""
    from esr.capabilities import cpu_alternatives

    settings = sorted({(t.candidate.precision, t.candidate.device) for t in trials})
    hint = cpu_alternatives(settings[0][0]) if len(settings) == 1 and settings[0][1] == "cpu" else ""

    def reason(trial: Trial) -> str:
        text = str(trial.error).removeprefix(f"{trial.candidate.backend} backend: ")
        return text.replace(f"; {hint}", "") if hint else text

    what = " or ".join(f"{precision} on {device}" for precision, device in settings)
    reasons = "; ".join(f"{t.candidate.label}: {reason(t)}" for t in trials)
    return f"auto: no installed backend computes {what} here ({reasons}){f'; {hint}' if hint else ''}"


def measure(candidates: Iterable[Candidate], build: Callable[[Candidate], Runner], sample, tile,
            references: Sequence[Candidate] = (REFERENCE,), min_fidelity_db: float | None = None,
            warmup: int = 1, runs: int = 3, clock: Callable[[], float] = time.perf_counter,
            stop_ratio: float | None = STOP_RATIO,
            announce: Callable[[int], None] | None = None) -> tuple[list[Trial], Candidate]:
    """Build, score and time ``candidates`` (steps 1-3 of the module docstring).

    Args:
        build: candidate -> runner; raises EsrError (its one line is recorded) when it cannot.
        sample: (1, 3, h, w) float in [0, 1], the fidelity image; tile: the timing input (arrays or
            tensors, whatever the runners take).
        references: the reference and its stand-ins, in order: the first that builds is used.
        min_fidelity_db: candidates below it are not timed (None: :func:`default_floor` of the reference).
        stop_ratio: stop timing a candidate this many times slower than the fastest (None: time all ``runs``).
        announce: called with the number of candidates that built, before they are scored and timed.

    Returns:
        (one trial per candidate, the reference first; the reference used).
    """
    candidates = list(dict.fromkeys([*references, *candidates]))
    trials, runners = {}, {}
    for candidate in candidates:
        try:
            runners[candidate] = build(candidate)
        except EsrError as err:
            trials[candidate] = Trial(candidate, error=str(err))
    limits = [runner.max_hw for runner in runners.values() if getattr(runner, "max_hw", None)]
    if limits:  # a static-shape graph among them: every input cropped to fit all
        height, width = min(h for h, _ in limits), min(w for _, w in limits)
        sample, tile = sample[..., :height, :width], tile[..., :height, :width]
    reference = next((c for c in references if c in runners), None)
    if reference is None:
        reasons = "; ".join(f"{c.label}: {trials[c].error}" for c in references if c in trials)
        raise EsrError(f"auto: no reference can run this model ({reasons})")
    if announce is not None:
        announce(len(runners))
    floor = default_floor(reference) if min_fidelity_db is None else min_fidelity_db
    expected = runners[reference](sample)
    for candidate, runner in list(runners.items()):
        try:
            output = runner(sample)
        except Exception as err:  # a runtime failing on this model: recorded, never fatal
            trials[candidate] = Trial(candidate, error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            del runners[candidate]
            continue
        fidelity = EXACT_DB if candidate == reference else min(fidelity_psnr_y([expected], [output]), EXACT_DB)
        trials[candidate] = Trial(candidate, fidelity_db=fidelity)
        if fidelity < floor:
            del runners[candidate]  # not timed: it cannot be chosen
    for runner in runners.values():
        for _ in range(warmup):
            runner(tile)
    times: dict[Candidate, list[float]] = {c: [] for c in runners}
    for _ in range(runs):
        fastest = min((min(values) for values in times.values() if values), default=None)
        for candidate, runner in runners.items():
            if times[candidate] and stop_ratio is not None and min(times[candidate]) > stop_ratio * fastest:
                continue  # cannot win: its one timed run stands
            start = clock()
            runner(tile)
            times[candidate].append((clock() - start) * 1e3)
    for candidate, values in times.items():
        trials[candidate].times_ms = values
        trials[candidate].median_ms = statistics.median(values)
    order = [reference, *(c for c in candidates if c != reference)]
    return [trials[c] for c in order], reference


def cache_path(key: dict, root: Path | None = None) -> Path:
    """``<esr cache>/auto/<hash of key>.json``."""
    if root is None:
        from esr.loading import cache_dir

        root = cache_dir() / "auto"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return root / f"{digest}.json"


def load_trials(path: Path, key: dict) -> tuple[list[Trial], Candidate] | None:
    """Cached (trials, reference) for ``key``; None when absent, unreadable, of another format or another key."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT or data.get("key") != json.loads(json.dumps(key)):
            return None
        return [Trial.from_json(t) for t in data["trials"]], Candidate(**data["reference"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_trials(path: Path, key: dict, trials: Sequence[Trial], reference: Candidate) -> None:
    payload = {"format": CACHE_FORMAT, "key": key, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "reference": asdict(reference), "trials": [t.to_json() for t in trials]}
    write_bytes_atomically(path, json.dumps(payload, indent=1).encode())


def auto_select(key: dict, run_measurements: Callable[[], tuple[list[Trial], Candidate]],
                min_fidelity_db: float | None = None, cache_root: Path | None = None,
                choosable: Collection[Candidate] | None = None) -> Decision:
    """The decision for ``key``: from the cache when it holds this key's measurements, else measured and cached.

    ``min_fidelity_db`` None: :func:`default_floor` of the reference the measurements used; ``choosable``: as
    for :func:`choose`.
    """
    path = cache_path(key, cache_root)
    cached = load_trials(path, key)
    seconds = None
    if cached is None:
        start = time.perf_counter()
        trials, reference = run_measurements()
        seconds = time.perf_counter() - start
        save_trials(path, key, trials, reference)
    else:
        trials, reference = cached
    floor = default_floor(reference) if min_fidelity_db is None else min_fidelity_db
    decision = choose(trials, floor, reference, choosable)
    decision.cached, decision.measure_s = cached is not None, seconds
    return decision
