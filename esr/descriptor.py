"""The model contract: :class:`ModelDescriptor`, the one record of what a model is and needs.

Every loader fills one (zoo name, checkpoint, arch preset, ONNX file, TensorRT engine; see
:mod:`esr.loading`); every consumer (upscaler, backends, eval, bench, analyze, export,
quantize, models) reads it and nothing else. ONNX files written by esr carry it in their
``metadata_props`` (:meth:`ModelDescriptor.to_metadata`, keys ``esr.*``), engines in their
JSON sidecar, so loading them needs no probing. This module imports only the standard library.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Tiling = Literal["supported", "discouraged", "internal"]
"""``supported``: tiles are fine; ``discouraged``: tile only when a size limit forces it;
``internal``: the model tiles itself, never tile it (unless a size limit forces it)."""

Purpose = Literal["SR", "Restoration"]
"""``SR``: upscales by ``scale`` >= 2; ``Restoration``: same-size (scale 1) enhancement."""

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
"""Precisions a graph (or a backend) computes in."""

METADATA_PREFIX = "esr."
METADATA_FORMAT = "1"
"""Version of the ``esr.*`` metadata layout (``esr.format``)."""


@dataclass(frozen=True)
class ModelDescriptor:
    """Static facts about one model (a torch module, an ONNX graph or an engine).

    The model maps float NCHW with ``in_channels`` channels and values in ``value_range``
    (RGB [0, 1] for every esr arch) to ``out_channels`` channels of size
    ``(H * scale, W * scale)`` in the same range (not clamped).

    Size requirements: the network computes natively on inputs whose sides are at least
    ``min_size`` and a multiple of ``size_multiple`` (and equal when ``square``). Smaller
    inputs must be padded by the caller (bottom/right) and the output cropped. Sides
    that are not a multiple are padded by the model itself when ``pads_inside`` (every
    esr arch and every dynamic esr ONNX graph), else by the caller.

    Provenance: ``name`` (zoo name, preset, or file stem), ``license``, ``source`` (text:
    where the weights come from), ``source_sha256`` (of the weights file the model was
    built from; empty when there is none), ``trained`` (False for an arch preset with random
    weights). For graphs: ``recipe`` (deploy passes applied) and ``precision`` (fp32, fp16,
    int8). ``hyperparams``: the arch constructor's keyword arguments.
    """

    name: str
    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    value_range: tuple[float, float] = (0.0, 1.0)
    min_size: int = 1
    size_multiple: int = 1
    square: bool = False
    pads_inside: bool = True
    tiling: Tiling = "supported"
    purpose: Purpose = "SR"
    license: str = ""
    source: str = ""
    source_sha256: str = ""
    trained: bool = False
    recipe: tuple[str, ...] = ()
    precision: str = "fp32"
    hyperparams: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scale < 1 or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"scale and channels must be >= 1 (got scale {self.scale}, "
                             f"channels {self.in_channels} -> {self.out_channels})")
        if self.min_size < 1 or self.size_multiple < 1:
            raise ValueError(f"min_size and size_multiple must be >= 1 (got {self.min_size}, {self.size_multiple})")
        if self.tiling not in ("supported", "discouraged", "internal"):
            raise ValueError(f"tiling must be supported, discouraged or internal (got {self.tiling!r})")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        object.__setattr__(self, "recipe", tuple(self.recipe))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))

    def replace(self, **changes: Any) -> "ModelDescriptor":
        """A copy with ``changes`` applied (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    @property
    def provenance(self) -> str:
        """One phrase for reports: ``trained`` facts, or that the weights are random."""
        if not self.trained:
            return "untrained (random weights)"
        return self.source or "trained weights"

    def to_metadata(self) -> dict[str, str]:
        """``{"esr.scale": "4", ...}``: every field as text, plus ``esr.version`` and ``esr.format``."""
        from esr import __version__

        values = {
            "format": METADATA_FORMAT, "version": __version__, "name": self.name, "arch": self.arch,
            "scale": str(self.scale), "in_channels": str(self.in_channels), "out_channels": str(self.out_channels),
            "value_range": ",".join(f"{v:g}" for v in self.value_range), "min_size": str(self.min_size),
            "size_multiple": str(self.size_multiple), "square": _bool_text(self.square),
            "pads_inside": _bool_text(self.pads_inside), "tiling": self.tiling, "purpose": self.purpose,
            "license": self.license, "source": self.source, "source_sha256": self.source_sha256,
            "trained": _bool_text(self.trained), "recipe": ",".join(self.recipe), "precision": self.precision,
            "hyperparams": json.dumps(dict(self.hyperparams), sort_keys=True),
        }
        return {METADATA_PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> "ModelDescriptor | None":
        """The descriptor stored by :meth:`to_metadata`, or None when ``props`` has no ``esr.scale`` (a foreign file).

        Raises:
            ValueError: naming the key, when an ``esr.*`` value cannot be read.
        """
        values = {k[len(METADATA_PREFIX):]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
        if "scale" not in values:
            return None
        readers = {
            "scale": int, "in_channels": int, "out_channels": int, "min_size": int, "size_multiple": int,
            "square": _text_bool, "pads_inside": _text_bool, "trained": _text_bool,
            "value_range": lambda text: tuple(float(v) for v in text.split(",")),
            "recipe": lambda text: tuple(name for name in text.split(",") if name),
            "hyperparams": json.loads,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        fields: dict[str, Any] = {}
        for key, text in values.items():
            if key not in known:
                continue  # esr.version, esr.format, keys of a newer esr
            try:
                fields[key] = readers.get(key, str)(text)
            except ValueError as err:
                raise ValueError(f"metadata {METADATA_PREFIX}{key}={text!r}: {err}") from None
        fields.setdefault("name", "")
        fields.setdefault("arch", "unknown")
        try:
            return cls(**fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"esr metadata: {err}") from None


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _text_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError("expected true or false")
    return text == "true"


def write_metadata(graph: Any, descriptor: ModelDescriptor) -> Any:
    """Replace the ``esr.*`` entries of an ``onnx.ModelProto``'s ``metadata_props`` with ``descriptor``'s."""
    keep = [(p.key, p.value) for p in graph.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del graph.metadata_props[:]
    for key, value in keep + sorted(descriptor.to_metadata().items()):
        graph.metadata_props.add(key=key, value=value)
    return graph


def read_metadata(graph: Any) -> ModelDescriptor | None:
    """The descriptor in an ``onnx.ModelProto``'s metadata, or None for a graph esr did not write."""
    return ModelDescriptor.from_metadata({p.key: p.value for p in graph.metadata_props})
