"""Items 4, 5, 6 (model side) and 8 of the hardening issue: zoo checksums, hyperparameter limits
before allocating, one-line errors for bad model files and outputs, quantize on the default export.

(The fuzz module, tests/test_fuzz_inputs.py, runs every malformed model file through every command.)
"""
from __future__ import annotations

import errno
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image as PILImage

import esr.loading as loading
from esr.archs import build_model
from esr.cli import main
from esr.complexity import count_params
from esr.errors import EsrError
from esr.limits import MAX_PARAMS, count_params_on_meta, hyperparam_problem
from esr.loading import open_model, save_checkpoint
from esr.registry import ARCH_REGISTRY
from esr.zoo import PRESETS, ZOO

EMBEDDED = loading.EMBEDDED_WEIGHTS_DIR / "rlfn_s_x4.pth"


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


def altered_copy(folder: Path) -> Path:
    """The embedded rlfn_s_x4.pth with one weight changed (still a valid checkpoint of the right shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = torch.load(EMBEDDED, map_location="cpu", weights_only=True)
    state["conv_1.weight"] = torch.zeros_like(state["conv_1.weight"])
    torch.save(state, folder / "rlfn_s_x4.pth")
    return folder / "rlfn_s_x4.pth"


@pytest.mark.parametrize("where", ["weights_dir", "cache", "embedded"])
def test_zoo_weights_are_checked_against_their_sha256(tmp_path, monkeypatch, where):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ESR_WEIGHTS_DIR", raising=False)
    if where == "weights_dir":
        monkeypatch.setenv("ESR_WEIGHTS_DIR", str(tmp_path / "mine"))
        bad, fix = altered_copy(tmp_path / "mine"), "replace it with the release file https://"
    elif where == "cache":
        monkeypatch.setattr(loading, "EMBEDDED_WEIGHTS_DIR", tmp_path / "no_embedded")
        bad, fix = altered_copy(tmp_path / "cache" / "weights"), "delete it and esr downloads the release again"
    else:
        monkeypatch.setattr(loading, "EMBEDDED_WEIGHTS_DIR", tmp_path / "site")
        bad, fix = altered_copy(tmp_path / "site"), "reinstall esr"
    entry = ZOO["rlfn_s_x4"]
    with pytest.raises(EsrError) as info:
        open_model("rlfn_s_x4")
    message = str(info.value)
    assert message.startswith(f"{bad}: not the zoo's rlfn_s_x4 weights")
    assert f"expected {entry.sha256}" in message and loading.sha256_of(bad) in message and fix in message
    assert info.value.exit_code == 2


def test_the_true_zoo_file_loads_and_records_its_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_WEIGHTS_DIR", str(tmp_path))
    shutil.copy(EMBEDDED, tmp_path / "rlfn_s_x4.pth")
    loaded = open_model("rlfn_s_x4")
    assert loaded.descriptor.source_sha256 == ZOO["rlfn_s_x4"].sha256 and loaded.descriptor.trained


def test_an_altered_or_wrong_scale_zoo_file_is_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ESR_WEIGHTS_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "mine").mkdir()
    x2 = save_checkpoint(build_model("rlfn", 2), tmp_path / "x2.pth")
    shutil.copy(x2, tmp_path / "mine" / "rlfn_x4.pth")  # a x2 file under the x4 name
    PILImage.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "rlfn_x4"]) == 2
    assert "rlfn_x4.pth: not the zoo's rlfn_x4 weights (sha256" in one_error_line(capsys)
    assert not (tmp_path / "out" / "a.png").exists()


def test_a_wrong_scale_file_that_passes_the_checksum_is_still_one_line(tmp_path, monkeypatch):
    """Should a zoo entry's file be a different scale (a wrong table row), loading says so in one line."""
    monkeypatch.setenv("ESR_WEIGHTS_DIR", str(tmp_path))
    x2 = save_checkpoint(build_model("rlfn_s", 2), tmp_path / "rlfn_s_x4.pth")
    monkeypatch.setitem(ZOO, "rlfn_s_x4", ZOO["rlfn_s_x4"].__class__(
        **{**ZOO["rlfn_s_x4"].__dict__, "sha256": loading.sha256_of(x2)}))
    with pytest.raises(EsrError, match=r"rlfn_s_x4.pth: weights do not fit RLFN: (Unexpected|Missing|size mismatch)"):
        open_model("rlfn_s_x4")


# ----- hyperparameters before allocating -----

def test_build_model_refuses_absurd_kwargs_before_allocating(monkeypatch):
    allocated = []
    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters", lambda self: allocated.append(self.weight.device.type))
    with pytest.raises(EsrError, match=r"RLFN: feature_channels = 200000 is outside \[1, 1024\]"):
        build_model("rlfn", 4, feature_channels=200000)
    with pytest.raises(EsrError, match="RLFN: unknown keyword 'num_block' \\(did you mean num_blocks\\?\\)"):
        build_model("rlfn", 4, num_block=3)
    with pytest.raises(EsrError, match="DITN: invalid hyperparameters \\(norm must be one of"):
        build_model("ditn", 4, norm="batch")
    with pytest.raises(EsrError, match="num_blocks must be an integer"):
        build_model("rlfn", 4, num_blocks=2.5)
    assert set(allocated) <= {"meta"}  # only the meta-device estimate ran, nothing was allocated


def test_the_parameter_cap_uses_an_exact_meta_estimate(monkeypatch):
    for name, preset in PRESETS.items():
        arch = ARCH_REGISTRY.get(preset.arch)
        model = build_model(name, 4)
        real = sum(p.numel() for p in model.parameters())
        assert count_params_on_meta(arch, {**preset.kwargs, "upscale": 4}) == real
        assert preset.params_x4 == count_params(model)  # deployed: SPAN's training branches not counted
    monkeypatch.setenv("ESR_MAX_PARAMS", "400000")
    with pytest.raises(EsrError, match=r"RLFN with these hyperparameters has 0.5 M parameters, over the limit of "
                                       r"0.4 M \(set ESR_MAX_PARAMS to raise it\)"):
        build_model("rlfn", 4)
    assert build_model("rlfn_ntire", 4) is not None  # 0.32 M: under the cap
    monkeypatch.setenv("ESR_MAX_PARAMS", "0")
    assert hyperparam_problem("RLFN", {"feature_channels": 1024, "mid_channels": 1024}) is None  # 0: no cap
    monkeypatch.delenv("ESR_MAX_PARAMS")
    assert "over the limit of 50 M" in hyperparam_problem("RLFN", {"feature_channels": 1024, "mid_channels": 1024})
    assert MAX_PARAMS == 50_000_000


def test_every_arch_declares_limits_for_its_numeric_keywords():
    """The hook for new archs (SPAN...): ``LIMITS`` on the class, next to the constructor."""
    for name, cls in ARCH_REGISTRY.items():
        params = inspect.signature(cls.__init__).parameters
        numeric = {k for k, p in params.items() if type(p.default) in (int, float)}
        missing = numeric - set(getattr(cls, "LIMITS", {}))
        assert not missing, f"{name}: add {sorted(missing)} to {name}.LIMITS (see esr.limits)"


def test_the_docs_state_the_limits():
    from esr.image_io import DEFAULT_MAX_PIXELS

    text = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    limits = text[text.index("## Limits"):text.index("## Training options")]
    assert f"{MAX_PARAMS:,}" in limits and f"{DEFAULT_MAX_PIXELS:,}" in limits and "ESR_MAX_PARAMS" in limits
    assert all(name in limits for name in ARCH_REGISTRY)
    assert "RLFN channels 1-1024, blocks 1-64, scale 1-8" in limits
    assert ARCH_REGISTRY.get("RLFN").LIMITS["feature_channels"] == (1, 1024)
    assert ARCH_REGISTRY.get("RLFN").LIMITS["num_blocks"] == (1, 64)


def test_training_options_and_checkpoint_metadata_are_checked(tmp_path, capsys):
    from esr.train.schema import document_problems

    doc = __import__("yaml").safe_load(Path("options/rlfn_s_x4.yml").read_text())
    doc["network_g"]["num_blocks"] = 500
    assert "network_g: RLFN: num_blocks = 500 is outside [1, 64]" in document_problems(doc)
    state = build_model("rlfn", 4, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4).state_dict()
    torch.save({"params": state, "esr_arch": {"arch": "RLFN", "kwargs": {"feature_channels": 200000}}},
               tmp_path / "bomb.pth")
    assert main(["export", "--model", str(tmp_path / "bomb.pth"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert one_error_line(capsys) == f"error: {tmp_path / 'bomb.pth'}: RLFN: feature_channels = 200000 is outside " \
                                     "[1, 1024]"


# ----- one line for bad outputs, calibration and evaluation inputs -----

@pytest.fixture
def tiny(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4),
                           tmp_path / "tiny.pth")


def test_export_to_a_folder_a_file_parent_or_a_failing_disk(tmp_path, tiny, capsys, monkeypatch):
    (tmp_path / "folder").mkdir()
    base = ["export", "--model", str(tiny), "--opt", "1x3x16x16"]  # parity on the package's sample image
    assert main([*base, "--onnx", str(tmp_path / "folder")]) == 2
    assert one_error_line(capsys).endswith("folder: is a folder (give a file name)")
    assert main([*base, "--onnx", str(tiny / "x.onnx")]) == 2
    assert one_error_line(capsys).endswith(f"cannot write: {tiny} is not a folder")
    assert main([*base, "--onnx", str(tmp_path / "new" / "deep" / "x.onnx")]) == 0  # missing folders are created
    capsys.readouterr()

    def full_disk(model, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full_disk)
    assert main([*base, "--onnx", str(tmp_path / "full.onnx")]) == 2
    assert one_error_line(capsys).endswith("full.onnx: cannot write (No space left on device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "new", "tiny.pth"]  # no temp file left


def test_a_deploy_graph_never_replaces_its_source_model(tmp_path, tiny):
    from esr.export.graph import build_deploy_graph

    graph = build_deploy_graph(open_model(tiny), "none", (1, 3, 16, 16))
    before = tiny.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(EsrError, match="is an input of this command"):
            graph.save(tiny, overwrite=overwrite)  # no sources given: the graph knows where it came from
    (tmp_path / "g.onnx").write_bytes(b"mine")
    with pytest.raises(EsrError, match="exists \\(use --overwrite"):
        graph.save(tmp_path / "g.onnx")  # the default keeps an existing file
    assert graph.save(tmp_path / "g.onnx", overwrite=True).read_bytes()[:4] != b"mine"
    assert tiny.read_bytes() == before


def test_quantize_with_one_pixel_images_and_bad_crop_sizes(tmp_path, tiny, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    for index in range(2):
        PILImage.fromarray(np.full((1, 1, 3), 90 * index, np.uint8)).save(calib / f"{index}.png")
    base = ["quantize", "--model", str(tiny), "--calib", str(calib), "--num-calib", "2"]
    assert main([*base, "--crop-size", "16", "--out", str(tmp_path / "q.onnx")]) == 0
    assert "2 16x16 calibration crops" in capsys.readouterr().out  # 1x1 images, mirror-padded to the crop
    for crop, reason in (("0", "crop_size 0: must be >= 1"), ("4", "crop size 4: below the model's minimum input")):
        assert main([*base, "--crop-size", crop, "--out", str(tmp_path / f"q{crop}.onnx")]) == 2
        assert reason in one_error_line(capsys)
        assert not (tmp_path / f"q{crop}.onnx").exists()


def test_eval_with_hr_smaller_than_the_scale(tmp_path, tiny, capsys):
    (tmp_path / "data" / "HR").mkdir(parents=True)
    PILImage.fromarray(np.zeros((3, 40, 3), np.uint8)).save(tmp_path / "data" / "HR" / "thin.png")
    assert main(["eval", "--model", str(tiny), "--data", str(tmp_path / "data")]) == 1
    assert one_error_line(capsys).endswith("thin.png: HR image too small to score at x2 (needs more than 4 pixels "
                                           "per side)")


# ----- item 4: esr quantize on what the default esr export writes -----

def test_quantize_the_default_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate(((56, 40), (280, 300))):  # smaller and larger than the static 256x256
        coarse = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        smooth = PILImage.fromarray(coarse).resize(size, PILImage.Resampling.BICUBIC)  # image-like, not noise
        smooth.save(calib / f"{index}.png")
    assert main(["export", "--model", "rlfn_s_x4", "--parity", str(calib)]) == 0  # the defaults: static 256x256
    onnx_path = tmp_path / "rlfn_s_x4_x4.onnx"
    dims = [d.dim_value for d in onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 256, 256]
    capsys.readouterr()
    assert main(["quantize", "--model", str(onnx_path), "--calib", str(calib), "--num-calib", "2",
                 "--out", "int8.onnx"]) == 0
    assert "2 256x256 calibration crops" in capsys.readouterr().out
    report = json.loads((tmp_path / "int8.json").read_text())
    assert report["crop_hw"] == [256, 256] and all(unit["int8"] for unit in report["units"])
    assert report["output_psnr_vs_fp32_db"] > 30


# ----- the console: a closed pipe -----

def test_a_closed_output_pipe_ends_quietly():
    """``esr models | head -0``: the reader is gone before esr prints; no BrokenPipeError, exit 141."""
    proc = subprocess.Popen([sys.executable, "-m", "esr", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == b""
