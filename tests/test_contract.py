"""The model contract: one descriptor, one loader, one deploy-graph builder, one session factory, registries.

CI-sized: tiny models (DITN dim 12, RLFN 8 channels), inputs of 16-32 px; about 40 s on 2 busy cores.
"""
from __future__ import annotations

import importlib.util

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

import esr
from esr.backends import BACKENDS, backend_names, create_backend, default_backend_for
from esr.cli import main
from esr.descriptor import ModelDescriptor, read_metadata, write_metadata
from esr.errors import EsrError
from esr.export.graph import build_deploy_graph
from esr.export.onnx_export import op_counts
from esr.loading import LoadedModel, open_model, save_checkpoint, sha256_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))


def tiny_ditn_pth(folder: Path) -> Path:
    """A LayerNorm DITN x2 (dim 12, one ITL, one SAL) with random weights, saved as an esr checkpoint."""
    torch.manual_seed(0)
    return save_checkpoint(esr.build_model("ditn", 2, dim=12, num_itl=1, num_sal=1).eval(), folder / "ditn_x2.pth")


def tiny_rlfn_pth(folder: Path) -> Path:
    torch.manual_seed(0)
    model = esr.build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4, img_range=1.0)
    return save_checkpoint(model.eval(), folder / "rlfn_tiny_x2.pth")


def write_images(folder: Path, count: int = 2, size: tuple[int, int] = (20, 24)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        ramp = np.linspace(0, 255, size[1])[None, :, None] * np.ones((size[0], 1, 3))
        noisy = np.clip(ramp + rng.normal(0, 10, (*size, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{index}.png"), noisy)
    return folder


# ----- descriptor -----

def test_descriptor_metadata_round_trip():
    descriptor = ModelDescriptor(name="m", arch="DITN", scale=3, in_channels=1, out_channels=1, min_size=9,
                                 size_multiple=8, square=True, pads_inside=False, tiling="discouraged",
                                 license="MIT", source="a b, c", source_sha256="ab" * 32, trained=True,
                                 recipe=("qkv_fuse", "affine_fold"), precision="int8",
                                 hyperparams={"dim": 12, "norm": "tanh", "ffn_expansion": 2.5})
    props = descriptor.to_metadata()
    assert props["esr.scale"] == "3" and props["esr.recipe"] == "qkv_fuse,affine_fold" and "esr.version" in props
    assert all(isinstance(v, str) for v in props.values())
    assert ModelDescriptor.from_metadata(props) == descriptor
    assert ModelDescriptor.from_metadata({"producer": "other"}) is None
    with pytest.raises(ValueError, match="esr.scale"):
        ModelDescriptor.from_metadata({**props, "esr.scale": "four"})
    graph = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    graph.metadata_props.add(key="author", value="someone")
    write_metadata(graph, descriptor)
    write_metadata(graph, descriptor.replace(precision="fp32"))  # replaces, never duplicates
    assert read_metadata(graph) == descriptor.replace(precision="fp32")
    assert sum(p.key == "esr.scale" for p in graph.metadata_props) == 1
    assert any(p.key == "author" for p in graph.metadata_props)


def test_every_loader_fills_the_descriptor(tmp_path, official_weights):
    zoo = open_model("rlfn_x2")
    assert (zoo.kind, zoo.descriptor.name, zoo.descriptor.scale, zoo.descriptor.trained) == ("module", "rlfn_x2", 2, True)
    assert zoo.descriptor.license == "Apache-2.0" and "official RLFN" in zoo.descriptor.source
    assert zoo.descriptor.source_sha256 == sha256_of(official_weights / "rlfn_x2.pth")
    assert zoo.module.descriptor == zoo.descriptor  # esr.load_model's module carries the same one
    pth = tiny_ditn_pth(tmp_path)
    checkpoint = open_model(pth)
    assert checkpoint.descriptor.source_sha256 == sha256_of(pth) and checkpoint.descriptor.trained
    assert (checkpoint.descriptor.arch, checkpoint.descriptor.size_multiple) == ("DITN", 8)
    preset = open_model("ditn_real", allow_untrained=True)
    assert not preset.descriptor.trained and preset.descriptor.scale == 4 and preset.descriptor.name == "ditn_real"
    again = open_model("ditn_real", allow_untrained=True)  # seeded random weights: reproducible graphs and timings
    assert all(torch.equal(a, b) for a, b in zip(preset.module.state_dict().values(), again.module.state_dict().values()))
    with pytest.raises(EsrError, match="x4, but x2"):
        open_model("rlfn_x4", scale=2)


def test_weightless_preset_is_refused_where_weights_matter(tmp_path, capsys):
    with pytest.raises(EsrError) as info:
        open_model("ditn_real")
    assert "official DITN release" in str(info.value) and "esr train" in str(info.value)
    image = write_images(tmp_path / "in", 1) / "img0.png"
    for argv in (["upscale", str(image), "-o", str(tmp_path / "out"), "--model", "ditn_real", "--quiet"],
                 ["eval", "--model", "ditn_real", "--data", str(tmp_path / "in")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ditn_real:") and "official DITN release" in err[0]
    assert not (tmp_path / "out" / "img0.png").exists()


def test_presets_run_untrained_where_weights_do_not_matter(tmp_path, capsys):
    assert main(["bench", "--model", "ditn_real", "--shape", "1x3x16x16", "--runs", "1", "--warmup", "0",
                 "--backend", "all", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    cpu_runtimes = {"torch", "onnxruntime"} | ({"openvino"} if importlib.util.find_spec("openvino") else set())
    assert {r["backend"] for r in records} == cpu_runtimes and not any(r["trained"] for r in records)
    assert main(["analyze", "--model", "ditn", "--hw", "h100", "--shape", "1x3x16x16", "--json"]) == 0
    analysed = json.loads(capsys.readouterr().out)
    assert analysed["trained"] is False and "untrained" in analysed["note"] and analysed["totals"]["flops"] > 0
    out = tmp_path / "ditn_real_x4.onnx"
    assert main(["export", "--model", "ditn_real", "--opt", "1x3x16x16", "--onnx", str(out)]) == 0
    assert "untrained (random weights)" in capsys.readouterr().out
    descriptor = read_metadata(onnx.load(str(out)))
    assert descriptor.trained is False and descriptor.scale == 4 and "layernorm_exact" in descriptor.recipe


# ----- one deploy graph -----

def test_onnxruntime_backend_runs_the_exported_default_recipe_graph(tmp_path, capsys):
    """``esr upscale/bench --backend onnxruntime --model X.pth`` run the graph ``esr export`` ships."""
    pth = tiny_ditn_pth(tmp_path)
    backend = create_backend("onnxruntime", pth, threads=1)
    [cached] = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    graph = onnx.load(str(cached))
    ops = op_counts(graph)
    recipe = ("layernorm_exact", "qkv_fuse", "attention_fuse", "affine_fold")
    assert "LayerNormalization" not in ops and "Pow" not in ops and ops["ReduceMax"] == 4  # fp16-safe norm form
    descriptor = read_metadata(graph)
    assert descriptor.recipe == recipe and backend.descriptor == descriptor
    assert descriptor.source_sha256 == sha256_of(pth) and descriptor.trained and descriptor.scale == 2
    exported = tmp_path / "exported.onnx"
    assert main(["export", "--model", str(pth), "--dynamic", "--opt", "1x3x64x64", "--onnx", str(exported),
                 "--parity", str(write_images(tmp_path / "parity"))]) == 0
    capsys.readouterr()
    shipped = onnx.load(str(exported))
    assert op_counts(shipped) == ops and read_metadata(shipped) == descriptor
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert float((backend(x) - open_model(pth).module(x)).abs().max()) <= 1e-4


def test_one_graph_builder_and_one_session_factory_in_the_tree():
    """Grep-able: ``InferenceSession(`` only in the session factory; ``torch.onnx.export(`` only in the
    trace step, which only the deploy-graph builder calls."""
    sources = [p for folder in ("esr", "export", "plugins", "scripts", "tests") for p in (ROOT / folder).rglob("*.py")]
    where = {pattern: sorted(str(p.relative_to(ROOT)) for p in sources if re.search(pattern, p.read_text())
                             and p.name != Path(__file__).name)
             for pattern in (r"InferenceSession\(", r"torch\.onnx\.export\(", r"trace_onnx\(", r"def build_deploy_graph")}
    assert where[r"InferenceSession\("] == ["esr/backends/sessions.py"]
    assert where[r"torch\.onnx\.export\("] == ["export/onnx_export.py"]
    assert where[r"trace_onnx\("] == ["export/graph.py", "export/onnx_export.py"]
    assert where[r"def build_deploy_graph"] == ["export/graph.py"]


# ----- ONNX metadata round trip through the commands -----

def test_onnx_metadata_round_trip_through_upscale_eval_quantize(tmp_path, monkeypatch, capsys):
    import esr.loading

    pth = tiny_rlfn_pth(tmp_path)
    data = write_images(tmp_path / "data", 2, (32, 40))
    static = tmp_path / "static.onnx"
    assert main(["export", "--model", str(pth), "--opt", "1x3x32x32", "--onnx", str(static), "--parity", str(data)]) == 0
    capsys.readouterr()

    def no_probe(*args, **kwargs):
        raise AssertionError("an esr ONNX file was probed")

    monkeypatch.setattr(esr.loading, "probe_onnx", no_probe)
    loaded = open_model(static)
    assert (loaded.kind, loaded.descriptor.scale, loaded.descriptor.min_size, loaded.descriptor.recipe) == (
        "onnx", 2, 15, ("conv_fold",))
    assert main(["upscale", str(data), "-o", str(tmp_path / "up"), "--model", str(static), "--tile-pad", "4",
                 "--quiet"]) == 0
    assert cv2.imread(str(tmp_path / "up" / "img0.png")).shape == (64, 80, 3)  # 32x40 through a 32x32 graph: tiled
    capsys.readouterr()
    assert main(["eval", "--model", str(static), "--data", str(data), "--json"]) == 0
    fp32_score = json.loads(capsys.readouterr().out)
    assert fp32_score["scale"] == 2 and fp32_score["precision"] == "fp32"
    int8 = tmp_path / "int8.onnx"
    assert main(["quantize", "--model", str(static), "--calib", str(data), "--num-calib", "2", "--out", str(int8)]) == 0
    assert "2 32x32 calibration crops" in capsys.readouterr().out  # the static shape, not --crop-size 96
    int8_descriptor = read_metadata(onnx.load(str(int8)))
    assert int8_descriptor == loaded.descriptor.replace(precision="int8")
    assert main(["eval", "--model", str(int8), "--data", str(data), "--json"]) == 0
    int8_score = json.loads(capsys.readouterr().out)
    assert int8_score["precision"] == "int8" and abs(int8_score["psnr_y"] - fp32_score["psnr_y"]) < 1.0
    assert main(["bench", "--model", str(int8), "--shape", "1x3x32x32", "--runs", "1", "--warmup", "0", "--json"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert record["precision"] == "int8" and record["backend"] == "onnxruntime"


def test_foreign_onnx_is_probed_once_with_a_warning(tmp_path, capsys):
    pth = tiny_rlfn_pth(tmp_path)
    graph = build_deploy_graph(open_model(pth), "none").model
    del graph.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(graph, str(foreign))
    with pytest.warns(UserWarning, match="no esr metadata.*probed it once: x2"):
        loaded = open_model(foreign)
    assert loaded.descriptor.scale == 2 and loaded.descriptor.arch == "unknown"
    data = write_images(tmp_path / "data", 1, (20, 24))
    with pytest.warns(UserWarning, match="no esr metadata"):
        assert main(["eval", "--model", str(foreign), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scale"] == 2


# ----- backend registry -----

def test_backend_registry_declares_what_each_backend_runs(tmp_path):
    assert backend_names()[:3] == ["torch", "onnxruntime", "tensorrt"]
    for name, spec in BACKENDS.items():
        assert spec.name == name and spec.devices and spec.precisions and spec.kinds and spec.summary
    assert default_backend_for(open_model("rlfn_s_x4")) == "torch"
    engine = LoadedModel(ModelDescriptor(name="e", arch="RLFN", scale=4), "engine", path=tmp_path / "m.engine")
    assert default_backend_for(engine) == "tensorrt"
    with pytest.raises(EsrError, match="unknown backend 'nope'"):
        create_backend("nope", "rlfn_s_x4")
    with pytest.raises(EsrError) as info:
        create_backend("torch", engine)
    assert "the torch backend runs module models, not engine files" in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_choices_come_from_the_registries(capsys):
    from esr.quantize.ranges import QUANT_METHODS

    for command in ("upscale", "bench", "eval"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in backend_names())
    with pytest.raises(SystemExit):
        main(["quantize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"{name}:" in text for name in QUANT_METHODS)
    assert QUANT_METHODS["twin-uniform"].twin and not any(m.twin for n, m in QUANT_METHODS.items() if n != "twin-uniform")


# ----- developer loop -----

def test_tests_import_the_working_tree():
    """``pytest`` and ``python -m pytest`` from the repo root import esr (and esr.export / esr.plugins) from here."""
    import esr.export
    import esr.plugins

    assert Path(esr.__file__).resolve().parent == ROOT / "esr"
    assert Path(esr.export.__file__).resolve().parent == ROOT / "export"
    assert Path(esr.plugins.__file__).resolve().parent == ROOT / "plugins"


def test_esr_models_reads_the_table_without_torch():
    code = ("import sys; from esr.cli import main; code = main(['models']); "
            "sys.exit(3 if 'torch' in sys.modules else code)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "rlfn_s_x4" in run.stdout and "ditn_real" in run.stdout
