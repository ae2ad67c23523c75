"""Input shapes on the command line (``--shape``, ``--opt``, ...): ``NxCxHxW`` or ``HxW``, channels from the model.

A shape is parsed before the model is loaded (a typo fails fast) with the channel count left
open when only ``HxW`` is given; :func:`for_model` then fills it from the model's descriptor
(``in_channels``: 3 for RGB models, 1 for gray ones, 4 for RGBA) or checks a given one.
"""
from __future__ import annotations

import argparse

from esr.descriptor import ModelDescriptor
from esr.errors import EsrError

DEFAULT_HW = (256, 256)
"""Input side of ``esr bench`` / ``esr analyze`` / ``esr export --opt`` when none is given."""

Shape = tuple[int, "int | None", int, int]
"""(N, C, H, W); C None: the model's input channels."""


def parse_shape(text: str) -> Shape:
    """``NxCxHxW`` -> (N, C, H, W), ``HxW`` -> (1, None, H, W); ValueError otherwise."""
    try:
        dims = [int(d) for d in text.lower().split("x")]
    except ValueError:
        dims = []
    if len(dims) == 2:
        dims = [1, None, *dims]
    if len(dims) != 4 or min(d for d in dims if d is not None) < 1:
        raise ValueError(f"bad shape {text!r}: use NxCxHxW or HxW, e.g. 1x3x256x256")
    return dims[0], dims[1], dims[2], dims[3]


def shape_arg(text: str) -> Shape:
    """:func:`parse_shape` as an argparse ``type``."""
    try:
        return parse_shape(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def for_model(shape: Shape, descriptor: ModelDescriptor, option: str) -> tuple[int, int, int, int]:
    """``shape`` with its channel count filled from ``descriptor``; EsrError naming ``option``
    when a given count is not the model's."""
    batch, channels, height, width = shape
    if channels is not None and channels != descriptor.in_channels:
        raise EsrError(f"{option} {batch}x{channels}x{height}x{width}: {descriptor.name} takes "
                       f"{descriptor.in_channels}-channel input (give HxW to use the model's)")
    return batch, descriptor.in_channels, height, width


def text(shape: tuple) -> str:
    """``1x3x256x256`` (an open channel count shows as ``C``)."""
    return "x".join("C" if d is None else str(d) for d in shape)
