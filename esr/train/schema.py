"""The schema of an ``esr train`` options document, checked before anything runs.

Built from what BasicSR 1.4.2 reads (``utils/options.py``, ``train.py``, ``models/base_model.py``,
``models/sr_model.py``, ``data/__init__.py``, ``data/paired_image_dataset.py``,
``utils/logger.py``) plus what esr adds (``stages``, ``train.grad_clip/amp/channels_last``,
esr's datasets). Every level rejects unknown keys, with a "did you mean" suggestion for a
near miss; ``type`` blocks are checked against their registry (archs, losses, metrics,
datasets, the optimizer and schedulers BasicSR builds), and their other keys against the
constructor's signature (missing required arguments too). Keys that BasicSR sets itself
(``dist``, ``rank``, ``path.experiments_root``, ``datasets.*.phase``/``scale``...) are unknown
here: BasicSR would overwrite them. ``network_g`` is within the arch's limits (:mod:`esr.limits`,
checked before BasicSR allocates it). Cross-checks: ``network_g.upscale`` equals ``scale``,
``gt_size`` is a multiple of ``scale``, ``name`` is a plain folder name.

:func:`validate_document` raises one :class:`esr.errors.EsrError` line listing the problems.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from esr.errors import EXIT_USAGE, EsrError


@dataclass(frozen=True)
class Keys:
    """The keys of one mapping: ``required`` and ``optional`` names."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def known(self) -> tuple[str, ...]:
        return self.required + self.optional


TOP = Keys(("name", "model_type", "scale", "num_gpu", "datasets", "network_g", "path", "train", "logger"),
           ("manual_seed", "val", "dist_params", "find_unused_parameters"))
DOCUMENT_ONLY = ("stages",)
STAGE = Keys(("name",), ("warm_start_transform",))
PATH = Keys((), ("pretrain_network_g", "strict_load_g", "param_key_g", "resume_state"))
TRAIN = Keys(("optim_g", "scheduler", "total_iter"),
             ("warmup_iter", "ema_decay", "pixel_opt", "perceptual_opt", "grad_clip", "amp", "channels_last"))
VAL = Keys(("val_freq", "save_img"), ("metrics", "pbar", "suffix"))
LOGGER = Keys(("print_freq", "save_checkpoint_freq", "use_tb_logger"), ("wandb",))
WANDB = Keys(("project",), ("resume_id",))
DIST_PARAMS = Keys((), ("backend", "port"))
LOADER_ANY_PHASE = ("prefetch_mode", "pin_memory", "persistent_workers", "num_prefetch_queue")
LOADER_TRAIN = Keys(("batch_size_per_gpu", "num_worker_per_gpu"),
                    ("use_shuffle", "dataset_enlarge_ratio") + LOADER_ANY_PHASE)
LOADER_VAL = Keys((), LOADER_ANY_PHASE)

DATASETS: dict[str, dict[str, Keys]] = {
    # dataset type -> phase -> its own keys (besides name, type and the loader keys)
    "HROnlyDataset": {"train": Keys(("dataroot_hr", "gt_size", "use_hflip", "use_rot"))},
    "EvalFolderDataset": {"val": Keys(("dataroot",))},
    "PairedImageDataset": {
        "train": Keys(("dataroot_gt", "dataroot_lq", "io_backend", "gt_size", "use_hflip", "use_rot"),
                      ("filename_tmpl", "meta_info_file", "mean", "std", "color")),
        "val": Keys(("dataroot_gt", "dataroot_lq", "io_backend"),
                    ("filename_tmpl", "meta_info_file", "mean", "std", "color")),
    },
}
"""The dataset types esr trains with, and the keys each reads per phase."""


def _signature_keys(fn: Callable, skip: int) -> tuple[Keys, bool]:
    """(required, optional) keyword names of ``fn`` after its first ``skip`` parameters, and whether it
    takes ``**kwargs``."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = tuple(p.name for p in named if p.default is p.empty)
    optional = tuple(p.name for p in named if p.default is not p.empty)
    return Keys(required, optional), any(p.kind is p.VAR_KEYWORD for p in params)


def _registries() -> dict[str, dict[str, tuple[Callable, int]]]:
    """block kind -> {type name: (callable whose signature gives the keys, leading parameters to skip)}."""
    import torch

    from esr.registry import ARCH_REGISTRY
    from esr.train.bridge import register_all

    register_all()
    from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
    from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY

    return {
        "arch": {name: (cls.__init__, 1) for name, cls in ARCH_REGISTRY.items()},
        "loss": {name: (cls.__init__, 1) for name, cls in LOSS_REGISTRY},
        "metric": {name: (fn, 2) for name, fn in METRIC_REGISTRY},
        "optimizer": {"Adam": (torch.optim.Adam.__init__, 2)},  # BasicSR 1.4.2 builds Adam only
        "scheduler": {"MultiStepLR": (MultiStepRestartLR.__init__, 2),
                      "MultiStepRestartLR": (MultiStepRestartLR.__init__, 2),
                      "CosineAnnealingRestartLR": (CosineAnnealingRestartLR.__init__, 2)},
    }


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else ""


class Checker:
    """Collects problems (one short phrase each, prefixed by the key path) over a document."""

    def __init__(self, registries: dict[str, dict[str, tuple[Callable, int]]] | None = None) -> None:
        self.problems: list[str] = []
        self.registries = registries or _registries()

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}" if path else text)

    def mapping(self, node: Any, path: str, keys: Keys, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """Check that ``node`` is a mapping with ``keys`` (plus ``extra`` allowed); returns it (or {})."""
        if not isinstance(node, dict):
            self.problem(path, f"must be a mapping, not {type(node).__name__}")
            return {}
        known = tuple(dict.fromkeys(keys.known + extra))
        prefix = f"{path}." if path else ""
        for key in node:
            if key not in known:
                near = _suggest(str(key), known)
                hint = f" (did you mean {prefix}{near}?)" if near else f" (known: {', '.join(known)})"
                self.problem(f"{prefix}{key}", f"unknown key{hint}")
        for key in keys.required:
            if key not in node:
                self.problem(f"{prefix}{key}", "missing (required)")
        return node

    def typed(self, node: Any, path: str, kind: str, extra: Keys = Keys()) -> dict[str, Any]:
        """A ``type`` block: the type must be registered; the other keys are its constructor's arguments."""
        if not isinstance(node, dict):
            self.problem(path, f"must be a mapping with a 'type', not {type(node).__name__}")
            return {}
        registry = self.registries[kind]
        name = node.get("type")
        if name not in registry:
            near = _suggest(str(name), list(registry))
            hint = f"did you mean {near}?" if near else f"known: {', '.join(registry)}"
            self.problem(f"{path}.type", f"unknown {kind} {name!r} ({hint})" if name else f"missing ({hint})")
            return node
        keys, any_kwargs = _signature_keys(*registry[name])
        allowed = Keys(keys.required + extra.required, keys.optional + extra.optional + ("type",))
        if any_kwargs:
            allowed = Keys(allowed.required, allowed.optional + tuple(k for k in node if k not in allowed.known))
        return self.mapping(node, path, allowed)

    def number(self, node: dict[str, Any], path: str, key: str, minimum: float, integer: bool = False) -> None:
        value = node.get(key)
        if key not in node or value is None:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
        if ok and integer:
            ok = float(value).is_integer()
        if not ok:
            kind = "an integer" if integer else "a number"
            self.problem(f"{path}.{key}" if path else key, f"must be {kind} >= {minimum:g}, not {value!r}")


def check_stage_options(check: Checker, opt: dict[str, Any]) -> None:
    """Check one stage's merged BasicSR options."""
    opt = check.mapping(opt, "", TOP)
    check.number(opt, "", "scale", 1, integer=True)
    if opt.get("model_type") not in (None, "ESRModel", "SRModel"):
        check.problem("model_type", f"must be ESRModel (or BasicSR's SRModel), not {opt.get('model_type')!r}")
    if isinstance(opt.get("num_gpu"), str) and opt["num_gpu"] != "auto":
        check.problem("num_gpu", f"must be an integer or 'auto', not {opt['num_gpu']!r}")
    network = check.typed(opt.get("network_g", {}), "network_g", "arch") if "network_g" in opt else {}
    if network.get("type") in check.registries["arch"] and not any(p.startswith("network_g") for p in check.problems):
        from esr.limits import hyperparam_problem

        problem = hyperparam_problem(network["type"], {k: v for k, v in network.items() if k != "type"})
        if problem:
            check.problem("network_g", problem)
    scale = opt.get("scale")
    if network and network.get("type") in check.registries["arch"] and isinstance(scale, int):
        keys, _ = _signature_keys(*check.registries["arch"][network["type"]])
        if "upscale" in keys.known:
            default = inspect.signature(check.registries["arch"][network["type"]][0]).parameters["upscale"].default
            upscale = network.get("upscale", default)
            if upscale != scale:
                check.problem("network_g.upscale", f"is {upscale} but scale is {scale} (they must match)")
    if "path" in opt:
        check.mapping(opt["path"], "path", PATH)
    if "train" in opt:
        train = check.mapping(opt["train"], "train", TRAIN)
        if "optim_g" in train:
            check.typed(train["optim_g"], "train.optim_g", "optimizer")
        if "scheduler" in train:
            check.typed(train["scheduler"], "train.scheduler", "scheduler")
        for key in ("pixel_opt", "perceptual_opt"):
            if train.get(key) is not None:
                check.typed(train[key], f"train.{key}", "loss")
        if train and train.get("pixel_opt") is None and train.get("perceptual_opt") is None:
            check.problem("train.pixel_opt", "missing (a pixel_opt or perceptual_opt loss is required)")
        check.number(train, "train", "total_iter", 1, integer=True)
    if opt.get("val") is not None:
        val = check.mapping(opt["val"], "val", VAL)
        for metric, block in (val.get("metrics") or {}).items():
            check.typed(block, f"val.metrics.{metric}", "metric", Keys((), ("better",)))
    if "logger" in opt:
        logger = check.mapping(opt["logger"], "logger", LOGGER)
        if logger.get("wandb") is not None:
            check.mapping(logger["wandb"], "logger.wandb", WANDB)
    if opt.get("dist_params") is not None:
        check.mapping(opt["dist_params"], "dist_params", DIST_PARAMS)
    if "datasets" in opt:
        check_datasets(check, opt["datasets"], scale)


def check_datasets(check: Checker, datasets: Any, scale: Any) -> None:
    if not isinstance(datasets, dict):
        check.problem("datasets", "must be a mapping of phases (train, val, val_*)")
        return
    if "train" not in datasets:
        check.problem("datasets.train", "missing (required)")
    for phase_key, dataset in datasets.items():
        phase = str(phase_key).split("_")[0]
        path = f"datasets.{phase_key}"
        if phase not in ("train", "val"):
            check.problem(path, f"unknown phase (did you mean datasets.{_suggest(phase, ['train', 'val']) or 'val'}?)")
            continue
        kind = dataset.get("type") if isinstance(dataset, dict) else None
        per_phase = DATASETS.get(kind)
        if per_phase is None or phase not in per_phase:
            usable = [name for name, phases in DATASETS.items() if phase in phases]
            near = _suggest(str(kind), usable)
            hint = f"did you mean {near}?" if near else f"esr trains with: {', '.join(usable)}"
            check.problem(f"{path}.type", f"{kind!r} is not a {phase} dataset type esr supports ({hint})")
            continue
        loader = LOADER_TRAIN if phase == "train" else LOADER_VAL
        own = per_phase[phase]
        check.mapping(dataset, path, Keys(("name",) + own.required + loader.required,
                                          ("type",) + own.optional + loader.optional))
        gt_size = dataset.get("gt_size")
        if phase == "train" and isinstance(gt_size, int) and isinstance(scale, int) and scale > 0 and gt_size % scale:
            check.problem(f"{path}.gt_size", f"{gt_size} is not a multiple of scale {scale}")
        check.number(dataset, path, "batch_size_per_gpu", 1, integer=True)


def check_folder_name(check: Checker, value: Any, path: str) -> None:
    """``value`` must be usable as (part of) a folder name under ``experiments/``."""
    if not isinstance(value, str) or not value or any(c in value for c in "/\\\0") or value.startswith("."):
        check.problem(path, f"must be a plain folder name (no '/', not starting with '.'), not {value!r}")


def check_document_shape(check: Checker, doc: dict[str, Any]) -> None:
    """The document's name and each stage entry (the rest is checked on each stage's merged options)."""
    from esr.train.transforms import WARM_START_TRANSFORMS

    if "name" in doc:
        check_folder_name(check, doc["name"], "name")
    stages = doc.get("stages")
    if stages is None:
        return
    if not isinstance(stages, list) or not stages:
        check.problem("stages", "must be a non-empty list of stages, each with a 'name'")
        return
    for index, stage in enumerate(stages):
        stage = check.mapping(stage, f"stages.{index}", STAGE, TOP.known)
        if "name" in stage:
            check_folder_name(check, stage["name"], f"stages.{index}.name")
        transform = stage.get("warm_start_transform")
        if transform is not None and transform not in WARM_START_TRANSFORMS:
            check.problem(f"stages.{index}.warm_start_transform",
                          f"unknown transform {transform!r} (known: {', '.join(WARM_START_TRANSFORMS)})")
        if "name" in stage and index == 0 and transform is not None:
            check.problem(f"stages.{index}.warm_start_transform", "the first stage has no previous weights")


def document_problems(doc: dict[str, Any]) -> list[str]:
    """Every problem of ``doc`` (an esr training document): its own keys and stage entries, then each
    stage's merged options; a problem every stage has is listed once, others with their stage's name."""
    from esr.train.options import stage_options

    check = Checker()
    check.mapping(doc, "", Keys(("name",)), TOP.known + DOCUMENT_ONLY)  # required keys: checked per stage
    check_document_shape(check, doc)
    if check.problems and any(p.startswith(("stages", "name")) for p in check.problems):
        return check.problems
    try:
        stages = stage_options(doc)
    except EsrError as err:
        return check.problems + [str(err)]
    per_stage = []
    for _, opt in stages:
        stage_check = Checker(check.registries)
        check_stage_options(stage_check, opt)
        per_stage.append(stage_check.problems)
    common = [p for p in per_stage[0] if all(p in other for other in per_stage[1:])]
    problems = check.problems + [p for p in common if p not in check.problems]
    for (stage, _), found in zip(stages, per_stage):
        problems += [f"stage {stage}: {p}" for p in found if p not in common]
    return problems


def validate_document(doc: dict[str, Any], source: str) -> None:
    """EsrError (exit 2), one line: ``SOURCE: invalid options: problem; problem; ...`` if ``doc`` has problems."""
    problems = document_problems(doc)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise EsrError(f"{source}: invalid options: {shown}", EXIT_USAGE)
