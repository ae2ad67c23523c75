"""What kind of media an input is, and what upscales it: the registry ``esr upscale`` dispatches on.

Each :class:`MediaKind` names the suffixes a folder scan collects for it, whether it
claims a given file, the suffix of its output, and the function that upscales one whole
file (``module:function``, imported on first use so that PyAV loads only for videos).
Images have no such function: they go through the batched image pipeline of
:mod:`esr.upscale_batch`. The first kind in :data:`KINDS` that claims a file wins;
anything unclaimed is treated as an image (and reported if it is not one).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from esr.animated import ANIMATED_SUFFIXES, is_animated
from esr.image_io import READ_SUFFIXES, output_suffix
from esr.video.options import VIDEO_SUFFIXES, output_container

if TYPE_CHECKING:
    from esr.upscale_batch import BatchOptions, Task
    from esr.upscaler import Upscaler

FileRunner = Callable[["Task", "Upscaler", "BatchOptions"], None]
"""Upscales one whole file ``(task, upscaler, options)``; raises (EsrError: one line) on failure, warns with
:func:`warnings.warn`."""


@dataclass(frozen=True)
class MediaKind:
    name: str
    suffixes: tuple[str, ...]
    claims: Callable[[Path], bool]
    output_suffix: Callable[[Path, "BatchOptions"], str]
    runner: str | None = None

    def load_runner(self) -> FileRunner:
        """The function upscaling one file of this kind (``runner`` must be set)."""
        module, function = self.runner.split(":")
        return getattr(importlib.import_module(module), function)


VIDEO = MediaKind("video", tuple(VIDEO_SUFFIXES), lambda p: p.suffix.lower() in VIDEO_SUFFIXES,
                  lambda src, options: output_container(src, options.video).suffix, "esr.video.runner:upscale_video")
ANIMATED = MediaKind("animated", ANIMATED_SUFFIXES, lambda p: p.suffix.lower() in ANIMATED_SUFFIXES and is_animated(p),
                     lambda src, options: src.suffix.lower(), "esr.animated:upscale_animated")
IMAGE = MediaKind("image", READ_SUFFIXES, lambda p: True, lambda src, options: output_suffix(options.ext, src))

KINDS: list[MediaKind] = [VIDEO, ANIMATED, IMAGE]
"""Checked in order; :data:`IMAGE` claims whatever is left."""


def kind_of(path: Path) -> MediaKind:
    """The first kind in :data:`KINDS` that claims ``path``."""
    return next(kind for kind in KINDS if kind.claims(path))


def collected_suffixes() -> tuple[str, ...]:
    """Suffixes a folder scan picks up (every kind's)."""
    return tuple(sorted({suffix for kind in KINDS for suffix in kind.suffixes}))
