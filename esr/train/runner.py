"""Run a multi-stage esr training document with BasicSR's ``train_pipeline``, resumably.

Layout under ``experiments/`` (relative to the current directory, as in BasicSR):

* ``{name}_{stage}/``: BasicSR's experiment folder of each stage (``models/``,
  ``training_states/``, ``train_*.log``, ``val_curve.jsonl``).
* ``{name}/``: the runner's folder: ``stages/{i}_{stage}.yml`` (the merged options given to
  BasicSR), ``stage_{stage}.pth`` (a finished stage's final weights, an esr checkpoint
  written atomically: its presence marks the stage done), ``stage_{stage}.json`` (the
  options that made those weights), ``final.pth`` (the last stage's weights, loadable by
  :func:`esr.load_model`) and ``curve.json`` (validation curve).

The document is validated first (:mod:`esr.train.schema`). A finished stage whose options
have changed since (say a larger ``train.total_iter``) is an error naming what changed and
what to do, never a silent "already finished".

Every stage after the first loads the previous stage's final weights
(``path.pretrain_network_g``, ``param_key_g: params``, ``strict_load_g: true`` are set
automatically; :class:`esr.train.model.ESRModel` logs which keys loaded). A stage may name a
``warm_start_transform`` (:data:`esr.train.transforms.WARM_START_TRANSFORMS`) applied to
those weights first, calibrated on a few LR crops of the stage's training set.

Re-running the same command skips finished stages and resumes the unfinished one from
its newest readable BasicSR training state (CPU-safe; BasicSR 1.4.2's own resume
requires CUDA), so a run killed at any point continues where it was.

Distributed runs (torchrun/SLURM, see :mod:`esr.train.distributed`) take the same path on every
rank: rank 0 decides what is finished and which state to resume from, and writes the runner's files.
"""
from __future__ import annotations

import json
import logging
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from esr.errors import EsrError
from esr.fileio import write_bytes_atomically, write_bytes_if_changed
from esr.limits import build_arch
from esr.loading import read_checkpoint, save_checkpoint
from esr.paths import SHARED_HINT
from esr.train.distributed import current, run_on_main
from esr.train.options import stage_options
from esr.train.schema import validate_document
from esr.train.state import load_training_state
from esr.train.transforms import WARM_START_TRANSFORMS

log = logging.getLogger("basicsr.esr")


def build_network(network_opt: dict[str, Any]) -> nn.Module:
    """The arch named by ``network_opt['type']`` with the other keys as kwargs."""
    kwargs = {key: value for key, value in network_opt.items() if key != "type"}
    return build_arch(network_opt["type"], kwargs, "network_g")


def newest_readable_state(opt: dict[str, Any]) -> Path | None:
    """The newest ``training_states/{iter}.state`` whose state and ``models/net_g_{iter}.pth`` both load.

    A kill during BasicSR's non-atomic save leaves a truncated file; older states are tried next.
    States are loaded with ``weights_only=True`` (:func:`esr.train.state.load_training_state`): a
    state holding anything but tensors and plain data is skipped with a warning, its code never runs.
    """
    states_dir = Path(opt["path"]["training_states"])
    iters = sorted((int(p.stem) for p in states_dir.glob("*.state") if p.stem.isdigit()), reverse=True) \
        if states_dir.is_dir() else []
    for iteration in iters:
        state_path = states_dir / f"{iteration}.state"
        try:
            load_training_state(state_path)
            read_checkpoint(Path(opt["path"]["models"]) / f"net_g_{iteration}.pth")
        except (EsrError, RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
            log.warning("skipping unreadable training state %s (%s)", state_path, err)
            continue
        return state_path
    return None


def load_latest_state(opt: dict[str, Any]) -> dict[str, Any] | None:
    """Replacement for ``basicsr.train.load_resume_state``: newest readable state, CPU-safe.

    Rank 0 chooses the state (:func:`newest_readable_state`); every rank loads that one.
    """
    from basicsr.utils import check_resume

    state_path = run_on_main(lambda: newest_readable_state(opt))
    if state_path is None:
        return None
    state = load_training_state(state_path)
    opt["path"]["resume_state"] = str(state_path)
    check_resume(opt, state["iter"])
    log.info("resuming %s from iteration %d", opt["name"], state["iter"])
    return state


def reset_basicsr_logger() -> None:
    """Let BasicSR's ``get_root_logger`` open the next stage's log file (it caches the first)."""
    from basicsr.utils import logger as bsr_logger

    root = logging.getLogger("basicsr")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    bsr_logger.initialized_logger.pop("basicsr", None)


def run_basicsr(opt_file: Path, root: Path, launcher: str = "none") -> None:
    """One BasicSR ``train_pipeline`` on ``opt_file`` (auto-resume on), experiments under ``root``.

    ``launcher`` other than ``none`` needs the process group started (:mod:`esr.train.distributed`).
    """
    import basicsr.train as bsr_train

    from esr.train.bridge import weights_only_loads

    bsr_train.load_resume_state = load_latest_state
    reset_basicsr_logger()
    saved_argv = sys.argv
    sys.argv = ["esr train", "-opt", str(opt_file), "--auto_resume", "--launcher", launcher]
    try:
        with weights_only_loads():
            bsr_train.train_pipeline(str(root))
    finally:
        sys.argv = saved_argv


def export_stage(opt: dict[str, Any], root: Path, dest: Path) -> Path:
    """Save BasicSR's ``net_g_latest.pth`` (EMA weights if present) as an esr checkpoint at ``dest``."""
    latest = root / "experiments" / opt["name"] / "models" / "net_g_latest.pth"
    state_dict, _ = read_checkpoint(latest)
    model = build_network(opt["network_g"])
    model.load_state_dict(state_dict, strict=True)
    return save_checkpoint(model, dest)


def collect_curve(run_dir: Path, stages: list[tuple[str, dict[str, Any]]], root: Path) -> list[dict[str, Any]]:
    """Validation records of all stages, with ``total_iter`` counted across stages; written to curve.json."""
    curve, offset = [], 0
    for stage, opt in stages:
        path = root / "experiments" / opt["name"] / "val_curve.jsonl"
        records = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                records[record["iter"]] = record  # a resumed final validation repeats an iteration
        for it in sorted(records):
            curve.append({"stage": stage, "total_iter": offset + it, **records[it]})
        offset += int(opt["train"]["total_iter"])
    write_bytes_if_changed(run_dir / "curve.json", json.dumps(curve, indent=1).encode())
    return curve


RESULT_OPTIONS = ("model_type", "scale", "manual_seed", "network_g", "train", "datasets.train")
"""The options that decide a stage's weights (what a finished stage is compared on)."""


def result_options(opt: dict[str, Any]) -> dict[str, Any]:
    """``opt`` reduced to :data:`RESULT_OPTIONS`, flattened to dotted keys (JSON-comparable)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = json.loads(json.dumps(node, default=str))

    for key in RESULT_OPTIONS:
        node: Any = opt
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        walk(node, key)
    return flat


def check_finished_stage(record: Path, opt: dict[str, Any], stage: str, done: Path) -> None:
    """EsrError (one line) if ``stage`` finished with options other than ``opt`` (stored in ``record``)."""
    if not record.is_file():
        return  # finished by an esr version that did not record its options
    before, now = json.loads(record.read_text()), result_options(opt)
    changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
    if changed:
        first = changed[0]
        raise EsrError(
            f"stage {stage} already finished ({done}) with other options: {', '.join(changed[:4])} changed "
            f"({first}: {before.get(first)!r} -> {now.get(first)!r}); to train on from its weights, add a stage "
            f"after it in 'stages' (it starts from {done.name}); to start over, use a new name (name=...)")


def check_data_folders(opt: dict[str, Any], label: str) -> None:
    """EsrError (exit 2) naming every ``datasets.*.dataroot*`` of a stage that does not exist, before training."""
    missing = []
    for phase, dataset in (opt.get("datasets") or {}).items():
        for key, value in (dataset or {}).items():
            if key.startswith("dataroot") and value is not None:
                missing += [f"datasets.{phase}.{key}: {path}" for path in (value if isinstance(value, list) else [value])
                            if not Path(str(path)).exists()]
    if missing:
        more = f"; and {len(missing) - 3} more" if len(missing) > 3 else ""
        unset = any("ESR_SHARED" in path for path in missing)  # left unexpanded: not set, no ../shared found
        hint = f" (ESR_SHARED is not set and no ../shared folder was found: {SHARED_HINT})" if unset else ""
        raise EsrError(f"{label}: training data not found: {'; '.join(missing[:3])}{more}{hint}")


def stage_finished(done: Path, record: Path, opt: dict[str, Any], stage: str) -> bool:
    """True if ``done`` exists and the stage finished with ``opt`` (EsrError if with other options)."""
    if not done.is_file():
        return False
    check_finished_stage(record, opt, stage, done)
    return True


def batch_line(stage: str, opt: dict[str, Any], world_size: int) -> str:
    """``stage S: batch B per process x N processes = global batch B*N`` (BasicSR's batch_size_per_gpu).

    One process with several GPUs (``num_gpu`` > 1, no launcher) is BasicSR's DataParallel: B per GPU.
    """
    per_device = int(opt["datasets"]["train"]["batch_size_per_gpu"])
    if world_size > 1:
        return (f"stage {stage}: batch {per_device} per process x {world_size} processes "
                f"= global batch {per_device * world_size}")
    gpus = torch.cuda.device_count() if opt.get("num_gpu") == "auto" else int(opt.get("num_gpu") or 0)
    if gpus > 1:
        return f"stage {stage}: batch {per_device} per GPU x {gpus} GPUs (DataParallel) = global batch {per_device * gpus}"
    return f"stage {stage}: batch {per_device} in 1 process = global batch {per_device}"


def train_document(doc: dict[str, Any], root: Path | None = None, source: str | None = None,
                   launcher: str = "none") -> Path:
    """Validate ``doc`` (errors name ``source``, default its name), then run every unfinished stage in
    order; returns the path of ``final.pth``.

    Distributed (``launcher`` pytorch/slurm, process group already started): every rank runs this;
    rank 0 alone decides which stages are finished and writes the runner's files (stage options,
    warm-start files, stage markers and records, ``final.pth``, ``curve.json``) while the others wait.
    """
    from esr.train.bridge import register_all

    register_all()
    validate_document(doc, source or str(doc.get("name")))
    root = Path(root or Path.cwd()).resolve()
    world_size = current().world_size
    stages = stage_options(doc)
    run_dir = root / "experiments" / doc["name"]
    for stage, opt in stages:
        if not (run_dir / f"stage_{stage}.pth").is_file():
            check_data_folders(opt, f"{source or doc['name']}: stage {stage}")
    run_on_main(lambda: (run_dir / "stages").mkdir(parents=True, exist_ok=True))
    transforms = {stage["name"]: stage.get("warm_start_transform") for stage in doc.get("stages") or []}
    previous: Path | None = None
    for index, (stage, opt) in enumerate(stages):
        done = run_dir / f"stage_{stage}.pth"
        record = run_dir / f"stage_{stage}.json"
        if run_on_main(lambda: stage_finished(done, record, opt, stage)):
            log.info("stage %s already finished (%s), skipped", stage, done)
            previous = done
            continue
        if previous is not None:
            start = run_on_main(lambda: warm_start_file(previous, transforms.get(stage), run_dir, stage, opt))
            opt["path"] = {**opt.get("path", {}), "pretrain_network_g": str(start),
                           "param_key_g": "params", "strict_load_g": True}
        opt_file = run_dir / "stages" / f"{index}_{stage}.yml"
        run_on_main(lambda: write_bytes_atomically(opt_file, yaml.safe_dump(opt, sort_keys=False).encode()))
        log.info("stage %s (%d/%d): %s", stage, index + 1, len(stages), opt_file)
        log.info(batch_line(stage, opt, world_size))
        run_basicsr(opt_file, root, launcher)
        run_on_main(lambda: finish_stage(opt, root, record, done))
        previous = done
    return run_on_main(lambda: write_final(previous, run_dir, stages, root))


def finish_stage(opt: dict[str, Any], root: Path, record: Path, done: Path) -> None:
    """Record the stage's options, then export its weights to ``done`` (the marker: written last)."""
    write_bytes_atomically(record, json.dumps(result_options(opt), indent=1).encode())
    export_stage(opt, root, done)


def write_final(last_stage: Path, run_dir: Path, stages: list[tuple[str, dict[str, Any]]], root: Path) -> Path:
    """Copy the last stage's weights to ``final.pth`` (atomically; left alone when it already holds them), write
    ``curve.json``; the path of ``final.pth``."""
    final = write_bytes_if_changed(run_dir / "final.pth", last_stage.read_bytes())
    collect_curve(run_dir, stages, root)
    return final


def calibration_batch(opt: dict[str, Any], count: int = 8) -> torch.Tensor:
    """The LR inputs of the first ``count`` items of the stage's training set, (count, 3, h, w) in [0, 1]."""
    import random

    from basicsr.data import build_dataset

    random.seed(0)
    dataset = build_dataset({**opt["datasets"]["train"], "phase": "train", "scale": opt["scale"]})
    return torch.stack([dataset[i]["lq"] for i in range(min(count, len(dataset)))])


def warm_start_file(previous: Path, transform: str | None, run_dir: Path, stage: str, opt: dict[str, Any]) -> Path:
    """The checkpoint a stage starts from: ``previous``, or ``previous`` passed through ``transform``."""
    if transform is None:
        return previous
    from esr.loading import load_model

    model = WARM_START_TRANSFORMS.get(transform)(load_model(previous), calibration_batch(opt))
    return save_checkpoint(model, run_dir / f"init_{stage}.pth")

