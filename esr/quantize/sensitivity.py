"""Per-unit sensitivity and the mixed-precision fallback (units over an error budget stay fp32)."""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np
import onnx

from esr.backends.sessions import ort_session
from esr.metrics import fidelity_psnr


def run_model(model: onnx.ModelProto, crops: list[np.ndarray], threads: int = 0) -> list[np.ndarray]:
    """``model``'s output on each crop, in an :func:`esr.backends.sessions.ort_session` of ``threads`` threads."""
    runner = ort_session(model, threads=threads)
    name = runner.get_inputs()[0].name
    return [runner.run(None, {name: crop})[0] for crop in crops]


def unit_sensitivity(build: Callable[[set[str]], onnx.ModelProto], names: list[str], crops: list[np.ndarray],
                     reference: list[np.ndarray], progress: bool = True, threads: int = 0) -> dict[str, float]:
    """Output PSNR vs fp32 with only one unit quantised, for every unit in ``names``."""
    from tqdm import tqdm

    return {name: fidelity_psnr(reference, run_model(build({name}), crops, threads))
            for name in tqdm(names, desc="sensitivity", disable=None if progress else True, leave=False)}


def choose_fallback(build: Callable[[set[str]], onnx.ModelProto], sensitivity: dict[str, float],
                    crops: list[np.ndarray], reference: list[np.ndarray], layer_budget_db: float | None,
                    target_db: float | None, max_kept: int, progress: bool = True,
                    threads: int = 0) -> tuple[set[str], list[dict]]:
    """Units to keep in fp32.

    First every unit whose lone quantisation drops the output below ``layer_budget_db``; then,
    while the whole model is below ``target_db``, the next most sensitive unit (at most
    ``max_kept`` in all). When the target is never reached, the kept set with the best
    whole-model PSNR seen is returned (adding a unit back can lower it: errors can cancel).
    Returns the kept set and the trace of whole-model PSNRs.
    """
    ranked = sorted(sensitivity, key=sensitivity.get)
    kept = {n for n in ranked if layer_budget_db is not None and sensitivity[n] < layer_budget_db}
    kept = set(sorted(kept, key=sensitivity.get)[:max_kept])
    trace: list[dict] = []
    tried: list[set[str]] = []  # the kept set of each trace entry
    while True:
        psnr = fidelity_psnr(reference, run_model(build(set(sensitivity) - kept), crops, threads))
        trace.append({"kept": len(kept), "output_psnr_db": psnr})
        tried.append(set(kept))
        if progress:
            print(f"fallback: {len(kept)} unit(s) in fp32 -> output PSNR vs fp32 {psnr:.2f} dB", file=sys.stderr)
        if target_db is not None and psnr >= target_db:
            return kept, trace
        candidates = [n for n in ranked if n not in kept]
        if target_db is None or not candidates or len(kept) >= max_kept:
            best = max(range(len(trace)), key=lambda index: trace[index]["output_psnr_db"])
            return tried[best], trace
        kept.add(candidates[0])
