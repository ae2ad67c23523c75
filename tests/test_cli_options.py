"""The habits every command shares: defaults shown in --help, -n/-s/-t aliases, --threads, the default device
rule, --json that leaves nothing else on stdout, integer progress counts, fp16 on a CPU, shared-data paths.

Run time about 40 s on 2 shared cores (the --json runs export, quantize and upscale a tiny RLFN)."""
from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esr.cli import build_parser, main

COMPUTING = ("upscale", "eval", "bench", "analyze", "export", "quantize", "train", "models")
"""Commands that compute (models: with --macs): each has --threads."""
REPORTING = ("upscale", "eval", "bench", "analyze", "export", "quantize", "train", "models")
"""Commands that report: each has --json."""


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_every_option_shows_its_default_once():
    for name, parser in subparsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help in (None, argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action)
            assert text.count("(default") <= 1, f"esr {name} {action.option_strings[0]}: {text}"
            default = action.default
            shown = not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
            if shown and not isinstance(action, argparse._HelpAction):
                assert "default" in text and all(word in text for word in str(default).split()[:1]), \
                    f"esr {name} {action.option_strings[0]} hides its default {action.default!r}: {text}"


def test_quantize_help_shows_the_registry_choices_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["quantize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: percentile)" in text and "(default: channel)" in text and "(default: s7)" in text


def test_short_aliases():
    commands = subparsers()
    for name, parser in commands.items():
        if option(parser, "--model") is not None:
            assert option(parser, "--model").option_strings == ["-n", "--model"], name
    args = build_parser().parse_args(["upscale", "in/", "-o", "out/", "-n", "rlfn_x4", "-s", "2", "-t", "128"])
    assert (args.model, args.outscale, args.tile, args.output) == ("rlfn_x4", 2.0, 128, "out/")
    help_text = commands["upscale"].format_help()
    assert "-s OUTSCALE, --outscale OUTSCALE" in help_text and "-t TILE, --tile TILE" in help_text


def test_threads_mean_the_same_everywhere(capsys):
    commands = subparsers()
    for name in COMPUTING:
        threads = option(commands[name], "--threads")
        assert threads is not None and threads.default == 0, name
        assert "0 = each library's own default" in threads.help or "0 =" in threads.help, name
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["eval", "--data", "d", "--threads", "-1"])
    assert stop.value.code == 2 and "expected an integer >= 0" in capsys.readouterr().err


def test_one_default_device_rule(monkeypatch):
    from esr.backends import default_device, onnxruntime_has_cuda

    commands = subparsers()
    devices = [option(commands[name], "--device") for name in ("upscale", "eval", "bench")]
    assert all(d.default is None and "default: cuda if available, else cpu" in d.help for d in devices)
    assert all("gpu" in d.choices for d in devices)  # OpenVINO's Intel GPU stays
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert {default_device(), default_device("torch"), default_device("onnxruntime")} == {"cpu"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == default_device("torch") == default_device("auto") == "cuda"
    assert default_device("openvino") == "cpu"  # OpenVINO runs on cpu or an Intel GPU, never CUDA
    assert default_device("onnxruntime") == ("cuda" if onnxruntime_has_cuda() else "cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random RLFN x2 checkpoint and two small images (calib/ and images/)."""
    from esr.archs.presets import build_model
    from esr.loading import save_checkpoint

    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    save_checkpoint(build_model("rlfn", 2, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4),
                    folder / "tiny.pth")
    rng = np.random.default_rng(0)
    for sub in ("calib", "images"):
        (folder / sub).mkdir()
        cv2.imwrite(str(folder / sub / "a.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return folder


def json_only(capsys) -> dict:
    """The one JSON object on stdout (anything else there fails)."""
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1, out
    return json.loads(out)


def test_export_json_and_parity_on_the_package_sample(tiny, tmp_path, capsys):
    code = main(["export", "-n", str(tiny / "tiny.pth"), "--onnx", str(tmp_path / "t.onnx"), "--opt", "1x3x16x16",
                 "--threads", "1", "--json"])
    assert code == 0
    report = json_only(capsys)
    assert report["parity"]["ok"] and report["parity"]["source"].startswith("the package's sample image")
    assert report["onnx"] == str(tmp_path / "t.onnx") and report["recipe"] == ["conv_fold"]
    assert report["nodes"]["after"]["Conv"] > 0 and report["engine"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", "-n", str(tiny / "tiny.pth"), "--onnx", str(tmp_path / "u.onnx"), "--parity",
                 str(empty)]) == 2  # never noise: a folder without images is refused
    assert "no images for the parity check" in capsys.readouterr().err
    assert not (tmp_path / "u.onnx").exists()


def test_quantize_json(tiny, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["quantize", "-n", str(tiny / "tiny.pth"), "--calib", str(tiny / "calib"), "--out", str(out),
                 "--num-calib", "1", "--crop-size", "16", "--threads", "1", "--json"]) == 0
    report = json_only(capsys)
    assert report["out"] == str(out) and report["config"]["threads"] == 1 and report["units"]
    assert json.loads(out.with_suffix(".json").read_text())["units"] == report["units"]


def test_upscale_json_summary_with_auto(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))  # auto measures (and would print its line)
    code = main(["upscale", str(tiny / "images"), "-o", str(tmp_path / "out"), "-n", str(tiny / "tiny.pth"),
                 "--threads", "1", "--json"])
    assert code == 0
    summary = json_only(capsys)
    assert (summary["upscaled"], summary["skipped"], summary["failed"]) == (1, 0, 0)
    assert summary["backend"].startswith("auto -> ") and summary["auto"].startswith("auto: ")
    assert summary["device"] == "cpu" and (tmp_path / "out" / "a.png").is_file()


def test_analyze_reads_an_onnx_graph_as_its_deploy_graph(tiny, tmp_path, capsys):
    from esr.export.graph import build_deploy_graph
    from esr.loading import open_model

    dynamic = tmp_path / "d.onnx"
    build_deploy_graph(open_model(str(tiny / "tiny.pth")), "default").save(dynamic)
    common = ["--hw", "h100", "--shape", "1x3x32x24", "--json"]
    assert main(["analyze", "-n", str(tiny / "tiny.pth"), *common]) == 0
    from_torch = json_only(capsys)
    assert main(["analyze", "-n", str(dynamic), *common]) == 0
    from_onnx = json_only(capsys)
    assert from_onnx["passes"] == from_torch["passes"] == ["conv_fold"]
    assert from_onnx["totals"]["layers"] == from_torch["totals"]["layers"]
    assert from_onnx["totals"]["flops"] == pytest.approx(from_torch["totals"]["flops"])
    static = tmp_path / "s.onnx"
    build_deploy_graph(open_model(str(tiny / "tiny.pth")), "default", (1, 3, 16, 16)).save(static)
    assert main(["analyze", "-n", str(static), "--hw", "h100", "--json"]) == 0
    assert json_only(capsys)["shape"] == [1, 3, 16, 16]  # a static graph: its own shape
    assert main(["analyze", "-n", str(static), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1x3x32x24 does not fit it" in err[0] and "weights_only" not in err[0]


def test_progress_counts_whole_images(tiny, tmp_path, monkeypatch):
    """The bar counts images (``1/1``, never ``1.0/1``); the tiles of the current image show as a postfix."""
    import tqdm as tqdm_module

    from esr.upscale_batch import BatchOptions, run_batch

    screen = io.StringIO()
    shown = []

    class Visible(tqdm_module.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.update(file=screen, disable=False, mininterval=0)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            result = super().update(n)
            shown.append(self.n)
            return result

    monkeypatch.setattr(tqdm_module, "tqdm", Visible)
    options = BatchOptions(inputs=[str(tiny / "images")], outdir=tmp_path / "out", model=str(tiny / "tiny.pth"),
                           backend="torch", precision=None, tile=8, tile_pad=2)
    assert run_batch(options, log=lambda line: None) == 0
    assert shown and all(isinstance(n, int) for n in shown) and shown[-1] == 1
    assert "image 100%" in screen.getvalue() and "1/1" in screen.getvalue() and "1.0/1" not in screen.getvalue()


def test_fp16_on_a_cpu_is_one_line_with_the_alternatives(monkeypatch):
    from esr.autoselect import Candidate, Trial, choose
    from esr.backends.torch_backend import check_torch_precision
    from esr.capabilities import cpu_alternatives
    from esr.errors import EsrError

    assert cpu_alternatives("fp16", frozenset()) == "on this CPU use fp32"
    assert cpu_alternatives("fp16", frozenset({"amx_bf16", "avx512_fp16"})) == (
        "on this CPU use --backend openvino --precision fp16 (AVX512-FP16), --precision bf16 (AMX-BF16) or fp32")
    with pytest.raises(EsrError, match=r"fp16 needs CUDA \(--device cuda\); on this CPU use"):
        check_torch_precision("cpu", "fp16")
    # auto with a named precision: chosen among that precision's candidates only, scored against fp32
    reference = Candidate("onnxruntime", "fp32")
    fp16 = [Candidate("torch", "fp16"), Candidate("onnxruntime", "fp16"), Candidate("openvino", "fp16")]
    hint = cpu_alternatives("fp16")
    reasons = {"torch": f"torch backend: fp16 needs CUDA (--device cuda); {hint}",
               "onnxruntime": "onnxruntime backend: fp16 on cpu is not available (it runs this graph as fp32)",
               "openvino": "openvino backend: fp16 on CPU needs AVX512-FP16 or AMX-FP16"}
    trials = [Trial(reference, median_ms=10.0, fidelity_db=999.0), *(Trial(c, error=reasons[c.backend]) for c in fp16)]
    with pytest.raises(EsrError) as refused:
        choose(trials, 52.5, reference, choosable=fp16)
    assert str(refused.value) == (
        "auto: no installed backend computes fp16 on cpu here (torch fp16: fp16 needs CUDA (--device cuda); "
        "onnxruntime fp16: fp16 on cpu is not available (it runs this graph as fp32); openvino fp16: fp16 on CPU "
        f"needs AVX512-FP16 or AMX-FP16); {hint}")
    trials[-1] = Trial(fp16[-1], median_ms=12.0, fidelity_db=60.0)  # slower than fp32, but fp16 was asked for
    assert choose(trials, 52.5, reference, choosable=fp16).chosen == fp16[-1]
    assert choose(trials, 52.5, reference).chosen == reference  # unnamed precision: the reference's speed bar holds


def test_shared_data_is_never_guessed_beside_site_packages(tmp_path, monkeypatch, capsys):
    import esr.paths as paths

    assert paths.source_checkout() == Path(__file__).resolve().parent.parent  # this checkout
    monkeypatch.setattr(paths, "source_checkout", lambda: None)  # as installed into site-packages
    monkeypatch.delenv("ESR_SHARED", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert paths.find_shared_dir() is None
    options = work / "demo.yml"
    shutil.copy(Path(__file__).resolve().parent.parent / "options" / "demo_rlfn_s_x4.yml", options)
    assert main(["train", "-opt", str(options)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set ESR_SHARED to the folder holding datasets/ (or edit the dataroot paths)" in err[0]
    assert not (work / "experiments").exists()
    (tmp_path / "shared").mkdir()  # ../shared beside the current folder is found
    assert paths.find_shared_dir() == (tmp_path / "shared").resolve()


def test_upscale_fp16_where_no_backend_computes_it(tiny, tmp_path, capsys, monkeypatch):
    """``--fp16`` under auto on a CPU where no backend computes fp16 (OpenVINO's check made to refuse, as on a CPU
    without fp16 units): exit 2, one line naming each backend's reason and what this CPU offers instead."""
    from esr.backends import openvino_runtime
    from esr.capabilities import cpu_alternatives
    from esr.errors import EsrError

    def refuse(device: str, precision: str) -> str:
        raise EsrError(f"openvino backend: {precision} on CPU needs AVX512-FP16 or AMX-FP16")

    monkeypatch.setattr(openvino_runtime, "check_support", refuse)
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["upscale", str(tiny / "images"), "-o", str(tmp_path / "out"), "-n", str(tiny / "tiny.pth"),
                 "--fp16", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: auto: no installed backend computes fp16 on cpu here (torch fp16: fp16 needs CUDA")
    assert err[0].endswith(cpu_alternatives("fp16")) and not (tmp_path / "out" / "a.png").exists()
