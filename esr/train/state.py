"""BasicSR training states as tensors and plain data only, so that they load with ``weights_only=True``.

A BasicSR state is ``{"epoch", "iter", "optimizers": [state_dict...], "schedulers": [state_dict...]}``.
Optimizer state dicts are tensors, numbers, tuples and dicts already; BasicSR's schedulers keep
``milestones`` as a ``collections.Counter``, which the weights-only unpickler rejects: it is
saved as a plain dict and turned back into a Counter on resume.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import torch


def plain_data(obj: Any) -> Any:
    """``obj`` with every dict subclass but OrderedDict (Counter, defaultdict) made a dict, recursively."""
    if isinstance(obj, dict):
        items = {key: plain_data(value) for key, value in obj.items()}
        return OrderedDict(items) if isinstance(obj, OrderedDict) else items
    if isinstance(obj, list):
        return [plain_data(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(plain_data(value) for value in obj)
    return obj


def restore_counters(scheduler: Any, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the entries that are Counters on ``scheduler`` (e.g. ``milestones``) made Counters again."""
    return {key: Counter(value) if isinstance(getattr(scheduler, key, None), Counter) and isinstance(value, dict)
            else value for key, value in state.items()}


def load_training_state(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; states written by older esr versions held
    Counters, which are allowed here (a Counter is rebuilt from a plain dict: no code runs)."""
    allow = getattr(torch.serialization, "safe_globals", None)
    if allow is None:  # torch < 2.5
        return torch.load(path, map_location="cpu", weights_only=True)
    with allow([Counter]):
        return torch.load(path, map_location="cpu", weights_only=True)
