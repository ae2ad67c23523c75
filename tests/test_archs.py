"""Models users bring: spandrel's architectures (and esr's own detectors first) through every esr step.

``test_arch_end_to_end`` runs each CI case of scripts/arch_matrix.py (random weights from spandrel's
classes, BasicSR's RRDBNet for the new ESRGAN keys): esr.load_model -> output vs spandrel's own call
-> Upscaler on a 37x53 image -> deploy graph (dynamic, else static, else a one-line reason) ->
onnxruntime parity -> INT8, and checks the outcome is the committed row of docs/results/archs.json
(which docs/models.md is rendered from). About 25 s on one core for all CI cases.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

from esr.cli import main
from esr.errors import EsrError

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "results" / "archs.json"
OUTCOME = ("loader", "arch", "scale", "channels", "purpose", "min_size", "size_multiple", "square", "tiling",
           "onnx", "quantize")
"""Fields of a matrix row that say what esr does with the arch (not measured numbers)."""


def load_matrix():
    spec = importlib.util.spec_from_file_location("arch_matrix", REPO / "scripts" / "arch_matrix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MATRIX = load_matrix()
CI_CASES = [case for case in MATRIX.CASES if case.ci]


@pytest.fixture(scope="module")
def committed() -> dict[str, dict]:
    return {row["case"]: row for row in json.loads(RESULTS.read_text())["archs"]}


@pytest.mark.parametrize("case", CI_CASES, ids=[case.name for case in CI_CASES])
def test_arch_end_to_end(case, tmp_path, committed) -> None:
    record = MATRIX.check_case(case, tmp_path)
    assert record["load"] == "ok"
    assert record["loader"] == ("esr" if record["arch"] in ("SPAN", "DITN") else "spandrel")
    assert record["vs_spandrel_max_abs"] <= MATRIX.SPANDREL_TOL  # same weights, same output as spandrel's call
    height, width = MATRIX.IMAGE_HW
    assert record["upscaled"] == f"{height * record['scale']}x{width * record['scale']}x3"
    if record["onnx"] == "fails":
        assert record["onnx_note"] and "\n" not in record["onnx_note"]  # a listed, reasoned failure
    else:
        assert record["parity_max_abs"] <= MATRIX.PARITY_TOL * max(1.0, record["output_max_abs"])
        assert record["quantize"] == "int8" and np.isfinite(record["int8_psnr_db"])
    row = committed.get(case.name)
    assert row is not None, f"{case.name}: no row in {RESULTS.name}; run python scripts/arch_matrix.py"
    changed = {key: (row.get(key), record.get(key)) for key in OUTCOME if row.get(key) != record.get(key)}
    assert not changed, f"{case.name}: outcome changed {changed}; rerun python scripts/arch_matrix.py"


def test_required_architectures_are_covered() -> None:
    """The issue's list: SPAN, ESRGAN old and new keys, Compact, SwinIR, OmniSR, SAFMN, PLKSR, RealPLKSR,
    DITN_Real, a 1x model, a 2x model."""
    names = " ".join(case.name for case in CI_CASES)
    for name in ("SPAN", "ESRGAN (old keys)", "ESRGAN (new keys", "Compact", "SwinIR", "OmniSR", "SAFMN",
                 "PLKSR", "RealPLKSR", "DITN_Real", "x1", "x2"):
        assert name in names


def spandrel_checkpoint(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    case = next(case for case in MATRIX.CASES if case.name == name)
    return MATRIX.save_state_dict(MATRIX.seeded(case), tmp_path / f"{name.split()[0]}{case.suffix}")


def one_error_line(capsys, path) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(path) in err
    return err


@pytest.mark.parametrize("command", ["upscale", "models"])
def test_bad_model_files_fail_in_one_line_without_running_anything(tmp_path, capsys, command) -> None:
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    unknown = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3), "head.bias": torch.zeros(3)}, unknown)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": truncated")
    code = tmp_path / "code.pth"
    torch.save({"params": Payload()}, code)
    (tmp_path / "in").mkdir()
    reasons = {unknown: "unrecognised architecture", corrupt: "corrupt or unreadable safetensors",
               code: "which esr never unpickles"}
    for path, reason in reasons.items():
        argv = (["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(path)]
                if command == "upscale" else ["models", "--file", str(path)])
        assert main(argv) == 2
        assert reason in one_error_line(capsys, path)
    assert not marker.exists() and not list(tmp_path.glob("out/*"))


def test_models_file_prints_what_was_detected(tmp_path, capsys) -> None:
    path = spandrel_checkpoint(tmp_path, "SwinIR")
    assert main(["models", "--file", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["arch"], info["scale"], info["in_channels"], info["min_size"], info["tiling"]) == \
        ("spandrel:SwinIR", 2, 3, 16, "discouraged")
    assert "loader: spandrel" in info["source"] and info["params"] > 0 and info["recipe"] == []
    assert main(["models", "--file", str(path)]) == 0
    text = capsys.readouterr().out
    assert "spandrel:SwinIR" in text and "min 16" in text and "tiling: discouraged" in text


def test_every_command_takes_a_spandrel_checkpoint(tmp_path, capsys, shared) -> None:
    """upscale, eval, bench, analyze, export (dynamic), quantize, on a Real-ESRGAN x2 (new keys) checkpoint."""
    path = spandrel_checkpoint(tmp_path, "ESRGAN (new keys, Real-ESRGAN x2)")
    set5 = shared / "datasets" / "Set5"
    lr = set5 / "LR_bicubic" / "X2"
    assert main(["upscale", str(lr / "babyx2.png"), "-o", str(tmp_path / "up"), "--model", str(path)]) == 0
    assert main(["eval", "--model", str(path), "--data", str(set5), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["scale"] == 2
    assert main(["bench", "--model", str(path), "--shape", "24x24", "--runs", "1", "--warmup", "0", "--json",
                 "--backend", "all"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {r["backend"] for r in records} >= {"torch", "onnxruntime"}
    assert main(["analyze", "--model", str(path), "--hw", "h100", "--shape", "24x24", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["layers"] > 0
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(path), "--dynamic", "--opt", "32x32", "--onnx", str(onnx_path),
                 "--parity", str(lr)]) == 0
    assert "OK" in capsys.readouterr().out
    out = tmp_path / "q.onnx"
    assert main(["quantize", "--model", str(onnx_path), "--calib", str(lr), "--out", str(out), "--num-calib", "2",
                 "--crop-size", "32"]) == 0
    assert main(["upscale", str(lr / "birdx2.png"), "-o", str(tmp_path / "up8"), "--model", str(out)]) == 0


def test_export_failures_are_one_line(tmp_path, capsys) -> None:
    swinir = spandrel_checkpoint(tmp_path, "SwinIR")
    assert main(["export", "--model", str(swinir), "--dynamic", "--onnx", str(tmp_path / "s.onnx")]) == 2
    assert "does not export with dynamic H/W" in one_error_line(capsys, swinir.stem)
    safmn = spandrel_checkpoint(tmp_path, "SAFMN")
    assert main(["export", "--model", str(safmn), "--opt", "37x53", "--onnx", str(tmp_path / "f.onnx")]) == 2
    err = one_error_line(capsys, safmn.stem)
    assert "adaptive pooling" in err and "40x56" in err  # the op, and the size it exports at
    assert not (tmp_path / "s.onnx").exists() and not (tmp_path / "f.onnx").exists()


def test_gray_and_rgba_models_get_converted_images(tmp_path) -> None:
    """A gray (1 -> 1) model runs on each colour plane; an RGBA model gets RGB + alpha in one call."""
    from esr.backends import create_backend
    from esr.image_io import Image
    from esr.loading import load_model
    from esr.upscaler import Upscaler

    gray = load_model(spandrel_checkpoint(tmp_path, "DnCNN (x1, gray)"))
    rgb = (MATRIX.test_image()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = Upscaler(create_backend("torch", gray)).upscale_array(rgb)
    with torch.no_grad():
        planes = gray(torch.from_numpy(rgb).permute(2, 0, 1)[:, None].float() / 255)  # (3, 1, H, W)
    expected = (planes[:, 0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(out.astype(float) - expected).max() <= 1

    rgba_model = load_model(spandrel_checkpoint(tmp_path, "Compact, RGBA (4 channels)"))
    alpha = np.full(rgb.shape[:2], 128, np.uint8)
    alpha[:, :20] = 255
    result = Upscaler(create_backend("torch", rgba_model)).upscale_image(Image(rgb, alpha))
    with torch.no_grad():
        x = torch.from_numpy(np.dstack([rgb, alpha])).permute(2, 0, 1)[None].float() / 255
        y = (rgba_model(x)[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert result.color.shape == (74, 106, 3) and result.alpha.shape == (74, 106)
    assert np.abs(result.color.astype(float) - y[..., :3]).max() <= 1  # the colour saw the real alpha
    assert result.alpha.min() >= 128 and result.alpha.max() <= 255  # clamped to the input's local range


def test_spandrel_extra_arches_only_when_installed(tmp_path, monkeypatch) -> None:
    """Never imported unless installed; when it is, installed into a copy of spandrel's registry."""
    import spandrel

    from esr import spandrel_adapter

    spandrel_adapter.arch_registry.cache_clear()
    assert spandrel_adapter.arch_registry() is spandrel.MAIN_REGISTRY
    assert spandrel_adapter.EXTRA_ARCHES not in sys.modules
    package = tmp_path / spandrel_adapter.EXTRA_ARCHES
    package.mkdir()
    (package / "__init__.py").write_text("calls = []\ndef install(registry, ignore_duplicates=False):\n"
                                         "    calls.append((registry, ignore_duplicates))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spandrel_adapter.arch_registry.cache_clear()
        registry = spandrel_adapter.arch_registry()
        calls = sys.modules[spandrel_adapter.EXTRA_ARCHES].calls
        assert calls == [(registry, True)] and registry is not spandrel.MAIN_REGISTRY
    finally:
        sys.modules.pop(spandrel_adapter.EXTRA_ARCHES, None)
        spandrel_adapter.arch_registry.cache_clear()


def test_spandrel_weights_that_do_not_fit_are_one_line(tmp_path) -> None:
    from esr.loading import load_model

    case = next(case for case in MATRIX.CASES if case.name == "Real-ESRGAN Compact")
    state = MATRIX.seeded(case).state_dict()
    state["body.2.weight"] = state["body.2.weight"][:, :8]  # detected as Compact, shapes do not fit
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(EsrError, match="spandrel detected RealESRGAN Compact, but the weights do not load") as info:
        load_model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_model_never_changes_its_input(tmp_path) -> None:
    """spandrel's RCAN scales its input in place; esr's wrapper hands it a copy, so repeated calls agree."""
    from esr.loading import load_model

    model = load_model(spandrel_checkpoint(tmp_path, "RCAN"))
    x = MATRIX.test_image()
    before = x.clone()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(x, before) and torch.equal(first, second)


def test_bench_archs_script_writes_its_json(tmp_path) -> None:
    """scripts/bench_archs.py in CI size: one arch, 64x64, one timed round (about 10 s)."""
    import os
    import subprocess

    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_archs.py"), "--case", "DnCNN (x1, gray)",
                          "--size", "64", "--runs", "1", "--warmup", "0", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ESR_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    [row] = json.loads(out.read_text())["archs"]
    assert row["shape"] == [1, 1, 64, 64] and row["params"] > 0 and row["gmacs"] > 0
    assert set(row["median_ms"]) == {"eager", "esr_torch", "esr_onnxruntime", "esr_auto"} and row["onnx"] == "dynamic"
    assert row["auto_choice"] and row["speedup_vs_eager"] > 0
