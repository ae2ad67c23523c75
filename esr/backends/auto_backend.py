"""``--backend auto`` / ``--precision auto``: measure the candidates once, then run the one chosen.

The candidates are every registered runtime (or the one given) that runs the model's kind on the
device, at every precision it declares (or the one given); :mod:`esr.autoselect` measures, caches
and chooses. The reference is onnxruntime at the model's own precision (fp32, or int8 for an
``esr quantize`` graph), or torch fp32 where onnxruntime cannot run (e.g. CUDA without
onnxruntime-gpu). A model only one candidate can run (a TensorRT engine) runs without measuring.
"""
from __future__ import annotations

import hashlib
import os

import torch

from esr.autoselect import Candidate, auto_select, measure
from esr.channels import to_channels
from esr.errors import EsrError
from esr.loading import LoadedModel

DEFAULT_TILE_HW = (362, 362)
"""What the candidates are timed on when the caller gives no tile: the Upscaler's automatic tile
(330 px) with its 16 px context on each side."""


def candidates_for(loaded: LoadedModel, device: str, backends: list[str] | None,
                   precision: str | None) -> list[Candidate]:
    """Backend x precision pairs to try: registered runtimes (or ``backends``) that run ``loaded``'s kind on
    ``device``, at each precision they declare (or ``precision``). Not-installed runtimes stay in (their trial says so)."""
    from esr.backends import BACKENDS, runtime_names

    found = []
    for name in backends or runtime_names():
        spec = BACKENDS.get(name)
        if loaded.kind not in spec.kinds or device not in spec.devices:
            continue
        precisions = spec.precisions if precision in (None, "auto") else [p for p in spec.precisions if p == precision]
        if loaded.kind == "engine":  # an engine runs at the precision it was built in, nothing else
            precisions = [p for p in precisions if p == loaded.descriptor.precision]
        found += [Candidate(name, p, device) for p in precisions]
    if not found:
        at = "" if precision in (None, "auto") else f" at {precision}"
        raise EsrError(f"{loaded.label}: no installed backend runs this {loaded.kind} model on {device}{at}")
    return found


def model_key(loaded: LoadedModel) -> str:
    """A short fingerprint of what runs: a torch model's weights, descriptor and export code, or a file's bytes."""
    if loaded.kind == "module":
        from esr.backends.graph_cache import exporter_sources, files_fingerprint, model_fingerprint

        return f"{model_fingerprint(loaded)}-{files_fingerprint(exporter_sources())}"
    digest = hashlib.sha256()
    with open(loaded.path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def decision_key(loaded: LoadedModel, candidates: list[Candidate], device: str, threads: int,
                 tile_hw: tuple[int, int]) -> dict:
    """Everything a cached decision depends on (:mod:`esr.autoselect`)."""
    from esr import __version__
    from esr.bench import cpu_model, installed_version
    from esr.capabilities import cpu_summary

    return {"model": model_key(loaded), "kind": loaded.kind, "tile": [1, loaded.descriptor.in_channels, *tile_hw],
            "device": device,
            "threads": threads, "candidates": [c.label for c in candidates],
            "machine": {"cpu": cpu_model(), "units": cpu_summary(), "cores": os.cpu_count(),
                        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None},
            "versions": {"esr": __version__, "torch": torch.__version__,
                         "onnxruntime": installed_version("onnxruntime", "onnxruntime-gpu"),
                         "openvino": installed_version("openvino")}}


class AutoBackend:
    """Runs whichever backend :mod:`esr.autoselect` chose; ``decision`` holds why (``decision.line()``, ``table()``).

    Args:
        precision: None or ``auto`` for every precision, else only that one.
        backends: runtimes to choose from (default: every registered one).
        min_fidelity_db: the floor, Y-PSNR on the sample image (None: :func:`esr.autoselect.default_floor`).
        tile_hw: the input the candidates are timed on.
        quiet: do not print the decision line, nor the one announcing a measurement, to stdout.
    """

    name = "auto"

    def __init__(self, loaded: LoadedModel, device: str = "cpu", precision: str | None = None, threads: int = 0,
                 backends: list[str] | None = None, min_fidelity_db: float | None = None,
                 tile_hw: tuple[int, int] = DEFAULT_TILE_HW, quiet: bool = False) -> None:
        from esr.backends import create_backend

        candidates = candidates_for(loaded, device, backends, precision)
        named = precision not in (None, "auto")  # a precision the user named: chosen among its candidates only
        pool = candidates_for(loaded, device, backends, None) if named else candidates
        own = loaded.descriptor.precision if loaded.kind != "module" else "fp32"
        references = [Candidate("onnxruntime", own, device), Candidate("torch", own, device)]
        built: dict[Candidate, object] = {}

        def build(candidate: Candidate):
            if candidate not in built:
                built[candidate] = create_backend(candidate.backend, loaded, candidate.device, candidate.precision,
                                                  threads)
            return built[candidate]

        if len(candidates) == 1:
            self.decision = None
            self.chosen = build(candidates[0])
        else:
            from esr.sample import sample_batch

            channels = loaded.descriptor.in_channels  # the RGB sample as the model takes it (esr.channels)
            sample = to_channels(torch.from_numpy(sample_batch()), channels)
            tile = torch.rand(1, channels, *tile_hw, generator=torch.Generator().manual_seed(0))
            usable_refs = [r for r in references if r in pool] or [pool[0]]

            def announce(count: int) -> None:
                if not quiet:
                    print(f"auto: measuring {count} backend x precision candidates once for this model, machine and "
                          f"tile {tile_hw[0]}x{tile_hw[1]} (the choice is cached) ...", flush=True)

            self.decision = auto_select(
                decision_key(loaded, candidates, device, threads, tile_hw),
                lambda: measure(candidates, build, sample, tile, references=usable_refs, min_fidelity_db=min_fidelity_db,
                                announce=announce),
                min_fidelity_db, choosable=candidates if named else None)
            self.chosen = build(self.decision.chosen)
            built.clear()  # free the candidates not chosen
            if not quiet:
                print(self.decision.line(), flush=True)
        self.descriptor = self.chosen.descriptor
        self.device = self.chosen.device
        self.precision = self.chosen.precision
        self.max_hw = self.chosen.max_hw
        self.streams = getattr(self.chosen, "streams", 1)
        self.run_streamed = getattr(self.chosen, "run_streamed", self.chosen)

    @property
    def label(self) -> str:
        """``auto -> openvino`` (the precision is ``self.precision``)."""
        return f"auto -> {self.chosen.name}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.chosen(x)


def make_backend(name: str, loaded: LoadedModel, device: str = "cpu", precision: str | None = None, threads: int = 0,
                 min_fidelity_db: float | None = None, tile_hw: tuple[int, int] = DEFAULT_TILE_HW,
                 quiet: bool = False):
    """The backend the CLI and the Python API run: ``name`` at ``precision``, or :class:`AutoBackend` when either is
    ``auto`` (``--backend openvino --precision auto`` chooses among OpenVINO's precisions)."""
    from esr.backends import AUTO, check_kind, create_backend, usable_spec

    if name != AUTO and precision != AUTO:
        return create_backend(name, loaded, device, precision, threads)
    if name != AUTO:  # its own one-line reasons first: not installed, wrong device, wrong kind of model
        check_kind(name, usable_spec(name, device), loaded)
    return create_backend(AUTO, loaded, device, precision, threads, backends=None if name == AUTO else [name],
                          min_fidelity_db=min_fidelity_db, tile_hw=tile_hw, quiet=quiet)
