"""esr's TensorRT code against the names defined by the TensorRT 10 Python bindings (scripts/check_trt_api.py).

The bindings wheel (1.3 MB) is downloaded from PyPI once per session; without a package index
the tests skip with that reason. The runtime libraries are not needed: only names are checked.
"""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_checker():
    spec = importlib.util.spec_from_file_location("check_trt_api", ROOT / "scripts" / "check_trt_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checker = load_checker()


@pytest.fixture(scope="session")
def bindings_wheel(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("trt_bindings")
    try:
        return checker.download_wheel(checker.DEFAULT_VERSION, dest)
    except (subprocess.SubprocessError, StopIteration, OSError) as err:
        pytest.skip(f"cannot download tensorrt-cu12-bindings {checker.DEFAULT_VERSION} from the package index: {err}")


def test_esr_uses_only_names_defined_by_tensorrt10(bindings_wheel) -> None:
    used = checker.used_names(checker.TRT_MODULES)
    # the analysis must see the calls that matter, or an empty result would pass
    for name in ("build_serialized_network", "set_shape", "execute_async_v3", "set_tensor_address",
                 "set_timing_cache", "get_batch"):
        assert name in used, name
    defined = checker.binding_names(bindings_wheel, set(used))
    assert sorted(set(used) - defined) == []
    assert sorted(set(used) & checker.REMOVED_IN_TRT10) == []


def test_checker_flags_removed_and_misspelled_api(bindings_wheel, tmp_path) -> None:
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n"
        "def build(logger, network, config):\n"
        "    builder = trt.Builder(logger)\n"
        "    engine = builder.build_engine(network, config)\n"          # removed in TensorRT 10
        "    context = engine.create_execution_context()\n"
        "    context.set_input_shapes('input', (1, 3, 8, 8))\n"        # misspelled
        "    index = engine.get_binding_index('input')\n"             # removed in TensorRT 10
        "    return context.execute_async_v3(0), index\n")
    used = checker.used_names([bad])
    defined = checker.binding_names(bindings_wheel, set(used))
    assert sorted(set(used) - defined) == ["build_engine", "get_binding_index", "set_input_shapes"]
    assert {"Builder", "create_execution_context", "execute_async_v3"} <= defined
    assert sorted(set(used) & checker.REMOVED_IN_TRT10) == ["build_engine", "get_binding_index"]
