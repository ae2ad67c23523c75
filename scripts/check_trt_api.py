#!/usr/bin/env python3
"""Check esr's TensorRT code against the names the TensorRT 10 Python bindings define.

TensorRT's runtime libraries cannot be installed here, but its Python bindings wheel
(``tensorrt-cu12-bindings``, 1.3 MB, on PyPI) can be downloaded: its ``tensorrt.so``
holds every class, method, property and enum name of the API (pybind11 registers them by
string) with their docstrings. This script

1. finds, by static analysis of ``export/trt_build.py`` and ``export/trt_runner.py``, every
   name esr uses on a TensorRT object: attribute chains rooted at the ``tensorrt`` module
   (``trt.BuilderFlag.FP16``), attributes of values derived from them (``builder``, ``network``,
   ``config``, ``self.context``, ...), and the methods of classes subclassing a TensorRT class
   (the calibrator's overrides);
2. checks that each name is defined in the bindings, and that none of the APIs removed in
   TensorRT 10 (``execute_async_v2``, ``get_binding_index``, ``build_engine``, ...) is used.

Usage: python scripts/check_trt_api.py [--wheel WHEEL | --version 10.16.1.11] [--json OUT]
Exit 0: all names found; 1: some are missing or removed (listed); 2: the wheel is unavailable.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRT_MODULES = [ROOT / "export" / "trt_build.py", ROOT / "export" / "trt_runner.py"]
DEFAULT_VERSION = "10.16.1.11"
REMOVED_IN_TRT10 = {
    "execute_async_v2", "execute_async", "get_binding_index", "get_binding_name", "num_bindings",
    "binding_is_input", "get_binding_shape", "set_binding_shape", "get_binding_dtype", "build_engine",
    "max_workspace_size", "max_batch_size", "set_optimization_profile_async_v2", "EXPLICIT_PRECISION",
}
"""Implicit-batch and binding-index APIs that TensorRT 10 removed (see its migration guide)."""


def download_wheel(version: str, dest: Path) -> Path:
    """``pip download`` the bindings wheel for this Python into ``dest``; return its path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest),
                    f"tensorrt-cu12-bindings=={version}"], check=True, timeout=300)
    return next(dest.glob("tensorrt_cu12_bindings-*.whl"))


def binding_names(wheel: Path, wanted: set[str]) -> set[str]:
    """Those of ``wanted`` that the wheel's ``tensorrt.so`` defines: a name is defined when it is an
    identifier token of its printable strings, or the tail of a C string (``"INPUT"`` is stored
    inside ``"CONDITIONAL_INPUT\\0"`` by the linker's string merging)."""
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/tensorrt.so"))
        blob = archive.read(member)
    strings = re.findall(rb"[\x20-\x7e]{3,}", blob)
    tokens = {token.decode() for text in strings for token in re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", text)}
    return {name for name in wanted if name in tokens or name.encode() + b"\0" in blob}


def target_key(node: ast.expr) -> str | None:
    """``x`` -> "x", ``self.x`` -> "self.x"; anything else -> None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def attribute_chain(node: ast.expr) -> tuple[str | None, list[str]]:
    """``a.b(c).d`` -> ("a", ["b", "d"]); ``self.x.y`` -> ("self.x", ["y"])."""
    attrs: list[str] = []
    while True:
        key = target_key(node)
        if key is not None:
            return key, attrs[::-1]
        if isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return None, attrs[::-1]


class TrtUsage(ast.NodeVisitor):
    """Collect the TensorRT API names used by one module (taint from ``import tensorrt as trt``)."""

    def __init__(self) -> None:
        self.tainted: set[str] = set()
        self.used: dict[str, set[str]] = {}

    def note(self, name: str, where: str) -> None:
        self.used.setdefault(name, set()).add(where)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "tensorrt":
                self.tainted.add(alias.asname or alias.name)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        if attribute_chain(node.value)[0] in self.tainted:
            for target in node.targets:
                key = target_key(target)
                if key:
                    self.tainted.add(key)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any(attribute_chain(base)[0] in self.tainted for base in node.bases):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    self.note(item.name, f"override in class {node.name}")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, attrs = attribute_chain(node)
        if root in self.tainted:
            for name in attrs:
                self.note(name, f"line {node.lineno}")
        self.generic_visit(node)


def used_names(paths: list[Path]) -> dict[str, list[str]]:
    """{API name: ["file:line", ...]} over ``paths`` (two passes, so later-defined taint counts)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        usage = TrtUsage()
        usage.visit(tree)
        usage.visit(tree)
        for name, places in usage.used.items():
            found.setdefault(name, []).extend(f"{path.name}:{p}" for p in sorted(places))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="a tensorrt-cu12-bindings wheel (default: pip download it)")
    parser.add_argument("--version", default=DEFAULT_VERSION, help=f"bindings version to download ({DEFAULT_VERSION})")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wheel = args.wheel or download_wheel(args.version, Path(tmp))
        except (subprocess.SubprocessError, StopIteration, OSError) as err:
            print(f"error: cannot get tensorrt-cu12-bindings {args.version}: {err}", file=sys.stderr)
            return 2
        used = used_names(TRT_MODULES)
        names = binding_names(wheel, set(used))
    missing = sorted(n for n in used if n not in names)
    removed = sorted(n for n in used if n in REMOVED_IN_TRT10)
    result = {"wheel": wheel.name, "used": {k: used[k] for k in sorted(used)},
              "missing": missing, "removed_in_trt10": removed}
    print(f"{wheel.name}: {len(used)} TensorRT API names used by esr, {len(missing)} missing, "
          f"{len(removed)} removed in TensorRT 10")
    for name in missing + removed:
        print(f"  {name}: {', '.join(used[name])}")
    if args.json:
        from esr.fileio import write_bytes_atomically

        write_bytes_atomically(args.json, (json.dumps(result, indent=2) + "\n").encode())
    return 1 if missing or removed else 0


if __name__ == "__main__":
    sys.exit(main())
