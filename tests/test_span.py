"""SPAN: parity with spandrel's SPAN, checkpoint detection, the Conv3XC fold (eval form and deploy pass),
ONNX graph form and onnxruntime parity, training-mode gradients."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from esr import plugins
from esr.archs.presets import build_model
from esr.archs.span_arch import SPAN, Conv3XC, detect_span
from esr.complexity import count_macs, count_params
from esr.loading import detect_arch, load_model, save_checkpoint
from esr.registry import ARCH_REGISTRY, DETECTOR_REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5


def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (weights std 1/sqrt(fan_in), biases std 0.1), the first conv divided by
    the input multiplier so features stay O(1) after the x255 normalisation: outputs are then
    image-like (std ~0.3) and 1e-5 is a meaningful fp32 tolerance. Works on spandrel's SPAN and ours
    (same parameter names); ``eval_conv`` is drawn too, i.e. left inconsistent with the branches."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            std = param[0].numel() ** -0.5 if param.ndim > 1 else 0.1
            param.copy_(torch.randn(param.shape, generator=generator) * std)
        first = model.conv_1
        for layer in [first.eval_conv] + ([first.sk, first.conv[0]] if first.sk is not None else []):
            layer.weight.div_(255.0)
    return model


def spandrel_span(scale: int, seed: int, **kwargs) -> torch.nn.Module:
    span = pytest.importorskip("spandrel.architectures.SPAN")
    return randomise_(span.SPAN(num_in_ch=3, num_out_ch=3, upscale=scale, **kwargs), seed)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("stale_eval_conv", [True, False], ids=["stale", "recomputed"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_spandrel(scale: int, stale_eval_conv: bool, norm: bool) -> None:
    reference = spandrel_span(scale, seed=scale, norm=norm)
    if not stale_eval_conv:
        for module in reference.modules():
            if type(module).__name__ == "Conv3XC":
                module.update_params()
    state = reference.state_dict()
    ours = SPAN(upscale=scale, norm=norm).eval()  # loading into an eval-mode model refits eval_conv too
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in state.items()]
    ours.load_state_dict(state, strict=True)
    generator = torch.Generator().manual_seed(scale)
    for shape in [(1, 3, 37, 53), (2, 3, 16, 16)]:
        x = torch.rand(shape, generator=generator)
        with torch.no_grad():
            expected, actual = reference.eval()(x), ours(x)  # spandrel: eval_conv refit at every call
            assert actual.shape == (shape[0], 3, shape[2] * scale, shape[3] * scale) == expected.shape
            assert expected.std() > 0.1  # random weights give a non-trivial output
            assert max_diff(actual, expected) <= TOL
            # training form (branches) against training form, and against our eval form
            trained = reference.train()(x)
            assert max_diff(ours.train()(x), trained) <= TOL
            assert max_diff(actual, trained) <= TOL
            ours.eval()


def test_spandrel_loads_our_state_dict() -> None:
    spandrel = pytest.importorskip("spandrel")
    for norm in (True, False):
        loaded = spandrel.ModelLoader().load_from_state_dict(SPAN(upscale=3, feature_channels=16, norm=norm).state_dict())
        assert loaded.architecture.id == "SPAN" and loaded.scale == 3
        assert loaded.model.is_norm == norm


@pytest.mark.parametrize("wrapper", [None, "params", "params_ema"])
@pytest.mark.parametrize("norm", [True, False], ids=["official", "no_norm"])
def test_load_model_detects_spandrel_checkpoint(tmp_path, wrapper: str | None, norm: bool) -> None:
    """The official key layout (no ``no_norm``), spandrel's ``norm=False`` one, bare or BasicSR-wrapped."""
    reference = spandrel_span(2, seed=7, norm=norm, feature_channels=24).eval()
    state = reference.state_dict()
    path = tmp_path / "span_x2.pth"
    torch.save(state if wrapper is None else {wrapper: state}, path)
    model = load_model(path)
    assert isinstance(model, SPAN) and not model.training
    assert model.descriptor.scale == 2 and model.descriptor.arch == "SPAN"
    assert model.hyperparams["feature_channels"] == 24 and model.hyperparams["norm"] == norm
    x = torch.rand(1, 3, 21, 30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_diff(model(x), reference(x)) <= TOL


@pytest.mark.parametrize("kwargs", [
    dict(upscale=2),
    dict(upscale=3, feature_channels=28, branches=False),
    dict(upscale=4, feature_channels=16, bias=False),
    dict(upscale=1, feature_channels=8, norm=False),
    dict(upscale=2, feature_channels=8, in_channels=1, out_channels=1, norm=False, branches=False),
])
def test_detector_round_trip(kwargs: dict) -> None:
    model = randomise_(SPAN(**kwargs), seed=1).eval()
    state = model.state_dict()
    name, found = detect_arch(state)
    assert name == "SPAN"
    assert found == {k: v for k, v in model.hyperparams.items() if k not in ("img_range", "rgb_mean")}
    rebuilt = ARCH_REGISTRY.get(name)(**found)
    rebuilt.load_state_dict(state, strict=True)
    x = torch.rand(1, found["in_channels"], 12, 17)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


def all_preset_state_dicts() -> list[tuple[str, dict]]:
    from esr.zoo import PRESETS

    states = [(PRESETS[name].arch, build_model(name, scale).state_dict()) for name in PRESETS for scale in (2, 4)]
    return states + [("SPAN", SPAN(feature_channels=28, branches=False).state_dict())]


def test_detectors_never_both_match() -> None:
    """Each preset's state dict (RLFN, DITN, SPAN, slim SPAN) is claimed by exactly its own detector."""
    for arch, state in all_preset_state_dicts():
        claims = [name for name, detector in DETECTOR_REGISTRY.items() if detector(state) is not None]
        assert claims == [arch]
    assert detect_span({}) is None
    state = SPAN(feature_channels=8).state_dict()
    assert detect_span({k: v for k, v in state.items() if not k.startswith("block_6.")}) is None


@pytest.mark.parametrize("size", [(1, 1), (7, 9), (37, 53)])
def test_any_input_size_and_descriptor(size: tuple[int, int]) -> None:
    model = build_model("span_ntire", 3).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * 3, size[1] * 3) and torch.isfinite(out).all()
    descriptor = model.descriptor
    assert (descriptor.arch, descriptor.scale, descriptor.min_size, descriptor.size_multiple) == ("SPAN", 3, 1, 1)
    assert descriptor.hyperparams["feature_channels"] == 28


def test_presets_match_published_size() -> None:
    """Deployed parameters (eval form) of the official 48-channel SPAN (0.426 M, SPAN paper) and the NTIRE 2024
    entry (0.151 M params, 9.83 G "FLOPs" = fvcore MACs at 256x256 x4, challenge report)."""
    span, ntire = build_model("span", 4).eval(), build_model("span_ntire", 4).eval()
    assert abs(count_params(span) - 0.426e6) / 0.426e6 <= 0.005
    assert abs(count_params(ntire) - 0.151e6) / 0.151e6 <= 0.005
    assert abs(count_macs(ntire, 256, 256) - 9.83e9) / 9.83e9 <= 0.005
    assert abs(count_macs(span, 256, 256) - 27.87e9) / 27.87e9 <= 0.001  # docs/models.md
    # every parameter of the training form exists, but only the folded convs run in eval mode
    assert sum(p.numel() for p in span.parameters()) > 5 * count_params(span)


def test_eval_after_training_uses_the_updated_fold() -> None:
    """Gradients reach the branches (not eval_conv); after optimiser steps, eval() refits eval_conv."""
    torch.manual_seed(0)
    model = SPAN(feature_channels=8, upscale=2)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, target = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)
    before = model.block_3.c2_r.eval_conv.weight.clone()
    model.train()
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.l1_loss(model(x), target).backward()
        block = model.block_3.c2_r
        assert block.conv[1].weight.grad.abs().sum() > 0 and block.sk.weight.grad.abs().sum() > 0
        assert block.eval_conv.weight.grad is None
        optimiser.step()
    assert torch.equal(model.block_3.c2_r.eval_conv.weight, before)  # untouched while training
    with torch.no_grad():
        trained = model(x)
        model.eval()
        assert not torch.equal(model.block_3.c2_r.eval_conv.weight, before)
        assert max_diff(model(x), trained) <= TOL


@pytest.mark.parametrize("preset", ["span", "span_ntire"])
def test_conv3xc_fold_is_exact_and_slims(tmp_path, preset: str) -> None:
    model = randomise_(build_model(preset, 4), seed=3).eval()
    x = torch.rand(1, 3, 29, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        training_form = model.train()(x)
    deployed, [report] = plugins.apply_measured(model.eval(), plugins.default_recipe(model), x)
    assert (report.name, report.contract, report.sites) == ("conv3xc_fold", "exact", 20)
    assert report.max_abs_error <= TOL
    with torch.no_grad():
        assert max_diff(deployed(x), training_form) <= TOL
        # the pass folds from the branches, whatever eval_conv holds (here: edited, never refitted)
        stale = copy.deepcopy(model)
        stale.block_2.c1_r.eval_conv.weight.add_(0.1)
        assert max_diff(stale(x), training_form) > 1e-3
        assert plugins.PASS_REGISTRY.get("conv3xc_fold").run(stale) == 20
        assert max_diff(stale(x), training_form) <= TOL
    assert not any(isinstance(m, Conv3XC) and m.has_branches for m in deployed.modules())
    assert count_params(deployed) == sum(p.numel() for p in deployed.parameters()) == count_params(model)
    assert all(".sk." not in key and ".conv." not in key for key in deployed.state_dict())
    # the slim result is a checkpoint esr reloads (esr metadata, and by shapes alone)
    reloaded = load_model(save_checkpoint(deployed, tmp_path / "deployed.pth"))
    assert detect_span(deployed.state_dict())[1]["branches"] is False
    with torch.no_grad():
        assert torch.equal(reloaded(x), deployed(x))


def conv_layout(model: torch.nn.Module) -> tuple[int, int]:
    """(Conv3XC modules, Conv2d layers outside them)."""
    blocks = [m for m in model.modules() if isinstance(m, Conv3XC)]
    inside = {id(c) for b in blocks for c in b.modules() if isinstance(c, torch.nn.Conv2d)}
    plain = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and id(m) not in inside]
    return len(blocks), len(plain)


@pytest.mark.parametrize("recipe", ["default", "none"])
def test_onnx_has_one_conv_per_conv3xc_and_matches_onnxruntime(tmp_path, recipe: str) -> None:
    from esr.backends.sessions import ort_session
    from esr.export.graph import build_deploy_graph
    from esr.export.onnx_export import op_counts
    from esr.export.pipeline import PARITY_TOL

    model = randomise_(build_model("span_ntire", 4), seed=5).eval()
    graph = build_deploy_graph(model, recipe, shape=(1, 3, 24, 24), dynamic=True).model
    blocks, plain = conv_layout(model)
    assert (blocks, plain) == (20, 2)  # conv_1, 6 x 3 in the SPABs, conv_2; conv_cat, upsampler
    assert op_counts(graph)["Conv"] == blocks + plain
    session = ort_session(graph.SerializeToString(), threads=1)
    for shape in [(1, 3, 24, 24), (2, 3, 19, 33)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[-1]))
        (ort_out,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert ort_out.shape == expected.shape
        assert np.abs(ort_out - expected).max() <= PARITY_TOL


def test_demo_options_train_both_stages_and_load(tmp_path, shared) -> None:
    """`esr train` on options/demo_span_x4.yml, shrunk to CI size (8 channels, 2 iterations per stage, batch 2):
    SPAN trains through BasicSR, stage 2 warm-starts from stage 1, and the result loads with esr.load_model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    options = Path(__file__).resolve().parent.parent / "options" / "demo_span_x4.yml"
    overrides = ["network_g.feature_channels=8", "datasets.train.gt_size=64", "datasets.train.batch_size_per_gpu=2",
                 "datasets.train.dataset_enlarge_ratio=1", "train.total_iter=2", "train.scheduler.periods=[2]",
                 "stages.1.train.total_iter=2", "stages.1.train.scheduler.periods=[2]",
                 "stages.1.datasets.train.gt_size=80", "val.val_freq=2", "logger.save_checkpoint_freq=2",
                 "logger.use_tb_logger=false"]
    env = {**os.environ, "ESR_SHARED": str(shared), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "esr", "train", "-opt", str(options), "--threads", "1", *overrides],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "experiments" / "demo_span_x4"
    stage2_log = next((tmp_path / "experiments" / "demo_span_x4_stage2").glob("train_*.log")).read_text()
    assert "not loaded: none" in stage2_log  # warm start: every tensor of stage 1 loaded
    model = load_model(root / "final.pth")
    assert isinstance(model, SPAN) and model.hyperparams["feature_channels"] == 8 and not model.training
    with torch.no_grad():
        assert model(torch.rand(1, 3, 20, 20)).shape == (1, 3, 80, 80)
    for block in (m for m in model.modules() if isinstance(m, Conv3XC)):  # eval_conv = fold of trained branches
        weight, bias = block.folded()
        assert torch.equal(block.eval_conv.weight, weight.float()) and torch.equal(block.eval_conv.bias, bias.float())


def test_esr_models_lists_span_presets(capsys) -> None:
    import json

    from esr.cli import main

    assert main(["models", "--json", "--size", "16"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["span"]["params"] == count_params(build_model("span", 4).eval())
    assert rows["span_ntire"]["license"] == "no weights" and rows["span_ntire"]["preset"] == "span_ntire"
