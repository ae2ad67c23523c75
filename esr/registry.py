"""Name -> object registries (the BasicSR pattern, without importing BasicSR).

Inference and export never import BasicSR; :mod:`esr.train.bridge` copies these
entries into BasicSR's own registries when training starts.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator


class Registry:
    """A name -> object map filled by a ``@registry.register()`` decorator.

    Iteration and :meth:`items` follow registration order (the order in which loaders,
    detectors and backends are tried); error messages list the names sorted.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._objects: dict[str, Any] = {}

    def register(self, obj: Any = None, name: str | None = None) -> Any:
        """Register ``obj`` under ``name`` (default ``obj.__name__``); usable as a decorator."""

        def add(item: Any) -> Any:
            key = name or item.__name__
            if key in self._objects and self._objects[key] is not item:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._objects[key] = item
            return item

        return add if obj is None else add(obj)

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def get(self, name: str) -> Any:
        try:
            return self._objects[name]
        except KeyError:
            known = ", ".join(sorted(self._objects)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._objects))

    def __len__(self) -> int:
        return len(self._objects)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._objects.items())


ARCH_REGISTRY = Registry("arch")
"""Architectures: ``nn.Module`` classes taking RGB float NCHW in [0, 1]."""

DETECTOR_REGISTRY = Registry("state-dict detector")
"""Functions ``(state_dict) -> (arch_name, kwargs) | None`` that read hyperparameters from tensor shapes."""

Detector = Callable[[dict], "tuple[str, dict] | None"]
